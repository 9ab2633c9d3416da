"""Algorithm families, key loading, JWK and header helpers, and local development tokens.

Algorithm confusion is defeated with what is defined here: an algorithm name decides which *kind*
of key may verify it (HMAC secret vs. RSA / EC / EdDSA public key), and a key is only ever used
with algorithms of its own kind (``key_fits``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import get_default_algorithms
from pydantic import SecretStr

from broker.errors import AuthError
from mozaiks.settings import Settings

logger = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey

# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
HMAC_ALGORITHMS = frozenset(_HMAC_MIN_BYTES)
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1,
}
ASYMMETRIC_ALGORITHMS = _RSA_ALGORITHMS | frozenset(_EC_CURVES) | {"EdDSA"}

# RFC 7638 §3.2: the members that make up a key's thumbprint, per key type.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


@dataclass(frozen=True)
class SigningKey:
    """A verification key. ``alg`` is set when its source pins one (a JWK with an ``alg`` member)."""

    key: PublicKey
    alg: str | None = None


def allowed_algorithms(configured: Iterable[str]) -> frozenset[str]:
    """Validate a configured allowlist. ``none`` is dropped whatever the configuration says."""
    names = set(configured)
    if any(name.lower() == "none" for name in names):
        logger.warning("'none' in a JWT algorithm allowlist is ignored: unsigned tokens are never accepted")
        names = {name for name in names if name.lower() != "none"}
    unknown = names - HMAC_ALGORITHMS - ASYMMETRIC_ALGORITHMS
    if unknown:
        raise ValueError(f"unsupported JWT algorithms configured: {sorted(unknown)}")
    if not names:
        raise ValueError("no JWT algorithm is allowed")
    return frozenset(names)


def hmac_secret(secret: SecretStr, algorithms: Iterable[str], setting: str) -> bytes:
    """The secret as bytes, refused at startup when it is too short for any configured HS algorithm."""
    value = secret.get_secret_value().encode()
    for alg in algorithms:
        minimum = _HMAC_MIN_BYTES.get(alg)
        if minimum is not None and len(value) < minimum:
            raise ValueError(f"{setting} must be at least {minimum} bytes for {alg}")
    return value


def load_public_key(pem: str, setting: str) -> PublicKey:
    """A public key from a PEM public key or X.509 certificate. ``setting`` names it in errors."""
    data = pem.strip().encode()
    try:
        if data.startswith(b"-----BEGIN CERTIFICATE-----"):
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{setting} is not a valid PEM public key or certificate") from None
    if not isinstance(key, PublicKey):
        raise ValueError(f"{setting} holds an unsupported key type")
    return key


def load_private_key(pem: str, setting: str) -> PrivateKey:
    """An unencrypted PEM private key. ``setting`` names it in errors; the PEM is never echoed."""
    try:
        key: Any = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(f"{setting} is not a valid unencrypted PEM private key") from None
    if not isinstance(key, PrivateKey):
        raise ValueError(f"{setting} holds an unsupported key type")
    return key


def key_fits(alg: str, key: PublicKey | PrivateKey) -> bool:
    """Whether ``key`` is of the kind (and, for ECDSA, the curve) that ``alg`` requires."""
    if alg in _RSA_ALGORITHMS:
        return isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey)
    if alg in _EC_CURVES:
        return (isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey)
                and isinstance(key.curve, _EC_CURVES[alg]))
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey
                          | ed448.Ed448PublicKey | ed448.Ed448PrivateKey)
    return False


def public_jwk(key: PublicKey, alg: str) -> dict[str, Any]:
    """The public JWK of ``key`` for ``alg``, with its RFC 7638 thumbprint as ``kid``."""
    jwk: dict[str, Any] = get_default_algorithms()[alg].to_jwk(key, as_dict=True)
    jwk.pop("key_ops", None)  # RFC 7517 §4.3: "use" and "key_ops" should not be combined
    canonical = json.dumps({name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]},
                           separators=(",", ":"), sort_keys=True)
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def unverified_header(token: str, what: str) -> dict[str, Any]:
    """The JOSE header, read before verification only to pick the key; AuthError if unparsable."""
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthError(f"{what} is malformed") from None


def dev_token(settings: Settings, user_id: str, app_id: str | None = None, plan: str | None = None,
              roles: list[str] | None = None, ttl_s: int = 3600) -> str:
    """A user JWT the local broker accepts. Raises ``ValueError`` outside local mode, when HS256 is
    not an allowed user-JWT algorithm, or on an empty ``user_id`` / non-positive ``ttl_s``.

    Without an explicit ``user_jwt_secret`` this uses (creating it once) the same random secret
    in the data directory that the local broker loads, so the token works against it.
    """
    if settings.mode != "local":
        raise ValueError("development tokens are only available in local mode")
    if "HS256" not in settings.user_jwt_algorithms:
        raise ValueError("development tokens need HS256 in user_jwt_algorithms")
    if not user_id:
        raise ValueError("user_id must not be empty")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    secret = settings.with_local_secrets().user_jwt_secret
    if secret is None:
        raise ValueError("no user JWT secret is available")
    now = int(time.time())
    claims: dict[str, Any] = {settings.claim_user_id: user_id, "iat": now, "exp": now + ttl_s}
    optional = {settings.claim_app_id: app_id, settings.claim_plan: plan, settings.claim_roles: roles,
                "iss": settings.user_jwt_issuer, "aud": settings.user_jwt_audience}
    claims.update({name: value for name, value in optional.items() if value is not None})
    return jwt.encode(claims, secret.get_secret_value(), algorithm="HS256")


def require_numeric_dates(payload: dict[str, Any], what: str) -> None:
    """RFC 7519 §2: NumericDate claims are JSON numbers. PyJWT runs ``int()`` on them, which would
    let ``"exp": "9999999999"`` through; such a token was not made by a conforming issuer."""
    for claim in ("exp", "nbf", "iat"):
        value = payload.get(claim)
        if claim in payload and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise AuthError(f"{what} claim '{claim}' must be a number (NumericDate)")
