"""Verification of user JWTs, the credential the Session Broker accepts (PROTOCOL §1).

Algorithms come only from ``settings.user_jwt_algorithms``; the token header merely selects one
of them. The algorithm then decides the kind of key: HS* verify with ``user_jwt_secret`` and
nothing else, RS*/PS*/ES*/EdDSA with ``user_jwt_public_key`` (which wins when both are set) or
the JWKS at ``user_jwt_jwks_url``. A public key is therefore never used as an HMAC secret, which
is what the classic algorithm-confusion attack relies on.
"""

from __future__ import annotations

import re
from typing import Any

import jwt
from jwt.types import Options

from broker.errors import AuthError, auth_error_from_jwt
from broker.jwks import JwksCache
from broker.keys import (
    HMAC_ALGORITHMS,
    PublicKey,
    SigningKey,
    allowed_algorithms,
    hmac_secret,
    key_fits,
    load_public_key,
    require_numeric_dates,
    unverified_header,
)
from broker.runtime_token import RUNTIME_TOKEN_AUDIENCE, RUNTIME_TOKEN_TYP
from mozaiks.protocol.identity import Identity
from mozaiks.settings import Settings

_ROLE_SEPARATORS = re.compile(r"[\s,]+")


class UserJwtVerifier:
    """Turns a user JWT into an :class:`Identity` or raises :class:`AuthError`.

    ``verify`` is async because a JWKS may have to be fetched; with a secret or a PEM key it does
    no I/O. Construction fails with ``ValueError`` on unusable configuration (unknown algorithm,
    short secret, bad PEM, no key for any allowed algorithm), so a misconfigured broker does not
    start. Pass ``jwks`` to share or tune a :class:`JwksCache`.
    """

    def __init__(self, settings: Settings, jwks: JwksCache | None = None) -> None:
        self._settings = settings
        self._algorithms = allowed_algorithms(settings.user_jwt_algorithms)
        hmac_algorithms = self._algorithms & HMAC_ALGORITHMS
        asymmetric_algorithms = self._algorithms - HMAC_ALGORITHMS
        self._secret = (hmac_secret(settings.user_jwt_secret, hmac_algorithms, "user_jwt_secret")
                        if settings.user_jwt_secret is not None and hmac_algorithms else None)
        self._public_key = (SigningKey(load_public_key(settings.user_jwt_public_key, "user_jwt_public_key"))
                            if settings.user_jwt_public_key else None)
        if self._public_key and not any(key_fits(alg, self._public_key.key) for alg in asymmetric_algorithms):
            raise ValueError("user_jwt_public_key does not fit any algorithm in user_jwt_algorithms")
        self._jwks = jwks or (JwksCache(settings.user_jwt_jwks_url) if settings.user_jwt_jwks_url else None)
        has_public = self._public_key is not None or self._jwks is not None
        if self._secret is None and not (asymmetric_algorithms and has_public):
            raise ValueError("no user JWT key is configured for the algorithms in user_jwt_algorithms")

    async def verify(self, token: str) -> Identity:
        header = unverified_header(token, "Token")
        if str(header.get("typ", "")).lower() == RUNTIME_TOKEN_TYP:
            raise AuthError("Runtime tokens are not accepted here")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError("Token algorithm is not allowed")
        key = await self._key(alg, header.get("kid"))
        settings = self._settings
        options: Options = {
            "require": ["exp"],
            # Without a configured audience PyJWT would refuse every token carrying one.
            "verify_aud": settings.user_jwt_audience is not None,
            "enforce_minimum_key_length": True,
        }
        try:
            payload = jwt.decode(token, key, algorithms=[alg], options=options,
                                 issuer=settings.user_jwt_issuer, audience=settings.user_jwt_audience,
                                 leeway=settings.user_jwt_leeway_s)
        except jwt.PyJWTError as exc:
            raise auth_error_from_jwt(exc) from None
        require_numeric_dates(payload, "Token")
        aud = payload.get("aud")
        if aud == RUNTIME_TOKEN_AUDIENCE or (isinstance(aud, list) and RUNTIME_TOKEN_AUDIENCE in aud):
            raise AuthError("Runtime tokens are not accepted here")
        return self._identity(payload)

    async def _key(self, alg: str, kid: Any) -> bytes | PublicKey:
        if alg in HMAC_ALGORITHMS:
            if self._secret is None:
                raise AuthError(f"No key is configured for {alg} tokens")
            return self._secret
        if self._public_key is not None:
            signing_key = self._public_key
        elif self._jwks is not None:
            if not isinstance(kid, str) or not kid:
                raise AuthError("Token has no key id (kid)")
            signing_key = await self._jwks.get_key(kid)
        else:
            raise AuthError(f"No key is configured for {alg} tokens")
        if (signing_key.alg is not None and signing_key.alg != alg) or not key_fits(alg, signing_key.key):
            raise AuthError("Token algorithm does not match its signing key")
        return signing_key.key

    def _identity(self, payload: dict[str, Any]) -> Identity:
        settings = self._settings
        user_id = _claim(payload, settings.claim_user_id)
        if not isinstance(user_id, str) or not user_id.strip():
            raise AuthError(f"Token claim '{settings.claim_user_id}' (user id) must be a non-empty string")
        app_id = _optional_str(payload, settings.claim_app_id) or settings.default_app_id
        # Both are segments of the chat's WebSocket path, where a '/' can never be routed back.
        for name, value in ((settings.claim_user_id, user_id), (settings.claim_app_id, app_id)):
            if "/" in value:
                raise AuthError(f"Token claim '{name}' must not contain '/'")
        return Identity(
            user_id=user_id,
            app_id=app_id,
            tenant_id=_optional_str(payload, settings.claim_tenant_id),
            plan=_optional_str(payload, settings.claim_plan),
            roles=_roles(payload, settings.claim_roles),
            claims=payload,
        )


def _claim(payload: dict[str, Any], name: str) -> Any:
    """The exact claim name first (namespaced claims such as "https://example.com/roles" contain
    dots), then a dotted path into nested objects (e.g. Keycloak's "realm_access.roles")."""
    if name in payload:
        return payload[name]
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _optional_str(payload: dict[str, Any], name: str) -> str | None:
    value = _claim(payload, name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise AuthError(f"Token claim '{name}' must be a string")
    return value


def _roles(payload: dict[str, Any], name: str) -> list[str]:
    value = _claim(payload, name)
    if value is None:
        return []
    if isinstance(value, str):
        return [role for role in _ROLE_SEPARATORS.split(value) if role]
    if isinstance(value, list) and all(isinstance(role, str) for role in value):
        return value
    raise AuthError(f"Token claim '{name}' must be a list of strings or a space/comma-separated string")
