"""The walking skeleton end to end: broker → session actor → WebSocket, on real Ray and Serve."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest
import websockets

from mozaiks.client import BrokerError, ChatConnection
from tests.helpers import collect_until
from tests.conftest import RUNTIME_SECRET


async def run_hello(conn: ChatConnection, name: str = "ada") -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    request = (await collect_until(conn, "chat.input_request", into=seen))[-1]
    ack = await conn.say(name, input_request_id=request["data"]["request_id"])
    assert ack["status"] == "accepted"
    await collect_until(conn, "chat.run_complete", into=seen)
    return seen


async def test_hello_runs_end_to_end(broker_for):
    broker = broker_for("alice")
    session = await broker.create_session("hello")
    assert session.status == "created"
    async with await broker.connect(session, last_seq=None) as conn:
        assert conn.meta["chat_id"] == session.chat_id and conn.meta["status"] == "active"
        events = await run_hello(conn)
    durable = [e for e in events if e["seq"] is not None]
    assert [e["seq"] for e in durable] == list(range(1, len(durable) + 1))
    types = [e["type"] for e in durable]
    assert types[0] == "chat.run_start"
    texts = [e["data"]["content"] for e in durable if e["type"] == "chat.text"]
    assert texts[0] == "Hi, I'm the greeter. What's your name?"
    assert texts[1] == "ada"
    assert "Nice to meet you, Ada! I'll hand you to my colleague now." in texts
    assert texts[-1] == "Goodbye, Ada! Come back soon."
    call = next(e for e in durable if e["type"] == "chat.tool_call")
    assert call["data"]["name"] == "make_greeting" and call["data"]["arguments"] == {"name": "ada"}
    response = next(e for e in durable if e["type"] == "chat.tool_response")
    assert response["data"]["status"] == "ok" and response["data"]["result"]["greeting"] == "Nice to meet you, Ada!"
    # The tool ran as a Ray task in a worker process, not inside the session actor.
    assert response["data"]["result"]["pid"] != call["data"].get("pid")
    assert {"variable": "user_name", "value": "Ada"} in [e["data"] for e in durable if e["type"] == "context_update"]
    handoff = next(e for e in durable if e["type"] == "chat.handoff")
    assert handoff["data"] == {"from_agent": "Greeter", "to_agent": "Farewell", "reason": "after_work"}
    assert types.index("chat.input_request") < types.index("chat.input_ack") < types.index("chat.tool_call")
    complete = durable[-1]
    assert complete["type"] == "chat.run_complete" and complete["data"]["status"] == "completed"
    listed = await broker.list_sessions()
    row = next(s for s in listed["sessions"] if s["chat_id"] == session.chat_id)
    assert row["status"] == "completed" and row["phase"] is None


async def test_resume_from_last_seq_replays_exactly_once(broker_for):
    broker = broker_for("bob")
    session = await broker.create_session("hello")
    conn = await broker.connect(session, last_seq=None)
    first: list[dict[str, Any]] = []
    request = (await collect_until(conn, "chat.input_request", into=first))[-1]
    await conn.close()
    n = first[1]["seq"]  # disconnect "after event N": pretend the client only kept the first two
    resumed = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=n)
    replay: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        while True:
            raw = await resumed.next_event(timeout=None)
            replay.append(raw)
            if raw["type"] == "chat.resume_boundary":
                break
    replayed = [e for e in replay if e["seq"] is not None]
    assert [e["seq"] for e in replayed] == list(range(n + 1, request["seq"] + 1))
    assert replay[-1]["data"] == {"replayed": len(replayed), "last_seq": request["seq"]}
    await resumed.say("grace", input_request_id=request["data"]["request_id"])
    live: list[dict[str, Any]] = []
    await collect_until(resumed, "chat.run_complete", into=live)
    assert live[0]["seq"] == request["seq"] + 1 if live[0]["seq"] else True
    live_seqs = [e["seq"] for e in live if e["seq"] is not None]
    assert live_seqs == list(range(request["seq"] + 1, live_seqs[-1] + 1))
    await resumed.close()


async def test_resume_with_raw_socket_sees_no_duplicates(broker_for, runtime):
    """Without the client's de-duplication: the server itself sends each durable seq once."""
    broker = broker_for("carol")
    session = await broker.create_session("hello")
    conn = await broker.connect(session, last_seq=0)
    seen: list[dict[str, Any]] = []
    await collect_until(conn, "chat.input_request", into=seen)
    await conn.close()
    async with websockets.connect(session.ws_url, subprotocols=["mozaiks.v1", f"bearer.{session.runtime_token}"]) as ws:
        await ws.send(json.dumps({"type": "client.resume", "last_seq": 1}))
        frames = []
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await ws.recv())
                frames.append(frame)
                if frame["type"] == "chat.resume_boundary":
                    break
    assert frames[0]["type"] == "chat_meta"
    seqs = [f["seq"] for f in frames if f["seq"] is not None]
    assert seqs == list(range(2, seen[-1]["seq"] + 1))


async def test_sessions_are_private_to_their_user(broker_for):
    alice, mallory = broker_for("alice2"), broker_for("mallory")
    session = await alice.create_session("hello")
    assert session.chat_id in [s["chat_id"] for s in (await alice.list_sessions())["sessions"]]
    assert session.chat_id not in [s["chat_id"] for s in (await mallory.list_sessions())["sessions"]]
    with pytest.raises(BrokerError) as err:
        await mallory.create_session("hello", chat_id=session.chat_id)
    assert err.value.status == 404 and err.value.code == "chat_not_found"
    with pytest.raises(BrokerError) as other_app:
        await broker_for("alice2", app_id="other-app").create_session("hello", chat_id=session.chat_id)
    assert other_app.value.status == 404
    resumed = await alice.create_session("hello", chat_id=session.chat_id)
    assert resumed.status == "resumed" and resumed.chat_id == session.chat_id


def _runtime_token(session: Any, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": "mozaiks-broker", "aud": "mozaiks-runtime", "sub": "", "app_id": "test-app",
              "chat_id": session.chat_id, "workflow_name": "hello", "iat": now, "nbf": now, "exp": now + 600,
              "jti": "t"}
    claims["sub"] = session.ws_url.rstrip("/").rsplit("/", 1)[1]
    claims.update(overrides)
    return jwt.encode(claims, overrides.pop("_secret", RUNTIME_SECRET), algorithm="HS256",
                      headers={"typ": "mozaiks-runtime+jwt"})


async def _close_code(url: str, subprotocols: list[str] | None) -> tuple[int | None, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []
    async with websockets.connect(url, subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
        try:
            async with asyncio.timeout(10):
                while True:
                    received.append(json.loads(await ws.recv()))
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, received


@pytest.mark.parametrize("case,code", [
    ("no_token", 4408), ("bad_signature", 4401), ("expired", 4401), ("other_chat", 4403), ("garbage", 4401),
])
async def test_websocket_refuses_bad_tokens(broker_for, settings, case, code):
    broker = broker_for("dave")
    session = await broker.create_session("hello")
    other = await broker.create_session("hello")
    token = {
        "no_token": None,
        "bad_signature": jwt.encode({"sub": "dave"}, "wrong-secret-wrong-secret-wrong-secret!!", algorithm="HS256"),
        "expired": _runtime_token(session, exp=int(time.time()) - 120, iat=int(time.time()) - 1000,
                                  nbf=int(time.time()) - 1000),
        "other_chat": other.runtime_token,
        "garbage": "not-a-jwt",
    }[case]
    if case == "bad_signature":
        token = _runtime_token(session, _secret="an-attacker-secret-that-is-long-enough-xx")
    subprotocols = ["mozaiks.v1"] + ([f"bearer.{token}"] if token else [])
    if case == "no_token":
        settings_timeout = settings.ws_auth_timeout_s
        assert settings_timeout <= 5
    close, received = await _close_code(session.ws_url, subprotocols)
    assert close == code
    assert received == []


async def test_first_frame_auth(broker_for):
    broker = broker_for("erin")
    session = await broker.create_session("hello")
    async with websockets.connect(session.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": session.runtime_token, "last_seq": 0}))
        meta = json.loads(await ws.recv())
        assert meta["type"] == "chat_meta" and meta["data"]["chat_id"] == session.chat_id
