"""What one two-agent turn (user message -> agent A -> handoff -> agent B -> input request) costs
in round trips: durable store commits and Ray calls of the chat's session. Counted by the session
itself (SessionStatus), so a change that splits a turn's transactions again fails here."""

from __future__ import annotations

import uuid
from typing import Any

from actors.handles import SessionHandle
from mozaiks.client import ChatConnection
from tests.lifecycle_support import directory

MAX_COMMITS_PER_TURN = 4
MAX_RAY_CALLS_PER_TURN = 3
TURNS = 5


async def _turn(conn: ChatConnection, text: str, request_id: str | None) -> tuple[str, list[dict[str, Any]]]:
    """Send one message; return the next input request's id and every event up to it."""
    message: dict[str, Any] = {"type": "user.input.submit", "id": uuid.uuid4().hex, "text": text}
    if request_id:
        message["input_request_id"] = request_id
    await conn.send(message, wait_ack=False)
    seen = []
    while True:
        event = await conn.next_event(timeout=30)
        seen.append(event)
        if event["type"] == "chat.input_request":
            return str(event["data"]["request_id"]), seen


async def test_a_two_agent_turn_commits_and_calls_within_budget(runtime: Any, broker_for: Any) -> None:
    session = await broker_for("turn-cost").create_session("duo_turn")
    conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None)
    try:
        request_id, _ = await _turn(conn, "warm up", None)  # the run's start is not a steady turn
        actor = await directory().peek(session.chat_id)
        assert isinstance(actor, SessionHandle)
        before = await actor.status(session.chat_id)
        seqs: list[int] = []
        for index in range(TURNS):
            request_id, events = await _turn(conn, f"turn {index}", request_id)
            durable = [e for e in events if e["seq"] is not None]
            assert [e["agent"] for e in durable if e["type"] == "chat.text"] == ["user", "Planner", "Writer"]
            assert [e for e in durable if e["type"] == "chat.handoff"], "the turn went from one agent to the other"
            seqs += [e["seq"] for e in durable]
        after = await actor.status(session.chat_id)
    finally:
        await conn.close()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "every durable event reached the socket, in order"
    assert after.last_seq == seqs[-1]
    commits, calls = (after.commits - before.commits) / TURNS, (after.calls - before.calls) / TURNS
    print(f"per two-agent turn: {commits} commits, {calls} Ray calls")
    assert commits <= MAX_COMMITS_PER_TURN
    assert calls <= MAX_RAY_CALLS_PER_TURN
