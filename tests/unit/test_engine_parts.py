"""The engine's parts, without Ray: run steps, the tool phase with a fake tool runner, wait
timers, context triggers, usage accounting — and one whole chat driven by SessionEngine on a
real SQLite store, its tool answered by a coroutine instead of a Ray task."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from actors import tool_phase, waits
from actors.engine import SessionEngine
from actors.event_hub import EventHub
from actors.run_steps import RunSteps
from actors.snapshot import PendingInput, PendingTools, PendingUi, RunUsage, SessionSnapshot
from actors.tool_tasks import ToolOutcome
from actors.triggers import ContextTriggers, matches
from actors.usage import UsageMeter
from mozaiks.protocol.events import EVENT_MODELS, Ack, ContextUpdate, ToolResponse, UiToolDismiss, utc_now_iso
from mozaiks.providers.base import ModelReply, ToolCallRequest
from mozaiks.providers.registry import ProviderRegistry
from mozaiks.settings import Settings
from mozaiks.store.base import ChatRecord, DuplicateMessageError
from mozaiks.store.sqlite import SQLiteStore
from workflows.loader import load_workflow
from workflows.model import ToolSpec, Workflow

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "workflows" / "examples" / "hello"
WAITS = REPO / "tests" / "workflows" / "waits"


def chat_record(workflow: str = "hello") -> ChatRecord:
    now = utc_now_iso()
    return ChatRecord(chat_id="c1", app_id="app", user_id="u", workflow_name=workflow, created_at=now, updated_at=now)


# ---------------------------------------------------------------- run steps
def test_entering_a_step_clears_the_waits_it_leaves_behind() -> None:
    state = SessionSnapshot()
    steps = RunSteps(state)
    run_id = steps.start_run("Greeter")
    assert (state.step, state.agent, state.runs_started, state.run_turns) == ("agent", "Greeter", 1, 0)
    assert run_id == state.run_id and run_id.startswith("run_")
    steps.count_turn("Greeter")
    assert state.consecutive == {"Greeter": 1} and state.call_index == {"Greeter": 1}
    steps.enter("input", input_=PendingInput(request_id="r", agent="Greeter", prompt="?", resume_agent="Greeter"))
    assert state.pending_input is not None and state.consecutive == {"Greeter": 1}
    steps.enter("agent", agent="Farewell")  # a new speaker starts with fresh turn counts
    assert state.pending_input is None and state.agent == "Farewell" and state.consecutive == {}
    steps.enter("tools", tools=PendingTools(agent="Farewell", calls=[]))
    state.cancel_after_turn = True
    steps.enter("idle")
    assert state.pending_tools is None and not state.cancel_after_turn and not steps.busy


def test_turn_limits() -> None:
    state = SessionSnapshot(run_turns=3, consecutive={"A": 2})
    steps = RunSteps(state)
    assert steps.turn_limit_reached(3) and not steps.turn_limit_reached(4)
    assert steps.consecutive_limit_reached("A", 2) and not steps.consecutive_limit_reached("A", None)
    assert steps.first_agent("First") == "First"  # no run yet: the workflow's first agent


# ---------------------------------------------------------------- tool phase
def spec(name: str, **extra: Any) -> ToolSpec:
    return ToolSpec.model_validate({"name": name, "description": name, "agents": ["A"], "file": f"{name}.py",
                                    **extra})


def test_plan_rejects_unknown_and_invalid_calls_and_holds_back_the_ui_tool() -> None:
    specs = {"count": spec("count", parameters={"type": "object", "properties": {"n": {"type": "integer"}},
                                                "required": ["n"]}),
             "board": spec("board", kind="ui_tool", ui={"component": "Board", "display": "inline"})}
    calls = [ToolCallRequest(id="1", name="count", arguments={"n": 2}),
             ToolCallRequest(id="2", name="count", arguments={"n": "x"}),
             ToolCallRequest(id="3", name="nope", arguments={}),
             ToolCallRequest(id="4", name="board", arguments={}),
             ToolCallRequest(id="5", name="board", arguments={})]
    plan = tool_phase.plan_tools("A", "m1", calls, specs)
    assert [c.id for c in plan.runnable] == ["1"]
    assert plan.ui_call is not None and plan.ui_call.id == "4"
    assert [e.call_id for _, e in plan.announced] == ["1", "2", "3", "5"]
    errors = {e.call_id: e.error for _, e in plan.rejected}
    assert errors["2"].startswith("invalid arguments") and "unknown tool" in errors["3"]
    assert errors["5"] == "only one UI tool can be open at a time"


def test_a_restart_mid_tools_never_reruns_a_tool_that_is_not_idempotent() -> None:
    specs = {"safe": spec("safe", execution={"idempotent": True}),
             "once": spec("once", execution={"idempotent": False})}
    calls = [ToolCallRequest(id="1", name="safe"), ToolCallRequest(id="2", name="once")]
    safe, answers = tool_phase.resumable("A", calls, specs)
    assert [c.id for c in safe] == ["1"]
    (agent, answer), = answers
    assert isinstance(answer, ToolResponse) and (answer.call_id, answer.error) == ("2", tool_phase.NOT_IDEMPOTENT)


async def test_tools_run_concurrently_and_each_answer_is_committed_as_it_arrives() -> None:
    started: list[str] = []
    release = asyncio.Event()

    async def runner(s: ToolSpec, call: ToolCallRequest, ui_response: Any) -> ToolOutcome:
        started.append(call.id)
        if call.id == "slow":
            await release.wait()
        return ToolOutcome(status="ok", result=call.id, started_at=1.0, ended_at=1.5)

    committed: list[list[Any]] = []

    async def commit(events: list[Any]) -> None:
        committed.append(events)
        release.set()  # the slow tool finishes only after the fast one's answer is durable

    calls = [ToolCallRequest(id="slow", name="t"), ToolCallRequest(id="fast", name="t")]
    pending = PendingTools(agent="A", calls=calls)
    await tool_phase.run_tools(pending, calls, {"t": spec("t")}, runner,
                               lambda call, outcome: [(None, ContextUpdate(variable=call.id, value=1))],
                               commit)
    assert sorted(started) == ["fast", "slow"]
    assert [batch[0][1].call_id for batch in committed] == ["fast", "slow"]
    assert committed[0][0][1].duration_ms == 500 and isinstance(committed[0][1][1], ContextUpdate)


def test_a_ui_answer_closes_the_component_the_way_it_was_shown() -> None:
    pending = PendingUi(call_id="c", name="board", agent="A", component="Board", display="artifact")
    response, closed = tool_phase.ui_answer(pending, "ok", {"x": 1}, None)
    assert response[1].dump()["result"] == {"x": 1} and closed == ("A", UiToolDismiss(call_id="c"))


# ---------------------------------------------------------------- waits
def test_wait_deadlines_and_the_view_a_reattaching_client_gets() -> None:
    assert waits.deadline_at(None) is None and waits.deadline_at(5, now=100.0) == 105.0
    assert waits.due(105.0, 105.0) and not waits.due(105.0, 104.9) and not waits.due(None, 1e12)
    state = SessionSnapshot(pending_input=PendingInput(request_id="r", agent="A", prompt="Name?",
                                                       timeout_at=110.0, resume_agent="A"))
    assert waits.open_deadline(state) == 110.0
    assert waits.pending_view(state, now=100.0) == {"kind": "input_request", "request_id": "r", "agent": "A",
                                                    "prompt": "Name?", "timeout_s": 10.0}
    assert waits.pending_view(SessionSnapshot()) is None


async def test_the_wait_timer_fires_once_and_rearming_replaces_it() -> None:
    fired: list[float] = []
    done = asyncio.Event()

    async def on_due() -> None:
        fired.append(time.time())
        done.set()

    timer = waits.WaitTimer(on_due)
    timer.arm(time.time() + 30)  # replaced below: must never fire
    timer.arm(time.time() + 0.02)
    await asyncio.wait_for(done.wait(), 2)
    timer.cancel()
    assert len(fired) == 1 and not timer.armed


# ---------------------------------------------------------------- triggers
def test_triggers_set_context_from_agent_text_and_ui_responses() -> None:
    workflow = load_workflow(WAITS)
    context: dict[str, Any] = {}
    triggers = ContextTriggers(workflow, context)
    events = triggers.on_ui_response("approve_plan", {"decision": "yes"})
    assert events == [(None, ContextUpdate(variable="decision", value="yes"))]
    assert context == {"decision": "yes"} and triggers.on_ui_response("other", {}) == []
    assert triggers.initial(chat_record("waits"))["chat_id"] == "c1"
    assert matches({"equals": "ok"}, " ok ") and matches({"regex": "^a+$"}, "aaa")
    assert not matches({"contains": "x"}, "abc") and not matches(None, "abc")


# ---------------------------------------------------------------- usage
def test_usage_is_summed_per_agent_and_model_and_billed_per_call() -> None:
    meter, run = UsageMeter(chat_record()), RunUsage()
    for agent, prompt in (("A", 10), ("B", 5), ("A", 1)):
        reply = ModelReply(text="hi", model="m")
        reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens = prompt, 2, prompt + 2
        event, row = meter.record(run, agent, reply)
    assert event[1].dump()["prompt_tokens"] == 1 and row.total_tokens == 3 and row.chat_id == "c1"
    assert run.totals() == {"prompt_tokens": 16, "completion_tokens": 6, "total_tokens": 22}
    assert run.by_agent["A"]["total_tokens"] == 15 and run.by_model["m"]["total_tokens"] == 22


# ---------------------------------------------------------------- the whole loop
@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(mode="local", data_dir=tmp_path, workflows_dir=REPO / "workflows" / "examples")


async def open_engine(store: SQLiteStore, settings: Settings, workflow: Workflow) -> tuple[SessionEngine, EventHub]:
    chat, _ = await store.create_chat(chat_record(workflow.name))
    epoch = await store.claim(chat.app_id, chat.user_id, chat.chat_id)
    hub = EventHub()
    engine = SessionEngine(settings, store, workflow, chat, epoch, hub, ProviderRegistry(settings), None)

    async def greet(s: ToolSpec, call: ToolCallRequest, ui_response: Any) -> ToolOutcome:
        name = call.arguments["name"]
        return ToolOutcome(status="ok", result={"greeting": f"Hi {name}!"},
                           context_changes={"user_name": name, "greeting": f"Hi {name}!"})

    engine.tools.runner = greet
    await engine.load()
    await engine.resume()
    return engine, hub


async def wait_for_step(engine: SessionEngine, step: str) -> None:
    while engine.steps.step != step or not engine.settled():
        await asyncio.sleep(0.005)


async def test_hello_runs_end_to_end_without_ray(sqlite_store: SQLiteStore, settings: Settings) -> None:
    engine, hub = await open_engine(sqlite_store, settings, load_workflow(HELLO))
    await engine.on_attach()
    await asyncio.wait_for(wait_for_step(engine, "input"), 5)
    ack = await engine.submit_text("m1", "Ada", None)
    assert ack == Ack(id="m1", status="accepted", reason=None)
    await asyncio.wait_for(wait_for_step(engine, "idle"), 5)
    stored = await sqlite_store.read_events("app", "u", "c1")
    types = [e.type for e in stored]
    assert types[0] == "chat.run_start" and types[-1] == "chat.run_complete"
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    texts = [e.data["content"] for e in stored if e.type == "chat.text"]
    assert texts[-2:] == ["Hi Ada! I'll hand you to my colleague now.", "Goodbye, Ada! Come back soon."]
    assert stored[-1].data["status"] == "completed" and engine.status == "completed"
    published, _, _ = hub.read(0)
    durable = [json.loads(payload) for seq, payload in published if seq is not None]
    assert [d["seq"] for d in durable] == [e.seq for e in stored]  # persisted first, then published
    for message in [json.loads(payload) for _, payload in published]:  # every event fits its model
        model = EVENT_MODELS[message["type"]]
        assert model.DURABLE == (message["seq"] is not None)
        assert model.model_validate(message["data"]).dump() == message["data"]
    await engine.stop()


async def test_a_resent_message_changes_nothing(sqlite_store: SQLiteStore, settings: Settings) -> None:
    """A client that lost an ack resends the message with the same id: it must neither answer an
    open question (a rejected id is recorded too) nor be queued for a second run."""
    engine, _ = await open_engine(sqlite_store, settings, load_workflow(HELLO))
    await engine.on_attach()
    await asyncio.wait_for(wait_for_step(engine, "input"), 5)
    assert (await engine.submit_text("m0", "Ada", "req-unknown")).status == "rejected"
    with pytest.raises(DuplicateMessageError):
        await engine.submit_text("m0", "Ada", None)
    assert engine.steps.step == "input" and engine.state.pending_input is not None  # still asked
    assert (await engine.submit_text("m1", "Ada", None)).status == "accepted"
    with pytest.raises(DuplicateMessageError):  # resent while the run it started goes on
        await engine.submit_text("m1", "Ada", None)
    assert engine.state.queue == []
    await asyncio.wait_for(wait_for_step(engine, "idle"), 5)
    stored = await sqlite_store.read_events("app", "u", "c1")
    assert [e.type for e in stored].count("chat.run_start") == 1 and engine.state.runs_started == 1
    assert [e.data["content"] for e in stored if e.type == "chat.text" and e.agent == "user"] == ["Ada"]
    await engine.stop()


async def test_an_unanswered_input_request_times_out_by_its_policy(sqlite_store: SQLiteStore,
                                                                   settings: Settings) -> None:
    workflow = load_workflow(HELLO)
    workflow.orchestrator.input_timeout_s = 0.05
    workflow.orchestrator.on_input_timeout = "complete"
    engine, _ = await open_engine(sqlite_store, settings, workflow)
    await engine.on_attach()
    await asyncio.wait_for(wait_for_step(engine, "input"), 5)
    await asyncio.wait_for(wait_for_step(engine, "idle"), 5)
    stored = await sqlite_store.read_events("app", "u", "c1")
    assert [e.type for e in stored][-3:] == ["chat.input_timeout", "chat.usage_summary", "chat.run_complete"]
    assert stored[-1].data["status"] == "completed"
