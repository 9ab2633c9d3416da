"""Idle chats passivate and come back transparently (also by themselves when a wait of theirs times
out); resident sessions are capped, least recently used first."""

from __future__ import annotations

from typing import Any

from ray.exceptions import RayActorError

from tests.lifecycle_support import FIRST_REPLY, RawSocket, eventually, lifecycle_policy, passivated, user_message


async def _blank_or_ended(actor: Any) -> bool:
    try:
        return await actor.ping() == ""
    except RayActorError:
        return True


async def test_an_idle_chat_passivates_and_comes_back_with_its_waits(broker_for):
    async with lifecycle_policy(idle_timeout_s=0.3) as sessions:
        broker = broker_for("sleepy")
        session = await broker.create_session("waits")
        passivations = (await sessions.stats()).count("passivations")
        sock = await RawSocket.open(session)
        request = await sock.next("chat.input_request")
        first_actor = await sessions.peek(session.chat_id)
        await sock.close()
        await passivated(session.chat_id)
        assert await _blank_or_ended(first_actor)  # it serves no chat any more

        # A new connection re-activates it: the open input request is still pending.
        sock = await RawSocket.open(session, last_seq=request["seq"])
        meta = await sock.next("chat_meta")
        assert meta["data"]["pending"]["request_id"] == request["data"]["request_id"]
        assert meta["data"]["phase"] == "waiting_input"
        ack = await sock.send(user_message("launch", input_request_id=request["data"]["request_id"]))
        assert ack["status"] == "accepted"
        ui_call = await sock.next("chat.tool_call")
        await sock.close()
        await passivated(session.chat_id)

        # And again with the UI tool waiting for its answer.
        sock = await RawSocket.open(session, last_seq=ui_call["seq"])
        pending = (await sock.next("chat_meta"))["data"]["pending"]
        assert pending["kind"] == "ui_tool" and pending["call_id"] == ui_call["data"]["call_id"]
        ack = await sock.send({"type": "ui_tool_response", "call_id": pending["call_id"],
                               "response": {"decision": "approved"}})
        assert ack["status"] == "accepted"
        done = await sock.next("chat.run_complete")
        await sock.close()
        assert done["data"]["status"] == "completed"
        assert (await sessions.stats()).count("passivations") >= passivations + 2

    history = (await broker.events(session.chat_id, limit=1000))["events"]
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert [e["type"] for e in history].count("chat.input_request") == 1
    texts = [e["data"]["content"] for e in history if e["type"] == "chat.text"]
    assert texts == ["What is the plan called?", "launch", "Thanks, the decision was approved."]


async def test_a_passivated_chat_wakes_up_when_its_wait_times_out(broker_for):
    async with lifecycle_policy(idle_timeout_s=0.2):
        broker = broker_for("waiter")
        session = await broker.create_session("wake_on_timeout")  # its input request times out after 3 s
        sock = await RawSocket.open(session)
        request = await sock.next("chat.input_request")
        await sock.close()
        await passivated(session.chat_id)
        history = (await broker.events(session.chat_id))["events"]
        assert history[-1]["type"] == "chat.input_request"  # passivated while still waiting

        async def completed() -> bool:
            return (await broker.events(session.chat_id))["events"][-1]["type"] == "chat.run_complete"

        # Nobody connects: the directory re-activates the chat at the deadline to apply the timeout.
        await eventually(completed, what="the timed-out wait to end the run")
    history = (await broker.events(session.chat_id))["events"]
    timeout = next(e for e in history if e["type"] == "chat.input_timeout")
    assert timeout["data"]["request_id"] == request["data"]["request_id"]
    assert history[-1]["data"]["status"] == "completed"


async def test_resident_sessions_are_capped_least_recently_used_first(broker_for):
    broker = broker_for("crowded")
    # Passivate whatever earlier tests left resident and idle; what stays is busy (sockets open).
    async with lifecycle_policy(max_resident_sessions=1) as sessions:
        sweeper = await broker.create_session("slow_turns")
    assert await sessions.passivate(sweeper.chat_id, await sessions.peek(sweeper.chat_id))
    busy = (await sessions.stats()).resident
    async with lifecycle_policy(max_resident_sessions=busy + 2):
        a = await broker.create_session("slow_turns")
        b = await broker.create_session("slow_turns")
        watching_b = await RawSocket.open(b)  # an open socket does not pin b ...
        await watching_b.next("chat_meta")
        c = await broker.create_session("slow_turns")
        assert await sessions.peek(a.chat_id) is None  # least recently used and idle: went first
        d = await broker.create_session("slow_turns")
        assert await sessions.peek(b.chat_id) is None  # ... so it made room next
        assert await sessions.peek(c.chat_id) is not None
        assert await sessions.peek(d.chat_id) is not None
        # The socket stayed open: its next message brings b back.
        assert (await watching_b.send(user_message("still here")))["status"] == "accepted"
        assert (await watching_b.next("chat.text", agent="Writer"))["data"]["content"].startswith("Reply one")
        await watching_b.close()
        # An evicted chat comes back on its next connection, as any passivated one.
        sock = await RawSocket.open(a)
        assert (await sock.send(user_message("back")))["status"] == "accepted"
        assert (await sock.next("chat.text", agent="Writer"))["data"]["content"] == FIRST_REPLY.format("back")
        await sock.close()
