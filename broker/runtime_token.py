"""Runtime tokens: short-lived, single-chat credentials for the runtime's WebSocket (PROTOCOL §1).

The broker mints them after authenticating the user; the runtime verifies them. They carry their
own ``typ`` header and ``aud`` so they can never be confused with a user JWT, in either direction.
In Standalone mode a host app's broker mints them with its own key pair and the runtime trusts
its public key (``runtime_token_public_key``) or JWKS (``runtime_token_jwks_url``).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import jwt
from jwt.types import Options
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broker.errors import AuthError, auth_error_from_jwt
from broker.jwks import JwksCache
from broker.keys import (
    PrivateKey,
    PublicKey,
    hmac_secret,
    key_fits,
    load_private_key,
    load_public_key,
    public_jwk,
    require_numeric_dates,
    unverified_header,
)
from mozaiks.settings import Settings

RUNTIME_TOKEN_TYP = "mozaiks-runtime+jwt"
RUNTIME_TOKEN_AUDIENCE = "mozaiks-runtime"
MAX_TTL_S = 900
# Clock skew tolerated between the minting broker (maybe another machine) and the runtime.
_LEEWAY_S = 30


class RuntimeTokenClaims(BaseModel):
    """The verified payload. ``sub`` is the user id; times are seconds since the epoch."""

    model_config = ConfigDict(frozen=True)

    sub: str = Field(min_length=1)
    app_id: str = Field(min_length=1)
    chat_id: str = Field(min_length=1)
    workflow_name: str = Field(min_length=1)
    iss: str
    aud: str
    iat: int
    nbf: int
    exp: int
    jti: str = Field(min_length=1)

    @property
    def user_id(self) -> str:
        return self.sub

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.exp, tz=UTC)

    def in_scope(self, *, workflow_name: str, app_id: str, chat_id: str, user_id: str) -> bool:
        """Whether this token opens exactly this chat: compare with every segment of the WS path."""
        expected = (workflow_name, app_id, chat_id, user_id)
        return (self.workflow_name, self.app_id, self.chat_id, self.sub) == expected


_REQUIRED_CLAIMS = list(RuntimeTokenClaims.model_fields)


class RuntimeTokenMinter:
    """Signs runtime tokens with ``runtime_token_secret`` (HS256) or ``runtime_token_private_key``.

    Construction raises ``ValueError`` when the key for ``runtime_token_algorithm`` is missing or
    unusable. Asymmetric tokens carry a ``kid`` (the key's RFC 7638 thumbprint) matching
    :meth:`jwks`, so a separate runtime can verify them through a JWKS URL.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._algorithm = settings.runtime_token_algorithm
        self._headers: dict[str, str] = {"typ": RUNTIME_TOKEN_TYP}
        self._public_jwk: dict[str, Any] | None = None
        if self._algorithm == "HS256":
            if settings.runtime_token_secret is None:
                raise ValueError("runtime_token_secret is required to mint HS256 runtime tokens")
            self._key: bytes | PrivateKey = hmac_secret(settings.runtime_token_secret, ["HS256"],
                                                        "runtime_token_secret")
            return
        if not settings.runtime_token_private_key:
            raise ValueError(f"runtime_token_private_key is required to mint {self._algorithm} runtime tokens")
        private_key = load_private_key(settings.runtime_token_private_key, "runtime_token_private_key")
        if not key_fits(self._algorithm, private_key):
            raise ValueError("runtime_token_private_key does not fit runtime_token_algorithm")
        self._key = private_key
        self._public_jwk = public_jwk(private_key.public_key(), self._algorithm)
        self._headers["kid"] = self._public_jwk["kid"]

    def mint(self, user_id: str, app_id: str, chat_id: str, workflow_name: str,
             ttl_s: int | None = None) -> tuple[str, datetime]:
        """A token for one user's one chat, and when it expires. ``ttl_s`` is capped at
        ``runtime_token_ttl_s`` (itself ≤ 15 min); empty ids raise ``ValueError``."""
        limit = min(self._settings.runtime_token_ttl_s, MAX_TTL_S)
        ttl = limit if ttl_s is None else min(ttl_s, limit)
        if ttl <= 0:
            raise ValueError("ttl_s must be positive")
        now = int(time.time())
        claims = RuntimeTokenClaims(
            sub=user_id, app_id=app_id, chat_id=chat_id, workflow_name=workflow_name,
            iss=self._settings.runtime_token_issuer, aud=RUNTIME_TOKEN_AUDIENCE,
            iat=now, nbf=now, exp=now + ttl, jti=secrets.token_urlsafe(16),
        )
        token = jwt.encode(claims.model_dump(), self._key, algorithm=self._algorithm, headers=self._headers)
        return token, claims.expires_at

    def jwks(self) -> dict[str, Any]:
        """The public JWKS a separate runtime can be pointed at; no keys for HS256."""
        return {"keys": [self._public_jwk] if self._public_jwk else []}


class RuntimeTokenVerifier:
    """Verifies runtime tokens; ``verify`` raises :class:`AuthError` (``expired=True`` on expiry).

    Only ``runtime_token_algorithm`` is accepted. Key: ``runtime_token_secret`` for HS256;
    otherwise the first of ``runtime_token_public_key``, the public half of
    ``runtime_token_private_key`` (this runtime's own broker mints), or ``runtime_token_jwks_url``
    (then tokens need a ``kid``). Construction raises ``ValueError`` when none is usable.
    The caller must still check :meth:`RuntimeTokenClaims.in_scope` against the WebSocket path.
    """

    def __init__(self, settings: Settings, jwks: JwksCache | None = None) -> None:
        self._algorithm = settings.runtime_token_algorithm
        self._issuer = settings.runtime_token_issuer
        self._key: bytes | PublicKey | None = None
        self._jwks: JwksCache | None = None
        if self._algorithm == "HS256":
            if settings.runtime_token_secret is None:
                raise ValueError("runtime_token_secret is required to verify HS256 runtime tokens")
            self._key = hmac_secret(settings.runtime_token_secret, ["HS256"], "runtime_token_secret")
            return
        if settings.runtime_token_public_key:
            self._key = load_public_key(settings.runtime_token_public_key, "runtime_token_public_key")
        elif settings.runtime_token_private_key:
            self._key = load_private_key(settings.runtime_token_private_key,
                                         "runtime_token_private_key").public_key()
        elif jwks is not None or settings.runtime_token_jwks_url:
            self._jwks = jwks or JwksCache(str(settings.runtime_token_jwks_url))
            return
        else:
            raise ValueError(f"a runtime token public key, private key or JWKS URL is required "
                             f"for {self._algorithm}")
        if not key_fits(self._algorithm, self._key):
            raise ValueError("the runtime token key does not fit runtime_token_algorithm")

    async def verify(self, token: str) -> RuntimeTokenClaims:
        header = unverified_header(token, "Runtime token")
        if header.get("typ") != RUNTIME_TOKEN_TYP:
            raise AuthError("Not a runtime token (wrong typ)")
        if header.get("alg") != self._algorithm:
            raise AuthError("Runtime token algorithm is not allowed")
        key = self._key if self._key is not None else await self._jwks_key(header.get("kid"))
        options: Options = {"require": _REQUIRED_CLAIMS, "strict_aud": True, "enforce_minimum_key_length": True}
        try:
            payload = jwt.decode(token, key, algorithms=[self._algorithm], options=options,
                                 audience=RUNTIME_TOKEN_AUDIENCE, issuer=self._issuer, leeway=_LEEWAY_S)
            require_numeric_dates(payload, "Runtime token")
            claims = RuntimeTokenClaims.model_validate(payload)
        except jwt.PyJWTError as exc:
            raise auth_error_from_jwt(exc, "Runtime token") from None
        except ValidationError as exc:
            fields = ", ".join(sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]}))
            raise AuthError(f"Runtime token claims are invalid: {fields}") from None
        # A separate (Standalone) broker mints these too: enforce the protocol's 15-minute cap here.
        if claims.exp - claims.iat > MAX_TTL_S:
            raise AuthError("Runtime token lifetime exceeds 15 minutes")
        return claims

    async def _jwks_key(self, kid: Any) -> PublicKey:
        assert self._jwks is not None
        if not isinstance(kid, str) or not kid:
            raise AuthError("Runtime token has no key id (kid)")
        signing_key = await self._jwks.get_key(kid)
        if (signing_key.alg is not None and signing_key.alg != self._algorithm) \
                or not key_fits(self._algorithm, signing_key.key):
            raise AuthError("Runtime token algorithm does not match its signing key")
        return signing_key.key
