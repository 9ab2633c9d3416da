"""Runtime tokens (PROTOCOL §1): minting, verification, separation from user JWTs, Standalone mode.

The JWKS test runs a real HTTP server on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from broker.errors import AuthError
from broker.runtime_token import RuntimeTokenMinter, RuntimeTokenVerifier
from broker.user_jwt import UserJwtVerifier
from mozaiks.settings import Settings
from tests.jwks_server import JwksServer

SECRET = secrets.token_urlsafe(48)
HOST_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SCOPE: dict[str, Any] = {"user_id": "user-1", "app_id": "app-1", "chat_id": "chat-1", "workflow_name": "hello"}


def private_pem(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: Any) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"runtime_token_secret": SECRET, "user_jwt_secret": SECRET}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def runtime_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {"iss": "mozaiks-broker", "aud": "mozaiks-runtime", "sub": "user-1",
                              "app_id": "app-1", "chat_id": "chat-1", "workflow_name": "hello",
                              "iat": now, "nbf": now, "exp": now + 300, "jti": secrets.token_hex(8)}
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def hs256(payload: dict[str, Any], typ: str | None = "mozaiks-runtime+jwt") -> str:
    return jwt.encode(payload, SECRET, algorithm="HS256", headers={"typ": typ} if typ else None)


async def refused(verifier: RuntimeTokenVerifier, token: str, fragment: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)
    assert fragment in caught.value.message
    assert token not in caught.value.message
    return caught.value


async def test_roundtrip() -> None:
    settings = make_settings()
    token, expires_at = RuntimeTokenMinter(settings).mint(**SCOPE)
    assert jwt.get_unverified_header(token)["typ"] == "mozaiks-runtime+jwt"
    claims = await RuntimeTokenVerifier(settings).verify(token)
    assert (claims.user_id, claims.app_id, claims.chat_id, claims.workflow_name) == (
        "user-1", "app-1", "chat-1", "hello")
    assert (claims.iss, claims.aud) == ("mozaiks-broker", "mozaiks-runtime")
    assert claims.expires_at == expires_at
    assert claims.exp - claims.iat == 900
    assert abs((expires_at - datetime.now(UTC)).total_seconds() - 900) < 5
    assert claims.in_scope(**SCOPE)
    assert not claims.in_scope(**{**SCOPE, "chat_id": "chat-2"})


def test_ttl_is_clamped_and_jti_random() -> None:
    minter = RuntimeTokenMinter(make_settings(runtime_token_ttl_s=60))

    def lifetime(token: str) -> int:
        payload = jwt.decode(token, options={"verify_signature": False})
        return int(payload["exp"] - payload["iat"])

    assert lifetime(minter.mint(**SCOPE)[0]) == 60
    assert lifetime(minter.mint(**SCOPE, ttl_s=3600)[0]) == 60
    assert lifetime(minter.mint(**SCOPE, ttl_s=45)[0]) == 45
    first, second = (jwt.decode(minter.mint(**SCOPE)[0], options={"verify_signature": False}) for _ in range(2))
    assert first["jti"] != second["jti"]
    with pytest.raises(ValueError):
        minter.mint(**SCOPE, ttl_s=0)
    with pytest.raises(ValueError):
        minter.mint(**{**SCOPE, "chat_id": ""})


async def test_user_jwt_refused_by_runtime_verifier() -> None:
    # Worst case: the deployment uses the same secret for both kinds of token.
    user_jwt = jwt.encode({"sub": "user-1", "exp": int(time.time()) + 300}, SECRET, algorithm="HS256")
    verifier = RuntimeTokenVerifier(make_settings())
    await refused(verifier, user_jwt, "wrong typ")
    # Even a user JWT that borrows the runtime typ lacks the runtime audience and scope claims.
    await refused(verifier, hs256({"sub": "user-1", "exp": int(time.time()) + 300}), "missing")
    await refused(verifier, hs256(runtime_claims(aud="mozaiks")), "audience")


async def test_runtime_token_refused_by_user_verifier() -> None:
    settings = make_settings()
    token, _ = RuntimeTokenMinter(settings).mint(**SCOPE)
    with pytest.raises(AuthError, match="Runtime tokens are not accepted"):
        await UserJwtVerifier(settings).verify(token)


async def test_expired_runtime_token_reports_expired() -> None:
    now = int(time.time())
    token = hs256(runtime_claims(iat=now - 900, nbf=now - 900, exp=now - 120))
    error = await refused(RuntimeTokenVerifier(make_settings()), token, "expired")
    assert error.expired


async def test_invalid_runtime_tokens_refused() -> None:
    verifier = RuntimeTokenVerifier(make_settings())
    now = int(time.time())
    await refused(verifier, hs256(runtime_claims(), typ="JWT"), "wrong typ")
    await refused(verifier, hs256(runtime_claims(), typ=None), "wrong typ")
    await refused(verifier, hs256(runtime_claims(chat_id=None)), "'chat_id'")
    await refused(verifier, hs256(runtime_claims(workflow_name="")), "workflow_name")
    await refused(verifier, hs256(runtime_claims(iss="someone-else")), "issuer")
    await refused(verifier, hs256(runtime_claims(aud=["mozaiks-runtime"])), "audience")
    await refused(verifier, hs256(runtime_claims(nbf=now + 300)), "not yet valid")
    await refused(verifier, hs256(runtime_claims(exp=now + 3600)), "exceeds 15 minutes")
    other_secret = jwt.encode(runtime_claims(), secrets.token_urlsafe(48), algorithm="HS256",
                              headers={"typ": "mozaiks-runtime+jwt"})
    await refused(verifier, other_secret, "signature is invalid")
    rs256 = jwt.encode(runtime_claims(), HOST_RSA_KEY, algorithm="RS256", headers={"typ": "mozaiks-runtime+jwt"})
    await refused(verifier, rs256, "algorithm is not allowed")
    await refused(verifier, jwt.encode(runtime_claims(), "", algorithm="none",
                                       headers={"typ": "mozaiks-runtime+jwt"}), "algorithm is not allowed")


def test_missing_keys_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="runtime_token_secret"):
        RuntimeTokenMinter(make_settings(runtime_token_secret=None))
    with pytest.raises(ValueError, match="runtime_token_private_key"):
        RuntimeTokenMinter(make_settings(runtime_token_algorithm="RS256"))
    with pytest.raises(ValueError, match="does not fit"):
        RuntimeTokenMinter(make_settings(runtime_token_algorithm="ES256",
                                         runtime_token_private_key=private_pem(HOST_RSA_KEY)))
    with pytest.raises(ValueError, match="public key, private key or JWKS URL"):
        RuntimeTokenVerifier(make_settings(runtime_token_algorithm="RS256"))


# --- Standalone mode: a host broker mints with its own key pair ----------------------------------

def host_minter(alg: str, key: Any) -> RuntimeTokenMinter:
    return RuntimeTokenMinter(make_settings(runtime_token_secret=None, runtime_token_algorithm=alg,
                                            runtime_token_private_key=private_pem(key)))


@pytest.mark.parametrize("alg, key", [
    ("RS256", HOST_RSA_KEY),
    ("ES256", ec.generate_private_key(ec.SECP256R1())),
    ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
])
async def test_standalone_runtime_verifies_with_host_public_key(alg: str, key: Any) -> None:
    token, _ = host_minter(alg, key).mint(**SCOPE)
    runtime = RuntimeTokenVerifier(make_settings(runtime_token_secret=None, runtime_token_algorithm=alg,
                                                 runtime_token_public_key=public_pem(key)))
    assert (await runtime.verify(token)).in_scope(**SCOPE)
    # A runtime holding the private key (its own broker mints) verifies with the public half.
    same_process = RuntimeTokenVerifier(make_settings(runtime_token_secret=None, runtime_token_algorithm=alg,
                                                      runtime_token_private_key=private_pem(key)))
    assert (await same_process.verify(token)).chat_id == "chat-1"


async def test_standalone_token_from_an_untrusted_key_refused() -> None:
    token, _ = host_minter("RS256", OTHER_RSA_KEY).mint(**SCOPE)
    runtime = RuntimeTokenVerifier(make_settings(runtime_token_secret=None, runtime_token_algorithm="RS256",
                                                 runtime_token_public_key=public_pem(HOST_RSA_KEY)))
    await refused(runtime, token, "signature is invalid")


@pytest.fixture
def host_jwks() -> Iterator[tuple[RuntimeTokenMinter, str]]:
    minter = host_minter("RS256", HOST_RSA_KEY)
    server = JwksServer(minter.jwks())
    yield minter, server.url
    server.close()


async def test_standalone_runtime_verifies_with_host_jwks(host_jwks: tuple[RuntimeTokenMinter, str]) -> None:
    minter, url = host_jwks
    token, _ = minter.mint(**SCOPE)
    assert jwt.get_unverified_header(token)["kid"] == minter.jwks()["keys"][0]["kid"]
    runtime = RuntimeTokenVerifier(make_settings(runtime_token_secret=None, runtime_token_algorithm="RS256",
                                                 runtime_token_jwks_url=url))
    assert (await runtime.verify(token)).in_scope(**SCOPE)
    stranger, _ = host_minter("RS256", OTHER_RSA_KEY).mint(**SCOPE)
    await refused(runtime, stranger, "unknown")


def test_hs256_minter_publishes_no_keys() -> None:
    assert RuntimeTokenMinter(make_settings()).jwks() == {"keys": []}
