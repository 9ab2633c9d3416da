"""Forged, stale and misused credentials against the real Serve app: every one is refused with the
PROTOCOL's status or close code, and gets nothing (no chat created, no event sent)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest

from broker.runtime_token import RuntimeTokenMinter
from mozaiks.client import BrokerClient, Session
from tests.conftest import APP_ID, RUNTIME_SECRET, USER_AUDIENCE, USER_ISSUER, USER_SECRET, user_token
from tests.helpers import refused_socket
from tests.test_auth_jwt import RSA_KEY_2, b64, forge_hs256

ATTACKER = "eve"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"sub": ATTACKER, "app_id": APP_ID, "iss": USER_ISSUER, "aud": USER_AUDIENCE, "iat": now,
              "exp": now + 600, **overrides}
    return {name: value for name, value in values.items() if value is not None}


def tampered(token: str, **changes: Any) -> str:
    """The token with its payload rewritten and the original signature kept."""
    header, payload, signature = token.split(".")
    decoded = json.loads(jwt.utils.base64url_decode(payload))
    return f"{header}.{b64(json.dumps({**decoded, **changes}).encode())}.{signature}"


def unsigned(payload: dict[str, Any], alg: str = "none", **header: Any) -> str:
    return f"{b64(json.dumps({'alg': alg, **header}).encode())}.{b64(json.dumps(payload).encode())}."


def hs256(payload: dict[str, Any]) -> str:
    return jwt.encode(payload, USER_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
async def chats(runtime: Any) -> AsyncIterator[tuple[Session, Session]]:
    """Wendy's chat under attack, and Mallory's own chat whose token she misuses."""
    async with BrokerClient(runtime.http_url, user_token("wendy")) as wendy, \
            BrokerClient(runtime.http_url, user_token("mallory")) as mallory:
        yield await wendy.create_session("hello"), await mallory.create_session("hello")


async def test_valid_hs256_and_rs256_user_tokens_are_accepted(http, user_rsa_key):
    """The control: both configured algorithms work, so the refusals below are about the attack."""
    for token in (hs256(claims(sub="control")), jwt.encode(claims(sub="control"), user_rsa_key, algorithm="RS256")):
        response = await http.post("/api/mozaiks/sessions", json={"workflow_name": "hello"},
                                   headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201


# Each takes the runtime's RS256 public key (PEM), which is public knowledge.
USER_JWT_ATTACKS: dict[str, Callable[[str], str]] = {
    "alg_none": lambda pem: unsigned(claims()),
    "alg_none_uppercase": lambda pem: unsigned(claims(), alg="NONE"),
    # Algorithm confusion: an HMAC keyed with the public key, as if it were the shared secret.
    "hs256_keyed_with_the_rs256_public_key": lambda pem: forge_hs256(claims(), pem.encode()),
    "expired": lambda pem: hs256(claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 120)),
    "not_yet_valid": lambda pem: hs256(claims(nbf=int(time.time()) + 300)),
    "no_expiry": lambda pem: hs256(claims(exp=None)),
    "wrong_issuer": lambda pem: hs256(claims(iss="https://evil.test")),
    "wrong_audience": lambda pem: hs256(claims(aud="another-service")),
    "tampered_payload": lambda pem: tampered(hs256(claims()), sub="alice"),
    "signature_stripped": lambda pem: hs256(claims()).rsplit(".", 1)[0] + ".",
    "rs256_by_another_key": lambda pem: jwt.encode(claims(), RSA_KEY_2, algorithm="RS256"),
}


@pytest.mark.parametrize("attack", sorted(USER_JWT_ATTACKS))
async def test_forged_user_jwts_are_refused_by_the_broker(http, settings, attack):
    token = USER_JWT_ATTACKS[attack](settings.user_jwt_public_key)
    headers = {"Authorization": f"Bearer {token}"}
    response = await http.post("/api/mozaiks/sessions", json={"workflow_name": "hello"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert token not in response.text
    listed = await http.get("/api/mozaiks/sessions", headers={"Authorization": f"Bearer {hs256(claims())}"})
    assert listed.json()["sessions"] == []  # nothing was created for the attacker


async def test_a_runtime_token_is_not_a_user_jwt(http, chats):
    session = chats[0]
    for path in ("/api/mozaiks/sessions", f"/api/mozaiks/sessions/{session.chat_id}/events"):
        response = await http.get(path, headers={"Authorization": f"Bearer {session.runtime_token}"})
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


# --- the WebSocket ----------------------------------------------------------------------------

@pytest.mark.parametrize("attack,code", [
    ("user_jwt", 4401), ("unsigned", 4401), ("no_typ_header", 4401), ("tampered_chat_id", 4401),
    ("runtime_token_of_another_user", 4403), ("runtime_token_for_another_app", 4403),
    ("runtime_token_for_another_workflow", 4403),
])
async def test_misused_runtime_tokens_are_refused_on_the_websocket(chats, settings, attack, code):
    session, mallory_session = chats
    valid = session.runtime_token
    token = {
        "user_jwt": lambda: hs256(claims(sub="wendy")),
        "unsigned": lambda: unsigned(jwt.decode(valid, options={"verify_signature": False}), typ="mozaiks-runtime+jwt"),
        "no_typ_header": lambda: jwt.encode(jwt.decode(valid, options={"verify_signature": False}), RUNTIME_SECRET,
                                            algorithm="HS256"),
        "tampered_chat_id": lambda: tampered(mallory_session.runtime_token, chat_id=session.chat_id, sub="wendy"),
        "runtime_token_of_another_user": lambda: mallory_session.runtime_token,
        "runtime_token_for_another_app": lambda: RuntimeTokenMinter(settings).mint(
            "wendy", "other-app", session.chat_id, "hello")[0],
        "runtime_token_for_another_workflow": lambda: RuntimeTokenMinter(settings).mint(
            "wendy", APP_ID, session.chat_id, "campaign_builder")[0],
    }[attack]()
    close, received = await refused_socket(session.ws_url, ["mozaiks.v1", f"bearer.{token}"])
    assert (close, received) == (code, [])
    # The same through first-frame authentication.
    close, received = await refused_socket(session.ws_url, first_frame={"type": "auth", "token": token})
    assert (close, received) == (code, [])


@pytest.mark.parametrize("method,path,params,status,code", [
    ("GET", "/api/mozaiks/sessions", {"cursor": "not-a-cursor"}, 422, "invalid_request"),
    ("GET", "/api/mozaiks/sessions", {"limit": "100000"}, 422, "invalid_request"),
    ("GET", "/api/mozaiks/sessions/some-chat/events", {"after_seq": "-1"}, 422, "invalid_request"),
    ("DELETE", "/api/mozaiks/sessions", {}, 405, "method_not_allowed"),
])
async def test_malformed_requests_get_the_envelope_never_fastapis_detail(http, method, path, params, status, code):
    response = await http.request(method, path, params=params,
                                  headers={"Authorization": f"Bearer {hs256(claims())}"})
    assert response.status_code == status
    assert set(response.json()) == {"error"} and response.json()["error"]["code"] == code
