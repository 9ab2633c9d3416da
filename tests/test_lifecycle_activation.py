"""Activation is idempotent under concurrency, and ownership is fenced by the store's epoch."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import RayActorError

from mozaiks.errors import SessionGone
from mozaiks.protocol.client_messages import parse_client_message
from mozaiks.store import open_store
from tests.conftest import APP_ID
from tests.lifecycle_support import RawSocket, directory, eventually, user_message


async def test_twenty_concurrent_connections_share_one_session_actor(broker_for, settings):
    broker = broker_for("crowd")
    session = await broker.create_session("hello")
    chat_id, sessions = session.chat_id, directory()
    # Passivate it (never opened, so idle): the crowd below arrives at a chat with no actor.
    assert await sessions.passivate(chat_id, await sessions.peek(chat_id))
    assert await sessions.peek(chat_id) is None
    store = open_store(settings.resolved_store_url)
    epoch_before = (await store.get_chat(APP_ID, "crowd", chat_id)).epoch
    activations_before = (await sessions.stats()).count("activations")

    sockets, _ = await asyncio.gather(
        asyncio.gather(*(RawSocket.open(session) for _ in range(20))),
        asyncio.gather(*(broker.create_session("hello", chat_id=chat_id) for _ in range(5))))

    assert (await sessions.stats()).count("activations") == activations_before + 1
    # Independent of the directory's books: every activation claims a new epoch in the store.
    assert (await store.get_chat(APP_ID, "crowd", chat_id)).epoch == epoch_before + 1
    assert await (await sessions.peek(chat_id)).ping() == chat_id
    metas = [await s.next("chat_meta") for s in sockets]
    assert {m["data"]["chat_id"] for m in metas} == {chat_id}

    request = await sockets[0].next("chat.input_request")
    ack = await sockets[7].send(user_message("ada", input_request_id=request["data"]["request_id"]))
    assert ack["status"] == "accepted"
    for sock in sockets:
        await sock.next("chat.run_complete")
    logged = [e["seq"] for e in (await broker.events(chat_id, limit=1000))["events"]]
    assert logged == list(range(1, len(logged) + 1))
    for sock in sockets:
        assert sock.durable_seqs() == logged  # every socket saw every event, once, in order
        await sock.close()
    await store.close()


async def test_a_fenced_out_session_cannot_append_and_stops(broker_for, settings):
    broker = broker_for("fenced")
    session = await broker.create_session("slow_turns")
    chat_id, sessions = session.chat_id, directory()
    stale = await sessions.peek(chat_id)
    fenced_before = (await sessions.stats()).count("fenced")
    store = open_store(settings.resolved_store_url)
    newer_epoch = await store.claim(APP_ID, "fenced", chat_id)  # another owner took the chat

    with pytest.raises(SessionGone) as refused:
        await stale.submit(chat_id, parse_client_message(user_message("from the past", message_id="m-1")))
    assert not refused.value.crashed
    assert await store.read_events(APP_ID, "fenced", chat_id) == []  # refused by the store

    async def stopped() -> bool:
        try:
            return await stale.ping() == ""  # blank again (back in the pool) ...
        except RayActorError:
            return True  # ... or ended

    await eventually(stopped, what="the fenced-out actor to let go of the chat")
    assert (await sessions.stats()).count("fenced") == fenced_before + 1
    assert await sessions.peek(chat_id) is None

    # The chat itself carries on under a newer owner; the refused message was never recorded.
    sock = await RawSocket.open(session)
    assert (await sock.send(user_message("again", message_id="m-1")))["status"] == "accepted"
    reply = await sock.next("chat.text", agent="Writer")
    assert reply["data"]["content"].startswith("Reply one to again:")
    assert (await store.get_chat(APP_ID, "fenced", chat_id)).epoch == newer_epoch + 1
    await sock.close()
    await store.close()
