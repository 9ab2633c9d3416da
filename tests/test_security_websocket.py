"""The WebSocket edge of PROTOCOL §4 and CORS, against the real Serve app: where tokens are
accepted, Origin, frame size, message rate and token expiry."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from broker.runtime_token import RuntimeTokenMinter
from mozaiks.client import BrokerClient, Session
from tests.conftest import ALLOWED_ORIGIN, APP_ID, user_token
from tests.helpers import refused_socket


@pytest.fixture(scope="module")
async def chat(runtime: Any) -> AsyncIterator[tuple[BrokerClient, Session]]:
    async with BrokerClient(runtime.http_url, user_token("edge-user")) as broker:
        yield broker, await broker.create_session("hello")


def bearer(token: str) -> list[str]:
    return ["mozaiks.v1", f"bearer.{token}"]


async def first_event(ws: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def test_subprotocol_auth_selects_the_protocol(chat):
    _, session = chat
    async with websockets.connect(session.ws_url, subprotocols=bearer(session.runtime_token)) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "mozaiks.v1"
        assert (await first_event(ws))["type"] == "chat_meta"


async def test_query_string_token_is_ignored_while_the_legacy_switch_is_off(chat, settings):
    _, session = chat
    assert not settings.ws_allow_query_token
    url = f"{session.ws_url}?access_token={session.runtime_token}"
    assert await refused_socket(url, first_frame={"type": "ping"}) == (4401, [])


async def test_origin_allowlist(chat):
    _, session = chat
    assert await refused_socket(session.ws_url, bearer(session.runtime_token),
                                headers={"Origin": "http://evil.test"}) == (4403, [])
    async with websockets.connect(session.ws_url, subprotocols=bearer(session.runtime_token),  # type: ignore[arg-type]
                                  additional_headers={"Origin": ALLOWED_ORIGIN}) as ws:
        assert (await first_event(ws))["type"] == "chat_meta"


async def test_inbound_frame_over_64_kib_closes_1009(chat):
    _, session = chat
    async with websockets.connect(session.ws_url, subprotocols=bearer(session.runtime_token)) as ws:  # type: ignore[arg-type]
        await first_event(ws)
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 64 * 1024}))
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert ws.close_code == 1009


async def test_a_message_flood_is_rejected_then_closed_4429(chat):
    _, session = chat
    reasons: set[str] = set()
    async with websockets.connect(session.ws_url, subprotocols=bearer(session.runtime_token)) as ws:  # type: ignore[arg-type]
        await first_event(ws)
        for _ in range(300):
            await ws.send(json.dumps({"type": "client.resume", "id": uuid.uuid4().hex, "last_seq": -1}))
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "ack":
                        reasons.add(event["data"]["reason"])
        assert ws.close_code == 4429
    assert "rate_limited" in reasons


async def test_an_expired_token_closes_4401_unless_the_client_reauthenticates(chat, settings):
    broker, session = chat
    other = await broker.create_session("hello")
    fresh = (await broker.refresh_token(session.chat_id))["runtime_token"]
    # Minted last, so a loaded machine's slow broker calls cannot eat the short token's lifetime.
    short, _ = RuntimeTokenMinter(settings).mint("edge-user", APP_ID, session.chat_id, "hello", ttl_s=3)
    lapsed = asyncio.Event()

    async def lapses() -> int | None:
        async with websockets.connect(session.ws_url, subprotocols=bearer(short)) as ws:  # type: ignore[arg-type]
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(15):
                    while True:
                        await ws.recv()
            lapsed.set()
            return ws.close_code

    async def renews() -> list[dict[str, Any]]:
        acks = []
        async with websockets.connect(session.ws_url, subprotocols=bearer(short)) as ws:  # type: ignore[arg-type]
            for token in (other.runtime_token, fresh):  # another chat's token cannot widen the socket
                await ws.send(json.dumps({"type": "auth", "id": token[-8:], "token": token}))
            async with asyncio.timeout(15):
                await lapsed.wait()  # the short token has expired: the other socket saw 4401
            await ws.send(json.dumps({"type": "ping"}))
            async with asyncio.timeout(10):
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "ack":
                        acks.append(event["data"])
                    if event["type"] == "ping":  # still open after the first token expired
                        return acks

    code, acks = await asyncio.gather(lapses(), renews())
    assert code == 4401
    assert [a["status"] for a in acks] == ["rejected", "accepted"]


async def test_cors_answers_only_the_allowlisted_origin(http):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = await http.options("/api/mozaiks/sessions", headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN  # never "*" with credentials
    for response in (await http.options("/api/mozaiks/sessions", headers={"Origin": "http://evil.test", **preflight}),
                     await http.get("/healthz", headers={"Origin": "http://evil.test"})):
        assert "access-control-allow-origin" not in response.headers
