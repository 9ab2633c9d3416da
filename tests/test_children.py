"""Fan-out / fan-in on the session's real Ray: a parent chat's trigger agent names child chats, each
runs in its own session actor, and the parent resumes at its resume_agent with the merged result."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from mozaiks.client import BrokerError
from tests.children_support import (
    ASKING, CHILDREN, data, eventually, events_of, fan_out_to_askers, merged_value, reactivated, run_ended, run_parent,
    sessions, write_children, write_parent,
)
from tests.conftest import APP_ID


@pytest.fixture(scope="module", autouse=True)
def child_workflows(workflows_dir: Path) -> None:
    write_children(workflows_dir)


def answer(by: str, item: str, vote: str) -> dict[str, Any]:
    return {"items": [item], "vote": vote, "by": by}


async def test_four_children_of_two_workflows_run_as_chats_of_their_own_and_the_parent_resumes(
        broker_for, workflows_dir):
    parent = write_parent(workflows_dir, "fo_parent_structured", CHILDREN,
                          {"merge_mode": "structured", "output_contract": {"required": ["items", "vote"]}})
    broker = broker_for("fo-alice")
    chat_id, seen = await run_parent(broker, parent)

    assert data(seen, "chat.run_complete")[-1]["status"] == "completed"
    started = data(seen, "chat.child_started")
    assert [(s["index"], s["total"], s["journey"]) for s in started] == [(i, 4, "split_work") for i in range(4)]
    assert [s["workflow_name"] for s in started] == [c["workflow"] for c in CHILDREN]
    children = [s["child_chat_id"] for s in started]
    assert len(set(children)) == 4 and chat_id not in children
    completed = data(seen, "chat.child_completed")
    assert sorted(c["child_chat_id"] for c in completed) == sorted(children)
    assert {c["status"] for c in completed} == {"completed"}
    [merged] = data(seen, "chat.children_merged")
    assert merged["merge_mode"] == "structured" and merged["resume_agent"] == "Reporter"
    assert (merged["completed"], merged["failed"], merged["inject_as"]) == (4, 0, "child_results")
    expected = {"a1": answer("a", "1", "yes"), "b1": answer("b", "2", "no"),
                "a2": answer("a", "3", "yes"), "b2": answer("b", "4", "yes")}
    assert merged_value(seen) == expected
    # The parent went on at resume_agent, which saw the merged result in its context.
    [report] = [t for t in data(seen, "chat.text") if t["agent"] == "Reporter"]
    assert json.loads(report["content"].removeprefix("Merged: ")) == expected
    # The children's usage is theirs, and rolled up into the parent's run.
    child_usage = merged["usage"]["total_tokens"]
    assert child_usage > 0
    [summary] = data(seen, "chat.usage_summary")
    assert summary["by_agent"]["children:split_work"]["total_tokens"] == child_usage

    # Each child is a chat of the same user, with its own log, that ran once.
    rows = await sessions(broker)
    for child, request in zip(children, CHILDREN, strict=True):
        assert rows[child]["workflow_name"] == request["workflow"] and rows[child]["status"] == "completed"
        assert len(await events_of(broker, child, "chat.run_start")) == 1
    intruder = broker_for("fo-mallory")
    assert not set(await sessions(intruder)) & set(children)
    for child in children:
        with pytest.raises(BrokerError) as refused:
            await intruder.events(child)
        assert refused.value.status == 404


MAJORITY = [
    {"workflow": "fo_child_a", "key": "a1", "context": {"item": "x", "vote": "yes"}},
    {"workflow": "fo_child_b", "key": "b1", "context": {"item": "y", "vote": "no"}},
    {"workflow": "fo_child_a", "key": "a2", "context": {"item": "x", "vote": "yes"}},
    {"workflow": "fo_child_a", "key": "a3", "context": {"item": "x", "vote": "yes"}},
]
RESULTS = [answer("a", "1", "yes"), answer("b", "2", "no"), answer("a", "3", "yes"), answer("b", "4", "yes")]


def check_collect_all(value: Any) -> None:
    assert sorted((o["key"], o["status"], json.dumps(o["result"], sort_keys=True)) for o in value) == sorted(
        (c["key"], "completed", json.dumps(r, sort_keys=True)) for c, r in zip(CHILDREN, RESULTS, strict=True))


def check_concatenate(value: Any) -> None:
    assert sorted(value.split("\n\n")) == sorted(json.dumps(r, sort_keys=True) for r in RESULTS)


def check_deep_merge(value: Any) -> None:
    assert sorted(value["items"]) == ["1", "2", "3", "4"] and value["by"] in ("a", "b")


def check_first_success(value: Any) -> None:
    assert value in RESULTS


def check_majority_vote(value: Any) -> None:
    assert value == {"value": answer("a", "x", "yes"), "votes": 3, "of": 4}


@pytest.mark.parametrize(("mode", "children", "check"), [
    ("collect_all", CHILDREN, check_collect_all),
    ("concatenate", CHILDREN, check_concatenate),
    ("deep_merge", CHILDREN, check_deep_merge),
    ("first_success", CHILDREN, check_first_success),
    ("majority_vote", MAJORITY, check_majority_vote),
])
async def test_each_merge_mode_resumes_the_parent_with_its_merge(broker_for, workflows_dir, mode, children, check):
    parent = write_parent(workflows_dir, f"fo_parent_{mode}", children, {"merge_mode": mode, "inject_as": "merged"})
    _, seen = await run_parent(broker_for(f"fo-{mode}"), parent)
    assert data(seen, "chat.run_complete")[-1]["status"] == "completed"
    assert data(seen, "chat.children_merged")[0]["merge_mode"] == mode
    check(merged_value(seen, "merged"))
    assert [t["agent"] for t in data(seen, "chat.text") if t["role"] == "assistant"][-1] == "Reporter"


def with_failure(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    failing = dict(children[3])
    failing["context"] = {**failing["context"], "fail": True}
    return [*children[:3], failing]


async def test_a_structured_merge_refuses_results_outside_the_output_contract(broker_for, workflows_dir):
    parent = write_parent(workflows_dir, "fo_parent_contract", CHILDREN,
                          {"merge_mode": "structured", "output_contract": {"required": ["chapter"]}})
    _, seen = await run_parent(broker_for("fo-contract"), parent)
    assert data(seen, "chat.run_complete")[-1]["status"] == "failed"
    [error] = data(seen, "chat.error")
    assert error["code"] == "merge_failed" and "missing chapter" in error["message"]


def check_resumed_with_available(seen: list[dict[str, Any]]) -> None:
    assert data(seen, "chat.run_complete")[-1]["status"] == "completed"
    [merged] = data(seen, "chat.children_merged")
    assert (merged["completed"], merged["failed"]) == (3, 1)
    statuses = {o["key"]: o["status"] for o in merged_value(seen)}
    assert statuses == {"a1": "completed", "b1": "completed", "a2": "completed", "b2": "failed"}


def check_failed_all(seen: list[dict[str, Any]]) -> None:
    assert data(seen, "chat.run_complete")[-1]["status"] == "failed"
    [error] = data(seen, "chat.error")
    assert error["code"] == "children_failed" and error["message"] == "1 of 4 child chats did not complete"
    assert not data(seen, "chat.children_merged")


@pytest.mark.parametrize(("policy", "check"), [
    ("resume_with_available", check_resumed_with_available), ("fail_all", check_failed_all)])
async def test_a_failed_child_is_handled_per_on_partial_failure(broker_for, workflows_dir, policy, check):
    parent = write_parent(workflows_dir, f"fo_parent_{policy}", with_failure(CHILDREN),
                          {"merge_mode": "collect_all", "on_partial_failure": policy})
    _, seen = await run_parent(broker_for(f"fo-{policy}"), parent)
    assert sorted(c["status"] for c in data(seen, "chat.child_completed")) == ["completed"] * 3 + ["failed"]
    check(seen)


async def test_prompt_user_asks_before_resuming_with_the_rest(broker_for, workflows_dir):
    parent = write_parent(workflows_dir, "fo_parent_prompt", with_failure(CHILDREN),
                          {"merge_mode": "collect_all", "on_partial_failure": "prompt_user"})
    broker = broker_for("fo-prompt")
    session = await broker.create_session(parent)
    async with await broker.connect(session) as conn:
        await conn.say("split the work")
        request = (await conn.wait_for("chat.input_request", timeout=90))["data"]
        assert request["prompt"].startswith("1 of 4 child chats did not complete")
        assert (await conn.say("go on", input_request_id=request["request_id"]))["status"] == "accepted"
        complete = await conn.wait_for("chat.run_complete", timeout=60)
    assert complete["data"]["status"] == "completed"
    texts = await events_of(broker, session.chat_id, "chat.text")
    assert texts[-1]["agent"] == "Reporter"


async def test_the_timeout_ends_the_children_still_running(broker_for, workflows_dir):
    parent = write_parent(workflows_dir, "fo_parent_timeout", [*CHILDREN[:2], *ASKING[:2]],
                          {"merge_mode": "collect_all"}, {"timeout_seconds": 4})
    broker = broker_for("fo-timeout")
    _, seen = await run_parent(broker, parent)
    assert data(seen, "chat.run_complete")[-1]["status"] == "completed"
    [merged] = data(seen, "chat.children_merged")
    assert (merged["completed"], merged["failed"]) == (2, 2)
    ended = {c["child_chat_id"]: c["status"] for c in data(seen, "chat.child_completed")}
    assert sorted(ended.values()) == ["completed", "completed", "timed_out", "timed_out"]
    rows = await sessions(broker)
    # The children that timed out were cancelled: nothing of them runs on.
    assert {rows[c]["status"] for c, s in ended.items() if s == "timed_out"} == {"cancelled"}


async def test_cancelling_the_parent_cancels_its_children(broker_for, workflows_dir):
    parent = write_parent(workflows_dir, "fo_parent_cancel", ASKING, {"merge_mode": "collect_all"})
    broker = broker_for("fo-cancel")
    chat_id, children = await fan_out_to_askers(broker, parent)
    assert (await sessions(broker))[chat_id]["phase"] == "waiting_children"
    await broker.cancel(chat_id)
    seen = await run_ended(broker, chat_id)
    assert data(seen, "chat.run_complete")[-1]["status"] == "cancelled"
    ended = data(seen, "chat.child_completed")
    assert sorted(c["child_chat_id"] for c in ended) == sorted(children) and {c["status"] for c in ended} == {"cancelled"}

    async def all_cancelled() -> bool | None:
        rows = await sessions(broker)
        return True if {rows[c]["status"] for c in children} == {"cancelled"} else None
    await eventually(all_cancelled)


async def test_a_sigkilled_parent_resumes_its_wait_and_starts_no_child_twice(broker_for, workflows_dir, runtime):
    parent = write_parent(workflows_dir, "fo_parent_sigkill", ASKING, {"merge_mode": "collect_all"})
    broker = broker_for("fo-sigkill")
    chat_id, children = await fan_out_to_askers(broker, parent)
    # Four children waiting at once, each in a session actor of its own.
    residents = [await runtime.directory.session(APP_ID, "fo-sigkill", c) for c in children]
    assert len({await s.pid() for s in residents}) == 4
    old = await runtime.directory.session(APP_ID, "fo-sigkill", chat_id)
    old_pid = await old.pid()
    os.kill(old_pid, signal.SIGKILL)
    await reactivated(runtime.directory, chat_id, old_pid)

    # The user answers every child, opened through the broker like any chat of theirs.
    for child in children:
        opened = await broker.create_session("fo_child_ask", chat_id=child)
        async with await broker.connect(opened) as conn:
            request = await conn.wait_for("chat.input_request")
            ack = await conn.say("blue", input_request_id=request["data"]["request_id"])
            assert ack["status"] == "accepted"
            assert (await conn.wait_for("chat.run_complete"))["data"]["status"] == "completed"

    seen = await run_ended(broker, chat_id)
    assert data(seen, "chat.run_complete")[-1]["status"] == "completed"
    assert sorted(o["result"]["items"][0] for o in merged_value(seen)) == [f"{i}:blue" for i in range(4)]
    # No child started twice: four announcements, and each child chat has one seed and one run.
    assert len(data(seen, "chat.child_started")) == 4 and len(data(seen, "chat.child_completed")) == 4
    for child in children:
        log = await events_of(broker, child)
        assert len(data(log, "chat.run_start")) == 1
        assert len([t for t in data(log, "chat.text") if t["role"] == "user"]) == 2  # the seed and "blue"


async def test_clients_cannot_claim_to_be_a_child(broker_for):
    with pytest.raises(BrokerError) as refused:
        await broker_for("fo-forger").create_session(
            "fo_child_a", context={"fanout_parent": {"chat_id": "x", "fanout_id": "y", "index": 0}})
    assert (refused.value.status, refused.value.code) == (422, "invalid_request")


async def test_a_tool_fans_out_through_its_tool_context(broker_for):
    _, seen = await run_parent(broker_for("fo-code"), "fo_code")
    assert data(seen, "chat.run_complete")[-1]["status"] == "completed"
    assert [s["workflow_name"] for s in data(seen, "chat.child_started")] == ["fo_child_a"] * 3
    [merged] = data(seen, "chat.children_merged")
    assert (merged["merge_mode"], merged["resume_agent"], merged["completed"]) == ("deep_merge", "Worker", 3)
    assert sorted(merged_value(seen, "parts")["items"]) == ["0", "1", "2"]
    # The agent that called the tool goes on, with the merged result in its context.
    last = [t for t in data(seen, "chat.text") if t["role"] == "assistant"][-1]
    assert last["agent"] == "Worker" and json.loads(last["content"].removeprefix("Parts: "))["by"] == "a"


# The MozaiksAI spellings of a fan-out, each run end to end: the v2 flat `journeys` list, its
# legacy name `nested_chats`, and a trigger agent answering with a `PatternSelection` payload.
FLAT = {"trigger_agent": "Planner", "spawn_mode": "workflow", "resume_agent": "Reporter",
        "aggregation_strategy": "structured", "expected_output_keys": ["items", "vote"],
        "child_context_seed": {"item": "seeded", "vote": "yes"}}
SELECTION = {"PatternSelection": {"is_multi_workflow": True, "workflows": [
    {"name": "fo_child_a", "description": "Draft it"}, {"name": "fo_child_b", "initial_message": "Review it"}]}}


@pytest.mark.parametrize("spelling, graph", [
    ("v2", {"journeys": [FLAT]}),
    ("nested_chats", {"nested_chats": [FLAT]}),
    ("pattern_selection", {"version": 3, "mid_flight_journeys": [{
        "id": "pick", "trigger_agent": "Planner",
        "fan_out": {"child_context_seed": {"item": "seeded", "vote": "yes"}},
        "fan_in": {"resume_agent": "Reporter", "merge_mode": "structured",
                   "output_contract": {"required": ["items", "vote"]}}}]}),
])
async def test_each_mozaiksai_spelling_fans_out_and_resumes(broker_for, workflows_dir, spelling, graph):
    parent = write_parent(workflows_dir, f"fo_parent_{spelling}", [], {}, graph=graph, output=SELECTION
                          if spelling == "pattern_selection" else {"children": ["fo_child_a", "fo_child_b"]})
    broker = broker_for(f"fo-{spelling}")
    _, seen = await run_parent(broker, parent)
    assert data(seen, "chat.run_complete")[-1]["status"] == "completed"
    assert [s["workflow_name"] for s in data(seen, "chat.child_started")] == ["fo_child_a", "fo_child_b"]
    [merged] = data(seen, "chat.children_merged")
    assert (merged["merge_mode"], merged["resume_agent"], merged["completed"]) == ("structured", "Reporter", 2)
    # Each child got the journey's child_context_seed (and, from PatternSelection, its own message).
    expected = {"0": answer("a", "seeded", "yes"), "1": answer("b", "seeded", "yes")}
    assert merged_value(seen) == expected
    [report] = [t for t in data(seen, "chat.text") if t["agent"] == "Reporter"]
    assert json.loads(report["content"].removeprefix("Merged: ")) == expected
