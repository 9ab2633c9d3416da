"""A session actor whose process is SIGKILLed mid-turn: the turn completes, exactly once."""

from __future__ import annotations

import os
import signal
from typing import Any

from tests.lifecycle_support import FIRST_REPLY, RawSocket, directory, eventually, user_message


async def _kill_session(chat_id: str) -> None:
    actor = await directory().peek(chat_id)
    os.kill(await actor.pid(), signal.SIGKILL)


def _texts(history: list[dict[str, Any]], role: str) -> list[str]:
    return [e["data"]["content"] for e in history if e["type"] == "chat.text" and e["data"]["role"] == role]


async def test_a_session_killed_mid_turn_finishes_the_turn_once(broker_for):
    broker = broker_for("crashy")
    session = await broker.create_session("slow_turns")
    crashes = (await directory().stats()).count("crashes")
    sock = await RawSocket.open(session)
    ack = await sock.send(user_message("first", message_id="msg-1"))
    assert ack["status"] == "accepted"
    await sock.next("chat.text_delta")  # the reply is streaming: the turn is in progress
    await _kill_session(session.chat_id)

    reply = await sock.next("chat.text", agent="Writer")
    assert reply["data"]["content"] == FIRST_REPLY.format("first")
    await sock.next("chat.input_request")
    # The client saw every durable event once, in order, without a gap.
    seen = sock.durable_seqs()
    assert seen == list(range(1, len(seen) + 1))
    # The acked message was processed once, and sending it again changes nothing.
    assert (await sock.send(user_message("first", message_id="msg-1")))["status"] == "duplicate"
    history = (await broker.events(session.chat_id, limit=1000))["events"]
    assert [e["seq"] for e in history] == seen
    assert _texts(history, "user") == ["first"]
    assert _texts(history, "assistant") == [FIRST_REPLY.format("first")]
    assert (await directory().stats()).count("crashes") == crashes + 1
    await sock.close()


async def test_a_killed_session_with_nobody_connected_recovers_by_itself(broker_for):
    broker = broker_for("alone")
    session = await broker.create_session("slow_turns")
    sock = await RawSocket.open(session)
    assert (await sock.send(user_message("unattended")))["status"] == "accepted"
    await sock.next("chat.text_delta")
    await sock.close()
    await _kill_session(session.chat_id)

    async def replied() -> bool:
        history = (await broker.events(session.chat_id, limit=1000))["events"]
        return bool(_texts(history, "assistant"))

    await eventually(replied, what="the re-activated session to finish the turn")
    history = (await broker.events(session.chat_id, limit=1000))["events"]
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert _texts(history, "user") == ["unattended"]
    assert _texts(history, "assistant") == [FIRST_REPLY.format("unattended")]
