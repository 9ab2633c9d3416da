"""The workflow's own actions at points of a chat's life, MozaiksAI's `lifecycle_tools` and
`initial_message_to_user`, and `condition_scope: pre` handoffs, which act before an agent speaks.

Lifecycle tools run through the tool phase's runner (a Ray task each, with the tool's execution
options), with no arguments but the chat's context: ``before_chat`` / ``after_chat`` once per run,
``before_agent`` / ``after_agent`` around each turn of an agent (from its first model call until the
engine routes away from it). Each call is recorded as ``chat.tool_call`` (with its ``trigger``) and
``chat.tool_response``; what it sets through ``context_variables`` is applied like any tool's
changes, before the model call that follows. A failing tool is answered with status ``error`` and
logged, and the run goes on: no model asked for it, so there is no model to hand the error to.
"""

from __future__ import annotations

import asyncio
import logging

from actors.commits import EventSpec
from actors.routing import pre_route
from actors.run_host import RunHost
from actors.run_steps import new_id
from actors.tool_phase import ToolPhase, outcome_response
from actors.tool_tasks import ToolOutcome
from mozaiks.protocol.events import ChatText, ToolCall
from mozaiks.providers.base import ToolCallRequest
from workflows.model import LifecyclePoint, LifecycleTool

log = logging.getLogger("mozaiks.session")
RUNTIME = "runtime"  # the agent of a chat-level lifecycle tool's events: no agent is speaking for it


class LifecycleHooks:
    def __init__(self, host: RunHost, tools: ToolPhase) -> None:
        self.host = host
        self.tools = tools  # its runner, looked up per call: the one every tool of the chat goes through

    async def greet(self) -> None:
        """Show the workflow's `initial_message_to_user` once, when the chat is first opened."""
        h = self.host
        greeting = h.workflow.orchestrator.initial_message_to_user
        if not greeting or h.state.greeted:
            return
        h.state.greeted = True
        agent = h.workflow.initial_agent_name  # said on its behalf, so its model knows what the user saw
        await h.commit([(agent, ChatText(message_id=new_id("msg"), agent=agent, role="assistant", content=greeting,
                                         visibility="user"))])

    async def before_turn(self, agent: str) -> str | None:
        """before_chat on a run's first turn; then the target of a `pre` condition, if one holds (the
        agent does not speak); else before_agent when ``agent`` starts its turn."""
        state = self.host.state
        if state.run_turns == 0:
            await self._point(f"{state.run_id}:before_chat", "before_chat", None)
        if state.consecutive.get(agent):
            return None  # the agent is already speaking (it called tools): neither point again
        if (target := pre_route(self.host.workflow, agent, state.context)) is not None:
            state.run_turns += 1  # counted against max_turns, so two `pre` rules cannot loop for ever
            return target
        await self._point(f"{state.run_id}:{state.run_turns}:before_agent:{agent}", "before_agent", agent)
        return None

    def acts_before(self, agent: str) -> bool:
        """Whether ``before_turn`` may do more than return None now (a tool to run, a `pre` route):
        when it may not, the turn's announcement can go with the commit that hands the turn over."""
        state = self.host.state
        if state.run_turns == 0 and self._hooked("before_chat", None):
            return True
        return not state.consecutive.get(agent) and (
            self._hooked("before_agent", agent) or pre_route(self.host.workflow, agent, state.context) is not None)

    def acts_after(self, agent: str) -> bool:
        return self._hooked("after_agent", agent)

    def _hooked(self, point: LifecyclePoint, agent: str | None) -> bool:
        return any(t.runs_for(point, agent) for t in self.host.workflow.lifecycle_tools)

    async def after_agent(self, agent: str) -> None:
        await self._point(f"{self.host.state.run_id}:{self.host.state.run_turns}:after_agent:{agent}",
                          "after_agent", agent)

    async def after_chat(self) -> list[EventSpec]:
        """The run's last events: committed by the engine with the run's end."""
        return await self._run("after_chat", None)

    async def _point(self, key: str, point: LifecyclePoint, agent: str | None) -> None:
        if self._passed(key, point):  # ran and committed before a restart
            return
        events = await self._run(point, agent)
        if events:
            self.host.state.lifecycle_point = key
            await self.host.commit(events)

    def _passed(self, key: str, point: LifecyclePoint) -> bool:
        mark = self.host.state.lifecycle_point or ""
        if point == "before_chat":  # every other point of a run comes after it: any mark of the run
            return mark.startswith(f"{self.host.state.run_id}:")
        return mark == key

    async def _run(self, point: LifecyclePoint, agent: str | None) -> list[EventSpec]:
        hooks = [t for t in self.host.workflow.lifecycle_tools if t.runs_for(point, agent)]
        if not hooks:
            return []
        calls = [ToolCallRequest(id=new_id("call"), name=t.name, arguments={}) for t in hooks]
        # A runner failure of its own is this tool's error: the run, often ending here, must end.
        results = await asyncio.gather(*(self.tools.runner(t, c, None) for t, c in zip(hooks, calls)),
                                       return_exceptions=True)
        events: list[EventSpec] = []
        for hook, call, result in zip(hooks, calls, results):  # in file order, whichever finished first
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # a cancellation (or exit) is not the tool's failure
            outcome = result if isinstance(result, ToolOutcome) else ToolOutcome(
                status="error", error=f"lifecycle tool could not run: {type(result).__name__}: {result}")
            events += self._answered(point, agent or RUNTIME, hook, call, outcome)
        return events

    def _answered(self, point: LifecyclePoint, agent: str, hook: LifecycleTool, call: ToolCallRequest,
                  outcome: ToolOutcome) -> list[EventSpec]:
        if outcome.ui_requested:
            outcome = outcome.model_copy(update={"status": "error", "result": None, "context_changes": {},
                                                 "error": "a lifecycle tool cannot open a UI (use_ui_tool)"})
        if outcome.status != "ok":
            log.warning("chat %s: lifecycle tool %s (%s) failed: %s", self.host.chat.chat_id, hook.name, point,
                        outcome.error)
        announced = (agent, ToolCall(call_id=call.id, name=hook.name, agent=agent, arguments={}, kind="agent_tool",
                                     awaiting_response=False, trigger=point))
        changes = [self.host.triggers.set(k, v) for k, v in outcome.context_changes.items()]
        return [announced, outcome_response(agent, call, outcome), *changes]
