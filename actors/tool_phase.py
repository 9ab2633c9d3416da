"""The tool phase of a turn: which of a reply's calls may run, running them, and what they answer.

``plan_tools`` is pure (the calls of one reply against the agent's tools); ``run_tools`` runs the
approved calls concurrently through a ``ToolRunner`` — Ray tasks in a session, a plain coroutine
in a unit test — committing each answer as it arrives so a crash loses none that finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from actors import children, waits
from actors.commits import EventSpec, error_event
from actors.run_host import RunHost
from actors.snapshot import PendingTools, PendingUi
from actors.tool_tasks import ToolOutcome, run_tool
from mozaiks import metrics
from mozaiks.protocol.events import ToolCall, ToolResponse, UiToolComplete, UiToolDismiss
from mozaiks.providers.base import ToolCallRequest
from mozaiks.store.base import UsageRecord
from workflows.model import ToolSpec
from workflows.tool_context import ToolContext
from workflows.tool_loading import validate_arguments

# (spec, call, the user's answer when a use_ui_tool function runs a second time) -> outcome
ToolRunner = Callable[[ToolSpec, ToolCallRequest, Any], Awaitable[ToolOutcome]]
Commit = Callable[[list[EventSpec]], Awaitable[None]]
log = logging.getLogger("mozaiks.session")
NOT_IDEMPOTENT = "interrupted by a session restart; not re-run because the tool is not idempotent"


@dataclass
class ToolPlan:
    announced: list[EventSpec] = field(default_factory=list)  # chat.tool_call of every call but the UI tool
    rejected: list[EventSpec] = field(default_factory=list)  # answers to calls that may not run
    runnable: list[ToolCallRequest] = field(default_factory=list)
    ui_call: ToolCallRequest | None = None  # opened as a wait once the other tools are done


def tool_response(agent: str, call_id: str, name: str, status: str, *, result: Any = None,
                  error: str | None = None, duration_ms: int = 0, **timing: Any) -> EventSpec:
    return (agent, ToolResponse(call_id=call_id, name=name, status=status, result=result, error=error,
                                duration_ms=duration_ms, **timing))


def outcome_response(agent: str, call: ToolCallRequest, outcome: ToolOutcome) -> EventSpec:
    return tool_response(agent, call.id, call.name, outcome.status, result=outcome.result, error=outcome.error,
                         duration_ms=int((outcome.ended_at - outcome.started_at) * 1000),
                         started_at=outcome.started_at, ended_at=outcome.ended_at, node_id=outcome.node_id)


def ui_answer(pending: PendingUi, status: str, result: Any, error: str | None) -> list[EventSpec]:
    """How a UI tool's wait ends: its answer, then the component closes."""
    closed = UiToolComplete if pending.display == "inline" else UiToolDismiss
    return [tool_response(pending.agent, pending.call_id, pending.name, status, result=result, error=error),
            (pending.agent, closed(call_id=pending.call_id))]


def plan_tools(agent: str, message_id: str, calls: list[ToolCallRequest], specs: dict[str, ToolSpec]) -> ToolPlan:
    ui_call = next((c for c in calls if c.name in specs and specs[c.name].kind == "ui_tool"), None)
    plan = ToolPlan()
    for call in calls:
        spec = specs.get(call.name)
        problem = call_problem(spec, call, ui_call)
        if call is ui_call and not problem:
            plan.ui_call = call  # announced when its wait opens, with the props its function prepares
            continue
        plan.announced.append((agent, ToolCall(
            call_id=call.id, name=call.name, agent=agent, arguments=call.arguments, message_id=message_id,
            kind=spec.kind if spec else "agent_tool", awaiting_response=False)))
        if problem:
            plan.rejected.append(tool_response(agent, call.id, call.name, "error", error=problem))
        else:
            plan.runnable.append(call)
    return plan


def call_problem(spec: ToolSpec | None, call: ToolCallRequest, ui_call: ToolCallRequest | None) -> str | None:
    if spec is None:
        return f"unknown tool {call.name!r} for this agent"
    if spec.kind == "ui_tool" and call is not ui_call:
        return "only one UI tool can be open at a time"
    errors = validate_arguments(spec.parameters or {}, call.arguments)
    return "invalid arguments: " + "; ".join(errors) if errors else None


def resumable(agent: str, todo: list[ToolCallRequest],
              specs: dict[str, ToolSpec]) -> tuple[list[ToolCallRequest], list[EventSpec]]:
    """After a restart mid-tools: the calls safe to run again, and answers for those that are not
    (a non-idempotent tool may have run already and is never run twice)."""
    safe = [c for c in todo if specs[c.name].execution.idempotent]
    unsafe = [c for c in todo if not specs[c.name].execution.idempotent]
    return safe, [tool_response(agent, c.id, c.name, "error", error=NOT_IDEMPOTENT)
                  for c in unsafe]


async def run_tools(pending: PendingTools, todo: list[ToolCallRequest], specs: dict[str, ToolSpec],
                    runner: ToolRunner, answered: Callable[[ToolCallRequest, ToolOutcome], list[EventSpec]],
                    commit: Commit) -> None:
    """Run ``todo`` concurrently; each answer is committed as soon as its call finishes."""

    async def one(call: ToolCallRequest) -> tuple[ToolCallRequest, ToolOutcome]:
        return call, await runner(specs[call.name], call, None)

    tasks = [asyncio.create_task(one(c)) for c in todo]
    try:
        for finished in asyncio.as_completed(tasks):
            call, outcome = await finished
            await commit([outcome_response(pending.agent, call, outcome)] + answered(call, outcome))
    finally:
        for task in tasks:
            task.cancel()


class ToolPhase:
    """The tools of one reply: approve and record them, run them, then leave the phase."""

    def __init__(self, host: RunHost, runner: ToolRunner | None = None) -> None:
        self.host = host
        self.runner: ToolRunner = runner or self._run_on_ray
        self.resumed = False  # set on re-activation mid-tools: their calls may have run already

    async def dispatch(self, agent_name: str, message_id: str, calls: list[ToolCallRequest],
                       transfer: str | None, events: list[EventSpec], usage_row: UsageRecord,
                       then_route: bool = False) -> None:
        plan = plan_tools(agent_name, message_id, calls, self._specs(agent_name))
        events = events + plan.announced + plan.rejected
        if plan.rejected:
            if self.host.validation.spend():
                await self.host.commit(events, usage=[usage_row])
                await self.host.finish("failed", events=[error_event(agent_name, "tool_validation_failed",
                                                            "The model kept calling tools with invalid arguments")])
                return
        self.host.steps.enter("tools", tools=PendingTools(agent=agent_name, calls=plan.runnable, transfer=transfer,
                                                          ui_call=plan.ui_call, then_route=then_route))
        await self.host.commit(events, usage=[usage_row])

    async def finish(self) -> None:
        pending = self.host.state.pending_tools
        assert pending is not None
        specs = self._specs(pending.agent)
        todo = [c for c in pending.calls if c.id not in self.host.history.answered_calls]
        if self.resumed:
            self.resumed = False
            todo, interrupted = resumable(pending.agent, todo, specs)
            if interrupted:
                await self.host.commit(interrupted)
        await run_tools(pending, todo, specs, self.runner, self._tool_context_changes, self.host.commit)
        if self.host.state.cancel_after_turn:
            await self.host.finish("cancelled")
        elif pending.children is not None:
            await children.fan_out_from_tool(self.host, pending.agent, pending.children)
        elif pending.ui_call is not None:
            await self._open_ui_wait(pending.agent, pending.ui_call, specs[pending.ui_call.name], pending.then_route)
        elif pending.transfer or pending.then_route:
            await self.host.end_turn(pending.agent, pending.transfer)
        else:
            self.host.steps.enter("agent")
            await self.host.commit([])

    def _tool_context_changes(self, call: ToolCallRequest, outcome: ToolOutcome) -> list[EventSpec]:
        pending = self.host.state.pending_tools
        if outcome.children is not None and pending is not None:
            pending.children = outcome.children  # durable with this answer's commit
        return [self.host.triggers.set(k, v) for k, v in outcome.context_changes.items()]

    def _specs(self, agent_name: str) -> dict[str, ToolSpec]:
        return {t.name: t for t in self.host.workflow.tools_for(agent_name)}

    async def _run_on_ray(self, spec: ToolSpec, call: ToolCallRequest, ui_response: Any) -> ToolOutcome:
        chat = self.host.chat
        ctx = ToolContext(chat_id=chat.chat_id, app_id=chat.app_id, user_id=chat.user_id,
                          workflow_name=chat.workflow_name, variables=dict(self.host.state.context))
        if ui_response is not None:
            ctx.ui_answered, ctx.ui_response = True, ui_response
        return metrics.tool_call(chat, call.name, await run_tool(spec, self.host.workflow.path, call.arguments, ctx,
                                                                 self.host.self_handle, call.id))

    def leave_ui(self, agent_name: str, then_route: bool) -> None:
        """A UI tool's wait is over: its agent speaks again, or, for an auto-invoked one, its turn
        ends — through an empty tool step, so the routing happens in the loop after this commit."""
        if then_route:
            self.host.steps.enter("tools", tools=PendingTools(agent=agent_name, calls=[], then_route=True))
        else:
            self.host.steps.enter("agent")

    async def _open_ui_wait(self, agent_name: str, call: ToolCallRequest, spec: ToolSpec, then_route: bool) -> None:
        assert spec.ui is not None
        props: dict[str, Any] = dict(call.arguments)
        replay = False
        if spec.file:  # the UI tool's own function prepares the component's props, as a Ray task
            outcome = await self.runner(spec, call, None)
            if outcome.status != "ok" or not isinstance(outcome.result, dict):
                error = outcome.error or f"the props function returned {type(outcome.result).__name__}, not a dict"
                return await self._props_failed(agent_name, call, error, then_route)
            props, replay = outcome.result, outcome.ui_requested
        timeout = spec.timeout_s
        self.host.steps.enter("ui", ui=PendingUi(call_id=call.id, name=call.name, agent=agent_name,
                                                 component=spec.ui.component, display=spec.ui.display,
                                                 props=props, timeout_at=waits.deadline_at(timeout),
                                                 arguments=call.arguments, replay=replay, then_route=then_route))
        await self.host.commit([(agent_name, ToolCall(
            call_id=call.id, name=call.name, agent=agent_name, arguments=call.arguments, kind="ui_tool",
            awaiting_response=True, component=spec.ui.component, display=spec.ui.display, props=props,
            timeout_s=timeout))])
        self.host.timer.arm(waits.open_deadline(self.host.state))

    async def _props_failed(self, agent_name: str, call: ToolCallRequest, error: str, then_route: bool) -> None:
        """No props, no component: the failure goes back to the model like any tool error."""
        log.warning("chat %s: UI tool %s could not prepare its props: %s", self.host.chat.chat_id, call.name, error)
        self.leave_ui(agent_name, then_route)
        await self.host.commit([
            (agent_name, ToolCall(call_id=call.id, name=call.name, agent=agent_name, arguments=call.arguments,
                                  kind="ui_tool", awaiting_response=False)),
            tool_response(agent_name, call.id, call.name, "error", error=error)])

    async def answer_ui(self, pending: PendingUi, response: Any) -> list[EventSpec]:
        """The events of the user's answer to the open UI tool; its triggers read the answer."""
        triggers = self.host.triggers
        if not pending.replay:
            return ui_answer(pending, "ok", response, None) + triggers.on_ui_response(pending.name, response)
        # A use_ui_tool function runs again with the answer: what it returns is the tool's result.
        spec = self._specs(pending.agent)[pending.name]
        call = ToolCallRequest(id=pending.call_id, name=pending.name, arguments=pending.arguments)
        outcome = await self.runner(spec, call, response)
        if outcome.status != "ok":
            log.warning("chat %s: UI tool %s failed after the user's answer: %s", self.host.chat.chat_id,
                        pending.name, outcome.error)
        events = ui_answer(pending, outcome.status, outcome.result, outcome.error)
        events += [triggers.set(k, v) for k, v in outcome.context_changes.items()]
        if outcome.status == "ok":
            events += triggers.on_ui_response(pending.name, response)
        return events
