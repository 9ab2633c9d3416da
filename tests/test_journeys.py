"""Packs on real Ray (tests/workflows/_pack): j_d needs a completed j_a, and the journey
j_a → [j_b, j_c] → j_d creates each step's chats when the step before it completed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from mozaiks.client import BrokerClient, BrokerError
from tests.conftest import APP_ID

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 30) -> T:
    async with asyncio.timeout(timeout):
        while (found := await probe()) is None:
            await asyncio.sleep(0.1)
        return found


async def chats_of(broker: BrokerClient) -> dict[str, dict[str, Any]]:
    """The user's newest chat of each workflow."""
    rows = (await broker.list_sessions(limit=100))["sessions"]
    return {row["workflow_name"]: row for row in reversed(rows)}


async def events_of(broker: BrokerClient, chat_id: str, type_: str) -> list[dict[str, Any]]:
    return [e for e in (await broker.events(chat_id))["events"] if e["type"] == type_]


async def journey_next(broker: BrokerClient, chat_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        found = await events_of(broker, chat_id, "chat.journey_next")
        return found[0]["data"] if found else None
    return await eventually(probe)


async def complete_first_step(broker: BrokerClient, context: dict[str, Any]) -> dict[str, str]:
    """Run j_a over the WebSocket; returns the chats its completion created, by workflow."""
    session = await broker.create_session("j_a", context=context)
    async with await broker.connect(session) as conn:
        complete = await conn.wait_for("chat.run_complete")
        assert complete["data"]["status"] == "completed"
        announced = (await conn.wait_for("chat.journey_next"))["data"]
    assert announced["journey_id"] == "j_journey" and announced["instance"] == session.chat_id
    assert announced["waiting_for"] == []
    return {n["workflow_name"]: n["chat_id"] for n in announced["next"]}


async def test_journey_runs_a_parallel_step_as_concurrent_actors_then_the_last_step(broker_for, runtime):
    broker = broker_for("journey-ok")
    with pytest.raises(BrokerError) as refused:
        await broker.create_session("j_d")
    assert (refused.value.status, refused.value.code) == (409, "prerequisites_not_met")
    assert refused.value.body["error"]["details"] == {"missing": ["j_a"]}

    parallel = await complete_first_step(broker, {"topic": "t"})
    assert set(parallel) == {"j_b", "j_c"}

    async def step_two_done() -> dict[str, dict[str, Any]] | None:
        rows = await chats_of(broker)
        return rows if "j_d" in rows and rows["j_d"]["status"] == "completed" else None
    rows = await eventually(step_two_done)
    assert rows["j_b"]["status"] == rows["j_c"]["status"] == "completed"

    # Two session actors, in two processes, whose runs overlapped: each `meet` tool returned only
    # once the other was running too.
    actors = [await runtime.directory.session(APP_ID, "journey-ok", parallel[w]) for w in ("j_b", "j_c")]
    assert len({await actor.pid() for actor in actors}) == 2
    met = [(await events_of(broker, parallel[w], "chat.tool_response"))[0]["data"]["result"] for w in ("j_b", "j_c")]
    assert all(m["met"] for m in met)
    starts = [(await events_of(broker, parallel[w], "chat.run_start"))[0]["timestamp"] for w in ("j_b", "j_c")]
    ends = [(await events_of(broker, parallel[w], "chat.run_complete"))[0]["timestamp"] for w in ("j_b", "j_c")]
    assert max(starts) < min(ends)

    # The first member to finish waits for the other; the last one creates j_d.
    announcements = [await journey_next(broker, parallel[w]) for w in ("j_b", "j_c")]
    first, last = sorted(announcements, key=lambda a: len(a["next"]))
    assert first["next"] == [] and first["waiting_for"] in (["j_b"], ["j_c"])
    assert last["waiting_for"] == [] and last["next"] == [{"workflow_name": "j_d", "chat_id": rows["j_d"]["chat_id"]}]
    assert rows["j_d"]["created_at"] >= max(ends)
    assert await journey_next(broker, rows["j_d"]["chat_id"]) == {
        "journey_id": "j_journey", "instance": last["instance"], "step": 2, "next": [], "waiting_for": []}

    allowed = await broker.create_session("j_d")
    assert allowed.status == "created"


async def test_a_failed_member_of_a_parallel_step_blocks_the_next_step(broker_for):
    broker = broker_for("journey-fail")
    parallel = await complete_first_step(broker, {"fail": True})

    async def both_ended() -> dict[str, dict[str, Any]] | None:
        rows = await chats_of(broker)
        return rows if {rows.get(w, {}).get("status") for w in ("j_b", "j_c")} <= {"completed", "failed"} else None
    rows = await eventually(both_ended)
    assert (rows["j_b"]["status"], rows["j_c"]["status"]) == ("failed", "completed")
    [error] = await events_of(broker, parallel["j_b"], "chat.error")
    assert error["data"]["code"] == "model_not_configured"

    assert await journey_next(broker, parallel["j_c"]) == {
        "journey_id": "j_journey", "instance": rows["j_a"]["chat_id"], "step": 1, "next": [],
        "waiting_for": ["j_b"]}
    assert await events_of(broker, parallel["j_b"], "chat.journey_next") == []
    assert "j_d" not in await chats_of(broker)


async def test_clients_cannot_claim_a_journey_step(broker_for):
    broker = broker_for("journey-forger")
    with pytest.raises(BrokerError) as refused:
        await broker.create_session("j_c", context={"journey": {"id": "j_journey", "instance": "x", "step": 1}})
    assert (refused.value.status, refused.value.code) == (422, "invalid_request")
