"""Residency follows work: a chat whose user keeps the socket open but sends nothing passivates
after its keep-alive like any idle chat; the socket stays open, and whatever the user does next
(a message, a UI answer, a cancel, a reconnect) is served as if the chat had stayed resident."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from tests.chaos.chaos_support import actor_pids
from tests.conftest import APP_ID
from tests.lifecycle_support import FIRST_REPLY, RawSocket, lifecycle_policy, passivated, user_message

KEEP_ALIVE_S = 0.3


async def _still_open(sock: RawSocket) -> None:
    """The ingress answers on the socket although no session serves the chat right now."""
    await sock.ws.send('{"type": "ping"}')
    await sock.next("ping")


async def _log(broker: Any, chat_id: str) -> list[int]:
    return [e["seq"] for e in (await broker.events(chat_id, limit=1000))["events"]]


async def test_a_connected_chat_passivates_and_its_socket_carries_on(broker_for):
    async with lifecycle_policy(idle_timeout_s=KEEP_ALIVE_S) as sessions:
        broker = broker_for("resident-follows-work")
        session = await broker.create_session("waits")
        passivations = (await sessions.stats()).count("passivations")
        sock = await RawSocket.open(session)
        request = await sock.next("chat.input_request")
        await passivated(session.chat_id)
        await _still_open(sock)

        # The next message re-activates the chat; the answer reaches the same socket.
        ack = await sock.send(user_message("launch", input_request_id=request["data"]["request_id"]))
        assert ack["status"] == "accepted"
        ui_call = await sock.next("chat.tool_call")
        await passivated(session.chat_id)
        await _still_open(sock)

        # So does a UI answer.
        ack = await sock.send({"type": "ui_tool_response", "call_id": ui_call["data"]["call_id"],
                               "response": {"decision": "approved"}})
        assert ack["status"] == "accepted"
        done = await sock.next("chat.run_complete")
        assert done["data"]["status"] == "completed"
        assert (await sessions.stats()).count("passivations") >= passivations + 2

        # Every durable event reached the socket once, in order, with the log's seqs.
        logged = await _log(broker, session.chat_id)
        assert sock.durable_seqs() == logged == list(range(1, len(logged) + 1))
        await sock.close()


async def test_cancel_and_reconnect_reach_a_passivated_connected_chat(broker_for):
    async with lifecycle_policy(idle_timeout_s=KEEP_ALIVE_S):
        broker = broker_for("resident-cancel")
        session = await broker.create_session("waits")
        sock = await RawSocket.open(session)
        await sock.next("chat.input_request")
        await passivated(session.chat_id)

        ack = await sock.send({"type": "chat.cancel", "mode": "immediate"})
        assert ack["status"] == "accepted"  # the run waiting for input is still a run
        done = await sock.next("chat.run_complete")
        assert done["data"]["status"] == "cancelled"
        await passivated(session.chat_id)
        logged = await _log(broker, session.chat_id)
        assert sock.durable_seqs() == logged
        await sock.close()

        # A reconnect to the passivated chat replays exactly the log.
        again = await RawSocket.open(session, last_seq=0)
        boundary = await again.next("chat.resume_boundary")
        assert boundary["data"]["last_seq"] == logged[-1]
        assert again.durable_seqs() == logged
        await again.close()


async def test_a_crash_while_passivated_and_connected_loses_nothing(broker_for):
    async with lifecycle_policy(idle_timeout_s=KEEP_ALIVE_S) as sessions:
        broker = broker_for("resident-crash")
        session = await broker.create_session("waits")
        sock = await RawSocket.open(session)
        request = await sock.next("chat.input_request")
        former = await sessions.peek(session.chat_id)
        pid = await former.pid()
        await passivated(session.chat_id)
        os.kill(pid, signal.SIGKILL)  # the process that served the chat, now blank in the warm pool
        await _still_open(sock)

        ack = await sock.send(user_message("launch", message_id="after-crash",
                                           input_request_id=request["data"]["request_id"]))
        assert ack["status"] == "accepted"
        await sock.next("chat.tool_call")
        assert (await sock.send(user_message("launch", message_id="after-crash")))["status"] == "duplicate"
        logged = await _log(broker, session.chat_id)
        assert sock.durable_seqs() == logged == list(range(1, len(logged) + 1))
        texts = [e["data"]["content"] for e in (await broker.events(session.chat_id))["events"]
                 if e["type"] == "chat.text"]
        assert texts == ["What is the plan called?", "launch"]
        await sock.close()


async def test_what_a_chat_committed_as_it_passivated_reaches_a_socket_that_fell_behind(broker_for):
    """The soak's stalled chats: the session committed its last events and passivated before the
    socket polled for them. The socket must still deliver them (from the log), not wait for an
    activation that a chat waiting for its user - or completed - may never get."""
    async with lifecycle_policy(idle_timeout_s=KEEP_ALIVE_S):
        broker = broker_for("resident-behind")
        session = await broker.create_session("slow_turns")
        sock = await RawSocket.open(session)
        assert (await sock.send(user_message("first")))["status"] == "accepted"
        await sock.next("chat.text_delta")  # the reply streams for about a second
        ingress = actor_pids("MozaiksIngress")
        for pid in ingress:  # the socket's side falls behind: it polls no more until resumed
            os.kill(pid, signal.SIGSTOP)
        try:
            await passivated(session.chat_id)  # the turn ended and the chat went, unpolled
        finally:
            for pid in ingress:
                os.kill(pid, signal.SIGCONT)
        reply = await sock.next("chat.text", agent="Writer", timeout=10)
        assert reply["data"]["content"] == FIRST_REPLY.format("first")
        await sock.next("chat.input_request", timeout=10)
        logged = await _log(broker, session.chat_id)
        assert sock.durable_seqs() == logged == list(range(1, len(logged) + 1))
        await sock.close()


async def test_a_chat_activated_for_a_slow_caller_waits_for_it(broker_for):
    """On a loaded node the call that activates a chat, and the attach after it, took longer than
    the keep-alive: the chat passivated in between, was activated again for the caller's retry,
    and again, and the socket never got its chat_meta (the 100-chat soak). The chat waits for the
    caller that activated it; once reached, the keep-alive applies as before."""
    async with lifecycle_policy(idle_timeout_s=KEEP_ALIVE_S) as sessions:
        broker = broker_for("slow-caller")
        session = await broker.create_session("waits")
        handle = await sessions.session(APP_ID, "slow-caller", session.chat_id)
        assert handle is not None
        # The slow caller (the delay is the fault itself): ten keep-alives before it attaches.
        await asyncio.sleep(10 * KEEP_ALIVE_S)
        attached = await handle.attach(session.chat_id, "slow-watcher")  # SessionGone before the fix
        assert attached.meta.chat_id == session.chat_id
        await handle.detach(session.chat_id, "slow-watcher")
        await passivated(session.chat_id)
