"""Lifecycle tools at their points, without Ray: a small host and a coroutine as the tool runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.commits import EventSpec
from actors.lifecycle_hooks import LifecycleHooks
from actors.snapshot import SessionSnapshot
from actors.tool_tasks import ToolOutcome
from actors.triggers import ContextTriggers
from mozaiks.protocol.events import ToolCall, ToolResponse
from mozaiks.providers.base import ToolCallRequest
from mozaiks.store.base import ChatRecord
from workflows.loader import load_workflow
from workflows.model import ToolSpec

NEWS_DESK = Path(__file__).resolve().parents[1] / "mozaiksai" / "NewsDesk"


class Host:
    def __init__(self, state: SessionSnapshot) -> None:
        self.workflow = load_workflow(NEWS_DESK)
        self.state = state
        self.triggers = ContextTriggers(self.workflow, state.context)
        self.chat = ChatRecord(chat_id="c1", app_id="app", user_id="u", workflow_name="NewsDesk",
                               created_at="", updated_at="")
        self.committed: list[list[EventSpec]] = []

    async def commit(self, events: list[EventSpec], **_: Any) -> None:
        self.committed.append(events)


class Runner:
    def __init__(self) -> None:
        self.ran: list[str] = []

    async def runner(self, spec: ToolSpec, call: ToolCallRequest, ui_response: Any) -> ToolOutcome:
        self.ran.append(spec.name)
        if spec.name == "check_wire":
            raise RuntimeError("task lost")  # the runner itself failing, not the tool
        if spec.name == "archive":  # it called use_ui_tool: nobody is there to answer
            return ToolOutcome(status="ok", result={"summary": "x"}, ui_requested=True, context_changes={"archived": True})
        return ToolOutcome(status="ok", result=spec.name, context_changes={"desk_open": True})


def _hooks(state: SessionSnapshot) -> tuple[LifecycleHooks, Host, Runner]:
    host, tools = Host(state), Runner()
    return LifecycleHooks(host, tools), host, tools  # type: ignore[arg-type]


async def test_a_point_that_committed_is_not_run_again_after_a_restart() -> None:
    state = SessionSnapshot(run_id="run_1", step="agent", agent="Editor")
    hooks, host, tools = _hooks(state)
    assert await hooks.before_turn("Editor") is None
    assert tools.ran == ["open_desk", "check_wire"]
    calls = [p for events in host.committed for _, p in events if isinstance(p, ToolCall)]
    assert [(c.name, c.trigger, c.agent) for c in calls] == [("open_desk", "before_chat", "runtime"),
                                                             ("check_wire", "before_agent", "Editor")]
    answers = [p for events in host.committed for _, p in events if isinstance(p, ToolResponse)]
    assert answers[1].status == "error" and "RuntimeError: task lost" in (answers[1].error or "")
    assert state.context["desk_open"] is True

    again, _, rerun = _hooks(state.model_copy(deep=True))  # a new owner, from the committed snapshot
    assert await again.before_turn("Editor") is None and rerun.ran == []


async def test_a_pre_condition_hands_the_turn_on_before_the_agent_point() -> None:
    state = SessionSnapshot(run_id="run_1", run_turns=1, step="agent", agent="Editor",
                            context={"angle_ready": True})
    hooks, _, tools = _hooks(state)
    assert await hooks.before_turn("Editor") == "Writer"
    assert tools.ran == [] and state.run_turns == 2  # not the first turn: no before_chat either
    events = await hooks.after_chat()  # returned for the run's last commit, not committed here
    assert [p.name for _, p in events if isinstance(p, ToolCall)] == ["archive"]
    answer = next(p for _, p in events if isinstance(p, ToolResponse))
    assert answer.status == "error" and answer.error == "a lifecycle tool cannot open a UI (use_ui_tool)"
    assert "archived" not in state.context
