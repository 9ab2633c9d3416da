"""User JWT verification (PROTOCOL §1): algorithms, keys, claims, JWKS rotation, dev tokens.

The JWKS tests run a real HTTP server on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from broker.keys import dev_token
from broker.errors import AuthError
from broker.jwks import JwksCache
from broker.user_jwt import UserJwtVerifier
from mozaiks.settings import Settings
from tests.jwks_server import JwksServer

SECRET = secrets.token_urlsafe(48)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
PRIVATE_KEYS: dict[str, Any] = {"RS256": RSA_KEY, "PS256": RSA_KEY, "ES256": EC_KEY, "EdDSA": ED_KEY}


def public_pem(private_key: Any) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"user_jwt_secret": SECRET, "user_jwt_algorithms": ["HS256"]}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {"sub": "user-1", "iat": now, "exp": now + 600}
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def hs256(payload: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(payload, SECRET, algorithm="HS256", headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(payload: dict[str, Any], secret: bytes) -> str:
    """HMAC-signed by hand: PyJWT itself refuses to use a PEM as an HMAC secret."""
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def refused(verifier: UserJwtVerifier, token: str, fragment: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)
    assert fragment in caught.value.message
    assert token not in caught.value.message
    return caught.value


# --- HS256 and claim mapping ------------------------------------------------------------------

async def test_hs256_token_gives_identity() -> None:
    token = hs256(claims(tenant_id="t-1", plan="pro", roles=["admin", "editor"], extra=1))
    identity = await UserJwtVerifier(make_settings()).verify(token)
    assert identity.user_id == "user-1"
    assert identity.app_id == "local-app"  # settings.default_app_id when the claim is absent
    assert (identity.tenant_id, identity.plan, identity.roles) == ("t-1", "pro", ["admin", "editor"])
    assert identity.claims["extra"] == 1


async def test_app_id_claim_and_role_string_forms() -> None:
    verifier = UserJwtVerifier(make_settings())
    identity = await verifier.verify(hs256(claims(app_id="app-9", roles="admin editor,viewer")))
    assert identity.app_id == "app-9"
    assert identity.roles == ["admin", "editor", "viewer"]


async def test_claim_names_come_from_settings() -> None:
    verifier = UserJwtVerifier(make_settings(claim_user_id="uid", claim_roles="realm_access.roles",
                                             claim_plan="https://example.com/plan"))
    token = hs256(claims(sub=None, uid="u-7", realm_access={"roles": ["ops"]},
                         **{"https://example.com/plan": "team"}))
    identity = await verifier.verify(token)
    assert (identity.user_id, identity.roles, identity.plan) == ("u-7", ["ops"], "team")


@pytest.mark.parametrize("sub", [None, "", "   "])
async def test_user_id_is_required(sub: str | None) -> None:
    await refused(UserJwtVerifier(make_settings()), hs256(claims(sub=sub)), "user id")


async def test_badly_typed_claims_refused() -> None:
    verifier = UserJwtVerifier(make_settings())
    await refused(verifier, hs256(claims(roles=[1, 2])), "'roles'")
    await refused(verifier, hs256(claims(plan=["pro"])), "'plan'")


# --- algorithms and keys ----------------------------------------------------------------------

@pytest.mark.parametrize("algorithms", [["HS256"], ["HS256", "none"]])
async def test_alg_none_refused_even_if_configured(algorithms: list[str]) -> None:
    token = jwt.encode(claims(), "", algorithm="none")
    await refused(UserJwtVerifier(make_settings(user_jwt_algorithms=algorithms)), token, "algorithm")


async def test_hs256_signed_with_public_pem_refused_when_only_rs256_allowed() -> None:
    pem = public_pem(RSA_KEY)
    verifier = UserJwtVerifier(make_settings(user_jwt_secret=None, user_jwt_algorithms=["RS256"],
                                             user_jwt_public_key=pem))
    await refused(verifier, forge_hs256(claims(), pem.encode()), "algorithm is not allowed")


async def test_hs_never_uses_the_public_pem_even_when_hs256_is_allowed() -> None:
    pem = public_pem(RSA_KEY)
    token = forge_hs256(claims(), pem.encode())
    only_pem = UserJwtVerifier(make_settings(user_jwt_secret=None, user_jwt_algorithms=["HS256", "RS256"],
                                             user_jwt_public_key=pem))
    await refused(only_pem, token, "No key is configured for HS256")
    both = UserJwtVerifier(make_settings(user_jwt_algorithms=["HS256", "RS256"], user_jwt_public_key=pem))
    await refused(both, token, "signature is invalid")


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
async def test_asymmetric_token_with_pem_accepted(alg: str) -> None:
    private_key = PRIVATE_KEYS[alg]
    verifier = UserJwtVerifier(make_settings(user_jwt_secret=None, user_jwt_algorithms=[alg],
                                             user_jwt_public_key=public_pem(private_key)))
    identity = await verifier.verify(jwt.encode(claims(), private_key, algorithm=alg))
    assert identity.user_id == "user-1"


async def test_algorithm_not_fitting_the_key_refused() -> None:
    verifier = UserJwtVerifier(make_settings(user_jwt_secret=None, user_jwt_algorithms=["RS256", "ES256"],
                                             user_jwt_public_key=public_pem(RSA_KEY)))
    await refused(verifier, jwt.encode(claims(), EC_KEY, algorithm="ES256"), "does not match its signing key")


async def test_token_signed_by_another_key_refused() -> None:
    verifier = UserJwtVerifier(make_settings(user_jwt_secret=None, user_jwt_algorithms=["RS256"],
                                             user_jwt_public_key=public_pem(RSA_KEY)))
    await refused(verifier, jwt.encode(claims(), RSA_KEY_2, algorithm="RS256"), "signature is invalid")


async def test_tampered_payload_refused() -> None:
    header, _, signature = hs256(claims()).split(".")
    forged_payload = b64(json.dumps(claims(sub="admin")).encode())
    forged = f"{header}.{forged_payload}.{signature}"
    await refused(UserJwtVerifier(make_settings()), forged, "signature is invalid")


async def test_garbage_refused() -> None:
    await refused(UserJwtVerifier(make_settings()), "not-a-jwt", "malformed")


def test_unusable_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        UserJwtVerifier(make_settings(user_jwt_secret="short"))
    with pytest.raises(ValueError, match="unsupported"):
        UserJwtVerifier(make_settings(user_jwt_algorithms=["HS257"]))
    with pytest.raises(ValueError, match="no user JWT key"):
        UserJwtVerifier(make_settings(user_jwt_algorithms=["RS256"]))
    with pytest.raises(ValueError, match="does not fit"):
        UserJwtVerifier(make_settings(user_jwt_algorithms=["ES256"], user_jwt_public_key=public_pem(RSA_KEY)))
    with pytest.raises(ValueError, match="not a valid PEM"):
        UserJwtVerifier(make_settings(user_jwt_algorithms=["RS256"], user_jwt_public_key="garbage"))


# --- time, issuer, audience -------------------------------------------------------------------

async def test_expired_refused_but_within_leeway_accepted() -> None:
    now = int(time.time())
    verifier = UserJwtVerifier(make_settings(user_jwt_leeway_s=30))
    error = await refused(verifier, hs256(claims(exp=now - 120)), "expired")
    assert error.expired
    assert (await verifier.verify(hs256(claims(exp=now - 10)))).user_id == "user-1"


async def test_not_before_in_future_refused() -> None:
    token = hs256(claims(nbf=int(time.time()) + 300))
    await refused(UserJwtVerifier(make_settings()), token, "not yet valid")


async def test_missing_exp_refused() -> None:
    await refused(UserJwtVerifier(make_settings()), hs256(claims(exp=None)), "'exp'")


async def test_issuer_and_audience_checked_when_configured() -> None:
    verifier = UserJwtVerifier(make_settings(user_jwt_issuer="https://idp.example", user_jwt_audience="mozaiks"))
    good = {"iss": "https://idp.example", "aud": "mozaiks"}
    assert (await verifier.verify(hs256(claims(**good)))).user_id == "user-1"
    await refused(verifier, hs256(claims(**{**good, "iss": "https://evil.example"})), "issuer")
    await refused(verifier, hs256(claims(**{**good, "aud": "someone-else"})), "audience")
    await refused(verifier, hs256(claims(aud="mozaiks")), "'iss'")


async def test_audience_not_checked_when_not_configured() -> None:
    identity = await UserJwtVerifier(make_settings()).verify(hs256(claims(aud="anything", iss="any")))
    assert identity.user_id == "user-1"


async def test_runtime_tokens_refused_by_typ_or_audience() -> None:
    verifier = UserJwtVerifier(make_settings())
    await refused(verifier, hs256(claims(), headers={"typ": "mozaiks-runtime+jwt"}), "Runtime tokens")
    await refused(verifier, hs256(claims(aud="mozaiks-runtime")), "Runtime tokens")
    await refused(verifier, hs256(claims(aud=["x", "mozaiks-runtime"])), "Runtime tokens")


# --- JWKS -------------------------------------------------------------------------------------

@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


def jwk(private_key: Any, kid: str, alg: str | None = "RS256") -> dict[str, Any]:
    entry: dict[str, Any] = get_default_algorithms()["RS256" if alg is None else alg].to_jwk(
        private_key.public_key(), as_dict=True)
    entry.update(kid=kid, use="sig")
    if alg is not None:
        entry["alg"] = alg
    return entry


def rs256(private_key: Any, kid: str, alg: str = "RS256") -> str:
    return jwt.encode(claims(), private_key, algorithm=alg, headers={"kid": kid})


def jwks_verifier(server: JwksServer, cache: JwksCache | None = None,
                  algorithms: list[str] | None = None) -> UserJwtVerifier:
    settings = make_settings(user_jwt_secret=None, user_jwt_algorithms=algorithms or ["RS256"],
                             user_jwt_jwks_url=server.url)
    return UserJwtVerifier(settings, jwks=cache)


async def test_jwks_key_found_by_kid(jwks_server: JwksServer) -> None:
    jwks_server.document = {"keys": [jwk(RSA_KEY_2, "other"), jwk(RSA_KEY, "k1")]}
    verifier = jwks_verifier(jwks_server)
    assert (await verifier.verify(rs256(RSA_KEY, "k1"))).user_id == "user-1"
    await refused(verifier, jwt.encode(claims(), RSA_KEY, algorithm="RS256"), "kid")
    await refused(verifier, rs256(RSA_KEY, "other"), "signature is invalid")
    assert jwks_server.hits == 1


async def test_jwks_rotation(jwks_server: JwksServer) -> None:
    jwks_server.document = {"keys": [jwk(RSA_KEY, "old")]}
    verifier = jwks_verifier(jwks_server, JwksCache(jwks_server.url, min_refresh_interval_s=0))
    assert (await verifier.verify(rs256(RSA_KEY, "old"))).user_id == "user-1"

    jwks_server.document = {"keys": [jwk(RSA_KEY_2, "new")]}
    assert (await verifier.verify(rs256(RSA_KEY_2, "new"))).user_id == "user-1"  # unknown kid → refresh
    await refused(verifier, rs256(RSA_KEY, "old"), "unknown")  # removed from the JWKS


async def test_jwks_random_kid_storm_refreshes_at_most_once_per_interval(jwks_server: JwksServer) -> None:
    jwks_server.document = {"keys": [jwk(RSA_KEY, "k1")]}
    now = [1000.0]  # a clock of our own: a storm on a loaded machine may outlast a real interval
    verifier = jwks_verifier(jwks_server, JwksCache(jwks_server.url, min_refresh_interval_s=0.5,
                                                    clock=lambda: now[0]))

    async def storm() -> None:
        tokens = [rs256(RSA_KEY, secrets.token_hex(8)) for _ in range(50)]
        results = await asyncio.gather(*map(verifier.verify, tokens), return_exceptions=True)
        assert all(isinstance(result, AuthError) for result in results)

    await storm()
    assert jwks_server.hits == 1
    assert (await verifier.verify(rs256(RSA_KEY, "k1"))).user_id == "user-1"
    await storm()
    assert jwks_server.hits == 1

    now[0] += 0.6
    await storm()
    assert jwks_server.hits == 2


async def test_jwks_pinned_alg_enforced_and_unpinned_key_serves_any_fitting_alg(jwks_server: JwksServer) -> None:
    jwks_server.document = {"keys": [jwk(RSA_KEY, "pinned", "RS256"), jwk(RSA_KEY, "free", None)]}
    verifier = jwks_verifier(jwks_server, algorithms=["RS256", "PS256"])
    await refused(verifier, rs256(RSA_KEY, "pinned", alg="PS256"), "does not match its signing key")
    assert (await verifier.verify(rs256(RSA_KEY, "free", alg="PS256"))).user_id == "user-1"


async def test_jwks_symmetric_keys_are_ignored(jwks_server: JwksServer) -> None:
    oct_key = {"kty": "oct", "kid": "sym", "k": b64(SECRET.encode()), "alg": "HS256"}
    jwks_server.document = {"keys": [oct_key, jwk(RSA_KEY, "k1")]}
    cache = JwksCache(jwks_server.url)
    with pytest.raises(AuthError, match="unknown"):
        await cache.get_key("sym")
    assert (await cache.get_key("k1")).alg == "RS256"


async def test_jwks_unreachable_refused(jwks_server: JwksServer) -> None:
    url = jwks_server.url
    jwks_server.close()
    with pytest.raises(AuthError, match="unavailable"):
        await JwksCache(url, timeout_s=2).get_key("k1")


def test_jwks_sync_lookup(jwks_server: JwksServer) -> None:
    jwks_server.document = {"keys": [jwk(EC_KEY, "ec", "ES256")]}
    cache = JwksCache(jwks_server.url)
    assert isinstance(cache.get_key_sync("ec").key, ec.EllipticCurvePublicKey)
    with pytest.raises(AuthError, match="unknown"):
        cache.get_key_sync("missing")
    assert jwks_server.hits == 1  # the unknown kid is within min_refresh_interval_s of the first fetch


# --- development tokens -----------------------------------------------------------------------

async def test_dev_token_verifies_with_local_secret(tmp_path: Path) -> None:
    settings = make_settings(user_jwt_secret=None, data_dir=tmp_path)
    token = dev_token(settings, "dev-user", app_id="app-1", plan="pro", roles=["admin"])
    identity = await UserJwtVerifier(settings.with_local_secrets()).verify(token)
    assert (identity.user_id, identity.app_id) == ("dev-user", "app-1")
    assert (identity.plan, identity.roles) == ("pro", ["admin"])


def test_dev_token_refused_outside_local_mode() -> None:
    settings = make_settings(mode="production", runtime_token_secret=SECRET)
    with pytest.raises(ValueError, match="local mode"):
        dev_token(settings, "dev-user")
