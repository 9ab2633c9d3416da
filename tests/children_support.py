"""Workflows for the child-chat tests, written into the runtime's workflows directory.

A parent `fo_parent_<mode>` (a Planner whose structured output names four children, a Reporter
that resumes with the merged result) and two child workflows: `fo_child_a` (one structured
answer) and `fo_child_b` (a structured answer, or — with `fail` in its context — a model that
is not configured, so its run fails). `fo_child_ask` asks its user first: it waits until someone
answers in that child chat, which lets a test hold the parent in `waiting_children`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from mozaiks.client import BrokerClient

T = TypeVar("T")

ASKING = [{"workflow": "fo_child_ask", "key": f"q{i}", "context": {"item": str(i)}} for i in range(4)]

# Two of each child workflow; items and votes make every merge mode's result distinct.
CHILDREN = [
    {"workflow": "fo_child_a", "key": "a1", "context": {"item": "1", "vote": "yes"}},
    {"workflow": "fo_child_b", "key": "b1", "context": {"item": "2", "vote": "no"}},
    {"workflow": "fo_child_a", "key": "a2", "context": {"item": "3", "vote": "yes"}},
    {"workflow": "fo_child_b", "key": "b2", "context": {"item": "4", "vote": "yes"}},
]


def _write(folder: Path, files: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body))


def _answer(by: str) -> dict[str, Any]:
    return {"structured": {"items": ["{context.context.item}"], "vote": "{context.context.vote}", "by": by}}


def write_children(root: Path) -> None:
    answer_schema = {"type": "object", "required": ["items", "vote"],
                     "properties": {"items": {"type": "array"}, "vote": {"type": "string"}, "by": {"type": "string"}}}
    _write(root / "fo_child_a", {
        "orchestrator.json": {"name": "fo_child_a", "startup_mode": "UserDriven", "initial_agent": "Drafter",
                              "human_in_the_loop": False},
        "agents.json": {"agents": [{"name": "Drafter", "structured_output": "Answer",
                                    "model": {"provider": "scripted", "script": [_answer("a")]}}]},
        "structured_outputs.json": {"models": {"Answer": answer_schema}},
    })
    _write(root / "fo_child_b", {
        "orchestrator.json": {"name": "fo_child_b", "startup_mode": "UserDriven", "initial_agent": "Reviewer",
                              "human_in_the_loop": False, "max_turns": 5},
        "agents.json": {"agents": [
            {"name": "Reviewer", "model": {"provider": "scripted", "script": [_answer("b")]}},
            {"name": "Broken", "description": "Has no model endpoint: its turn fails the run",
             "model": {"provider": "openai", "api_key_env": "MOZAIKS_TEST_UNSET_KEY"}}]},
        "handoffs.json": {"handoff_rules": [
            {"source_agent": "Reviewer", "target_agent": "Broken", "handoff_type": "condition",
             "condition_type": "expression", "condition": "${context.fail} == true"},
            {"source_agent": "Reviewer", "target_agent": "terminate", "handoff_type": "after_work"}]},
    })
    _write(root / "fo_child_ask", {
        "orchestrator.json": {"name": "fo_child_ask", "startup_mode": "UserDriven", "initial_agent": "Asker"},
        "agents.json": {"agents": [{"name": "Asker", "model": {"provider": "scripted", "script": [
            {"text": "Which colour for part {context.context.item}?"},
            {"structured": {"items": ["{context.context.item}:{last_user_message}"], "vote": "yes", "by": "Noted"}}]}}]},
        "context_variables.json": {"definitions": [{"name": "answered", "default": False, "source": {
            "type": "state", "triggers": [{"type": "agent_text", "agent": "Asker", "match": {"contains": "Noted"},
                                           "value": True}]}}]},
        "handoffs.json": {"handoff_rules": [
            {"source_agent": "Asker", "target_agent": "terminate", "handoff_type": "condition",
             "condition_type": "expression", "condition": "${answered} == true"}]},
    })

    _write(root / "fo_code", {
        "orchestrator.json": {"name": "fo_code", "startup_mode": "UserDriven", "initial_agent": "Worker",
                              "human_in_the_loop": False, "max_turns": 6},
        "agents.json": {"agents": [{"name": "Worker", "tools": ["split"], "model": {"provider": "scripted", "script": [
            {"tool_calls": [{"name": "split", "arguments": {"parts": 3}}]},
            {"text": "Parts: {context.parts}"}]}}]},
        "handoffs.json": {"handoff_rules": [
            {"source_agent": "Worker", "target_agent": "terminate", "handoff_type": "after_work"}]},
        "tools.json": {"tools": [{"name": "split", "description": "Split the work into child chats",
                                  "file": "split.py", "agents": ["Worker"]}]},
    })
    (root / "fo_code" / "tools" / "split.py").parent.mkdir(exist_ok=True)
    (root / "fo_code" / "tools" / "split.py").write_text(
        "from workflows.tool_context import ToolContext\n\n\n"
        "def split(parts: int, ctx: ToolContext) -> str:\n"
        "    ctx.start_children([{'workflow': 'fo_child_a', 'key': f'p{i}', 'context': {'item': str(i), 'vote': 'yes'}}\n"
        "                        for i in range(parts)], merge_mode='deep_merge', inject_as='parts')\n"
        "    return f'{parts} parts started'\n")


def write_generator_child(root: Path) -> None:
    """``fo_child_gen``: a child whose tool asks for the ``generator`` resource and says where it ran."""
    _write(root / "fo_child_gen", {
        "orchestrator.json": {"name": "fo_child_gen", "startup_mode": "UserDriven", "initial_agent": "Builder",
                              "human_in_the_loop": False, "max_turns": 4},
        "agents.json": {"agents": [{"name": "Builder", "tools": ["where"], "model": {"provider": "scripted", "script": [
            {"tool_calls": [{"name": "where", "arguments": {}}]},
            {"text": "built on {context.tool_node}"}]}}]},
        "handoffs.json": {"handoff_rules": [
            {"source_agent": "Builder", "target_agent": "terminate", "handoff_type": "after_work"}]},
        "tools.json": {"tools": [{"name": "where", "description": "Say which node this ran on", "file": "where.py",
                                  "agents": ["Builder"], "execution": {"num_cpus": 0.1, "resources": {"generator": 1}}}]},
    })
    (root / "fo_child_gen" / "tools").mkdir(exist_ok=True)
    (root / "fo_child_gen" / "tools" / "where.py").write_text(
        "import ray\n\nfrom workflows.tool_context import ToolContext\n\n\n"
        "def where(ctx: ToolContext) -> str:\n"
        "    node = ray.get_runtime_context().get_node_id()\n"
        "    ctx.set_context('tool_node', node)\n"
        "    return node\n")


def v3_graph(fan_in: dict[str, Any], fan_out: dict[str, Any] | None = None) -> dict[str, Any]:
    """The MozaiksAI v3 spelling, as WritersRoom/_pack/workflow_graph.json has it."""
    return {"version": 3, "mid_flight_journeys": [{
        "id": "split_work", "trigger_agent": "Planner",
        "fan_out": {"spawn_mode": "workflow", **(fan_out or {})},
        "fan_in": {"resume_agent": "Reporter", **fan_in}}]}


def write_parent(root: Path, name: str, children: list[dict[str, Any]], fan_in: dict[str, Any],
                 fan_out: dict[str, Any] | None = None, *, graph: dict[str, Any] | None = None,
                 output: dict[str, Any] | None = None) -> str:
    """A parent workflow whose Planner fans out to ``children`` (or names them in ``output``, its
    structured output), declared by ``graph`` (default: v3 with ``fan_in`` and ``fan_out``);
    returns its name."""
    _write(root / name, {
        "orchestrator.json": {"name": name, "startup_mode": "UserDriven", "initial_agent": "Planner",
                              "human_in_the_loop": False, "max_turns": 10},
        "agents.json": {"agents": [
            {"name": "Planner", "structured_output": "Split",
             "model": {"provider": "scripted", "script": [{"structured": output or {"children": children}}]}},
            {"name": "Reporter", "model": {"provider": "scripted", "script": [
                {"text": "Merged: {context.%s}" % fan_in.get("inject_as", "child_results")}]}}]},
        "handoffs.json": {"handoff_rules": [
            {"source_agent": "Reporter", "target_agent": "terminate", "handoff_type": "after_work"}]},
        "structured_outputs.json": {"models": {"Split": {"type": "object", "required": list(output or ["children"])}}},
        "_pack/workflow_graph.json": graph or v3_graph(fan_in, fan_out),
    })
    return name


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 60) -> T:
    async with asyncio.timeout(timeout):
        while (found := await probe()) is None:
            await asyncio.sleep(0.1)
        return found


async def events_of(broker: BrokerClient, chat_id: str, type_: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (await broker.events(chat_id, after_seq=after))["events"]
        found += page
        if len(page) < 200:
            break
        after = page[-1]["seq"]
    return [e for e in found if type_ is None or e["type"] == type_]


async def run_parent(broker: BrokerClient, workflow: str) -> tuple[str, list[dict[str, Any]]]:
    """Start a parent chat with one message; returns its id and every event its client saw up to
    the run's end."""
    session = await broker.create_session(workflow)
    seen: list[dict[str, Any]] = []
    async with await broker.connect(session) as conn:
        await conn.say("split the work")
        async for event in conn.events(timeout=90):
            seen.append(event)
            if event["type"] == "chat.run_complete":
                break
    return session.chat_id, seen


def data(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == type_]


def merged_value(events: list[dict[str, Any]], inject_as: str = "child_results") -> Any:
    [value] = [d["value"] for d in data(events, "context_update") if d["variable"] == inject_as]
    return value


async def sessions(broker: BrokerClient) -> dict[str, dict[str, Any]]:
    return {r["chat_id"]: r for r in (await broker.list_sessions(limit=100))["sessions"]}


async def fan_out_to_askers(broker: BrokerClient, parent: str, count: int = 4) -> tuple[str, list[str]]:
    """Start ``parent`` and wait until its ``count`` children are started and each asks its user."""
    session = await broker.create_session(parent)
    async with await broker.connect(session) as conn:
        await conn.say("split the work")

    async def probe() -> list[str] | None:
        started = [e["data"]["child_chat_id"] for e in await events_of(broker, session.chat_id, "chat.child_started")]
        asked = [await events_of(broker, c, "chat.input_request") for c in started]
        return started if len(started) == count and all(asked) else None
    return session.chat_id, await eventually(probe)


async def run_ended(broker: BrokerClient, chat_id: str) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        found = await events_of(broker, chat_id)
        return found if data(found, "chat.run_complete") else None
    return await eventually(probe)


async def reactivated(directory: Any, chat_id: str, old_pid: int, timeout: float = 60) -> int:
    """The pid of the chat's session once the directory re-activated it in another process."""
    async def probe() -> int | None:
        handle = await directory.peek(chat_id)
        try:
            pid = await handle.pid() if handle is not None else None
        except Exception:  # the dead handle, until the directory notices
            return None
        return pid if pid is not None and pid != old_pid else None
    return await eventually(probe, timeout)
