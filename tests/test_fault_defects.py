"""Defects found by killing parts of the runtime (issue 14), one test each, against the real Serve
app and real Ray processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import ray

from serve_app import close_codes
from tests.lifecycle_support import RawSocket, directory, user_message


async def _dead(actor: Any) -> None:
    """Returns once Ray reports the actor dead (a call on it fails with ActorDiedError)."""
    while True:
        try:
            await actor.ping.remote()
        except ray.exceptions.ActorDiedError:
            return
        await asyncio.sleep(0.05)


@asynccontextmanager
async def _frozen(pids: list[int]) -> AsyncIterator[None]:
    """Processes that are alive but answer nothing (SIGSTOP): what a directory swamped by a burst
    of re-activations on a loaded node looks like to everyone waiting on it."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def test_a_socket_whose_session_dies_mid_tool_call_is_told_to_reconnect_in_time(broker_for, settings):
    broker = broker_for("silent-socket")
    session = await broker.create_session("restart_tools")
    sock = await RawSocket.open(session)
    assert (await sock.send(user_message("go")))["status"] == "accepted"
    await sock.next("tool_progress")  # mid-tool-call
    sessions = directory()
    victim = await sessions.peek(session.chat_id)
    assert victim is not None
    pid = await victim.pid()
    directory_pids = await sessions.pids()

    async with _frozen(directory_pids):  # the session cannot be re-activated for now
        os.kill(pid, signal.SIGKILL)
        await _dead(victim.actor)
        reported = time.monotonic()
        async with asyncio.timeout(5.0):
            await sock.ws.wait_closed()
        assert sock.ws.close_code == close_codes.SESSION_RESTARTING
        assert time.monotonic() - reported <= 5.0
        seen = sock.durable_seqs()
        await sock.close()

    # The client does what the close code says: reconnect from its last seq, and the run finishes
    # with nothing lost, nothing repeated and the non-idempotent tool not run twice.
    again = await RawSocket.open(session, last_seq=seen[-1])
    done = await again.next("chat.run_complete", timeout=60)
    await again.close()
    assert done["data"]["status"] == "completed"
    assert seen + again.durable_seqs() == list(range(1, done["seq"] + 1))
    history = (await broker.events(session.chat_id, limit=1000))["events"]
    unsafe = [e for e in history if e["type"] == "chat.tool_response" and e["data"]["name"] == "unsafe_step"]
    assert len(unsafe) == 1 and unsafe[0]["data"]["status"] == "error"


async def test_a_session_killed_between_a_run_end_and_its_journey_hook_still_advances_the_journey(broker_for):
    broker = broker_for("journey-crash")
    sessions = directory()
    directory_pids = await sessions.pids()
    session = await broker.create_session("j_a", context={"topic": "t"})
    sock = await RawSocket.open(session)  # AgentDriven: its run starts now, and streams for ~1.5 s
    await sock.next("chat.text_delta")
    victim = await sessions.peek(session.chat_id)
    assert victim is not None
    pid = await victim.pid()
    async with _frozen(directory_pids):  # the hook cannot start the next step's chats
        done = await sock.next("chat.run_complete")
        assert done["data"]["status"] == "completed"
        os.kill(pid, signal.SIGKILL)  # after the run's end is durable, before its hook finished
        await _dead(victim.actor)
    await sock.close()

    # The re-activated session runs the hook again: the journey advances exactly once.
    async def announced() -> list[dict[str, Any]]:
        events = (await broker.events(session.chat_id, limit=1000))["events"]
        return [e for e in events if e["type"] == "chat.journey_next"]

    async with asyncio.timeout(60):
        while not (found := await announced()):
            await asyncio.sleep(0.1)
    [journey_next] = found
    nxt = {c["workflow_name"]: c["chat_id"] for c in journey_next["data"]["next"]}
    assert set(nxt) == {"j_b", "j_c"}
    rows = (await broker.list_sessions(limit=100))["sessions"]
    for name in ("j_b", "j_c"):  # created once, however often the hook ran
        assert [r["chat_id"] for r in rows if r["workflow_name"] == name] == [nxt[name]]
    for chat_id in nxt.values():  # each next chat was started, though nobody opened it
        async with asyncio.timeout(60):
            while not [e for e in (await broker.events(chat_id))["events"] if e["type"] == "chat.run_start"]:
                await asyncio.sleep(0.1)
    history = (await broker.events(session.chat_id, limit=1000))["events"]
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    assert [e["type"] for e in history].count("chat.run_complete") == 1


async def test_a_turn_resumed_after_a_crash_announces_its_speaker_once(broker_for):
    broker = broker_for("speaker-once")
    session = await broker.create_session("slow_turns")
    sock = await RawSocket.open(session)
    assert (await sock.send(user_message("once")))["status"] == "accepted"
    await sock.next("chat.text_delta")  # the model call is streaming: chat.select_speaker is durable already
    victim = await directory().peek(session.chat_id)
    assert victim is not None
    os.kill(await victim.pid(), signal.SIGKILL)
    await _dead(victim.actor)
    await sock.next("chat.text", agent="Writer")  # the resumed turn's reply
    await sock.close()
    history = (await broker.events(session.chat_id, limit=1000))["events"]
    speakers = [e["data"]["agent"] for e in history if e["type"] == "chat.select_speaker"]
    assert speakers == ["Writer"], speakers
