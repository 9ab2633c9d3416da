"""The orchestration loop of one chat: model turns, tool fan-out, handoffs, waits, run statuses.

Every durable step is one store write of its events together with the new snapshot, so the loop
can be resumed from the snapshot after a crash at any point (``SessionEngine.resume``).
Nothing here knows about sockets; events go to the store and then to the session's EventHub.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from actors.delta_buffer import DeltaBuffer
from actors.event_hub import EventHub
from actors.history import History, for_agent
from actors.routing import TERMINATE, USER, after_user, llm_targets, route, transfer_tool_name
from actors.snapshot import PendingInput, PendingTools, PendingUi, QueuedMessage, SessionSnapshot
from actors.tool_tasks import ToolOutcome, run_tool
from mozaiks.protocol.events import Event, utc_now_iso
from mozaiks.providers.base import ModelError, ModelReply, ModelRequest, ToolCallRequest, ToolDefinition
from mozaiks.providers.registry import ProviderRegistry
from mozaiks.providers.scripted import estimate_tokens
from mozaiks.settings import Settings
from mozaiks.store.base import ChatRecord, DuplicateMessageError, FencedError, Store, StoredEvent, UsageRecord
from workflows.model import ModelConfig, ToolSpec, Workflow
from workflows.tool_context import ToolContext
from workflows.tool_loading import validate_arguments

log = logging.getLogger("mozaiks.session")

MAX_VALIDATION_RETRIES = 3
CHAT_STATUS_OF_RUN = {"completed": "completed", "failed": "failed", "cancelled": "cancelled",
                      "max_turns": "failed"}
PHASE_OF_STEP = {"idle": "idle", "agent": "running", "tools": "running", "input": "waiting_input",
                 "ui": "waiting_input"}


class StaleOwnerError(Exception):
    """This session lost ownership of its chat to a newer activation."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class SessionEngine:
    def __init__(self, settings: Settings, store: Store, workflow: Workflow, chat: ChatRecord,
                 epoch: int, hub: EventHub, providers: ProviderRegistry, self_handle: Any,
                 on_run_end: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.workflow = workflow
        self.chat = chat
        self.epoch = epoch
        self.hub = hub
        self.providers = providers
        self.self_handle = self_handle
        self.on_run_end = on_run_end  # journeys advance here, after the run's end is durable
        self.state = SessionSnapshot.model_validate(chat.snapshot) if chat.snapshot else SessionSnapshot()
        self.history = History()
        self.status = chat.status
        self._lock = asyncio.Lock()
        self._drive_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._validation_failures = 0
        self.stale = False
        self._resumed_mid_tools = False

    # ---------------------------------------------------------------- activation
    async def load(self) -> None:
        for event in await self.store.read_events(self.chat.app_id, self.chat.user_id, self.chat.chat_id):
            self.history.apply(event)
        if not self.chat.snapshot:
            self.state.context = self._initial_context()

    def _initial_context(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for var in self.workflow.context_variables:
            source = var.source
            if source.type == "env" and source.env_var:
                values[var.name] = os.environ.get(source.env_var, var.default)
            elif source.type == "static" and source.value is not None:
                values[var.name] = source.value
            else:
                values[var.name] = var.default
        values.update(app_id=self.chat.app_id, user_id=self.chat.user_id, chat_id=self.chat.chat_id,
                      workflow_name=self.chat.workflow_name, context=self.chat.context)
        return values

    async def on_attach(self) -> None:
        """A client opened the chat: an AgentDriven workflow that never ran starts now."""
        if (self.workflow.orchestrator.startup_mode == "AgentDriven" and self.state.runs_started == 0
                and self.state.step == "idle" and self.status == "active"):
            await self._start_run(None, from_user=False)

    async def resume(self) -> None:
        """Continue whatever the previous owner was doing when it stopped."""
        if self.state.step in ("agent", "tools"):
            # Tool calls the previous owner had started may or may not have run.
            self._resumed_mid_tools = self.state.step == "tools"
            self._spawn_drive()
        elif self.state.step == "idle" and self.state.queue and self.status == "active":
            queued = self.state.queue.pop(0)
            await self._start_run(queued)
        self._arm_timer()

    # ---------------------------------------------------------------- meta
    @property
    def phase(self) -> str | None:
        return PHASE_OF_STEP[self.state.step] if self.status == "active" else None

    def pending(self) -> dict[str, Any] | None:
        if self.state.pending_input:
            p = self.state.pending_input
            return {"kind": "input_request", "request_id": p.request_id, "agent": p.agent, "prompt": p.prompt,
                    "timeout_s": _remaining(p.timeout_at)}
        if self.state.pending_ui:
            u = self.state.pending_ui
            return {"kind": "ui_tool", "call_id": u.call_id, "name": u.name, "agent": u.agent,
                    "component": u.component, "display": u.display, "props": u.props,
                    "timeout_s": _remaining(u.timeout_at)}
        return None

    def meta(self) -> dict[str, Any]:
        return {"chat_id": self.chat.chat_id, "workflow_name": self.chat.workflow_name,
                "app_id": self.chat.app_id, "user_id": self.chat.user_id, "status": self.status,
                "phase": self.phase, "last_seq": self.chat.last_seq, "created_at": self.chat.created_at,
                "pending": self.pending()}

    # ---------------------------------------------------------------- commits
    async def commit(self, events: list[tuple[str, str | None, dict[str, Any]]], *,
                     client_message_id: str | None = None, usage: list[UsageRecord] | None = None) -> None:
        """Persist events with the current snapshot, then publish them. The only writer path."""
        if self.stale:
            raise StaleOwnerError(self.chat.chat_id)
        async with self._lock:
            first = self.chat.last_seq + 1
            stored = [StoredEvent(seq=first + i, type=t, timestamp=utc_now_iso(), agent=a, data=d)
                      for i, (t, a, d) in enumerate(events)]
            try:
                await self.store.append(self.chat.app_id, self.chat.user_id, self.chat.chat_id, self.epoch,
                                        stored, snapshot=self.state.model_dump(mode="json"),
                                        status=self.status, phase=self.phase,
                                        client_message_id=client_message_id, usage=usage)
            except FencedError as exc:
                self.stale = True
                raise StaleOwnerError(self.chat.chat_id) from exc
            if stored:
                self.chat.last_seq = stored[-1].seq
            for event in stored:
                self.history.apply(event)
                envelope = Event(type=event.type, seq=event.seq, chat_id=self.chat.chat_id,
                                 timestamp=event.timestamp, agent=event.agent, data=event.data)
                self.hub.publish(event.seq, envelope.model_dump_json())

    def publish_ephemeral(self, type_: str, agent: str | None, data: dict[str, Any]) -> None:
        self.hub.publish(None, Event(type=type_, chat_id=self.chat.chat_id, agent=agent, data=data).model_dump_json())

    # ---------------------------------------------------------------- client messages
    async def submit_text(self, message_id: str, text: str, input_request_id: str | None) -> dict[str, Any]:
        user_event = ("chat.text", "user", {"message_id": message_id, "agent": "user", "role": "user",
                                            "content": text, "visibility": "user"})
        step = self.state.step
        if step == "input":
            pending = self.state.pending_input
            assert pending is not None
            if input_request_id and input_request_id != pending.request_id:
                return await self._reject(message_id, "unknown_input_request")
            self._answer_input(pending, text)
            await self.commit([user_event, ("chat.input_ack", pending.agent, {"request_id": pending.request_id})],
                              client_message_id=message_id)
            self._spawn_drive()
            return _ack(message_id, "accepted")
        if input_request_id:
            return await self._reject(message_id, "no_open_input_request")
        if step == "idle":
            self.state.last_user_message = text
            await self.commit([user_event], client_message_id=message_id)
            await self._start_run(None)
            return _ack(message_id, "accepted")
        policy = self.workflow.orchestrator.concurrency
        if policy == "reject" and step != "ui":
            return await self._reject(message_id, "run_in_progress")
        if policy == "interrupt" and step != "ui":
            await self.commit([user_event], client_message_id=message_id)
            await self.cancel("immediate")
            self.state.last_user_message = text
            await self._start_run(None)
            return _ack(message_id, "accepted")
        self.state.queue.append(QueuedMessage(message_id=message_id, text=text))
        await self.commit([user_event], client_message_id=message_id)
        return _ack(message_id, "accepted")

    async def _reject(self, message_id: str, reason: str) -> dict[str, Any]:
        # Recording the id makes a retry of a rejected message a duplicate, not a second attempt.
        await self.commit([], client_message_id=message_id)
        return _ack(message_id, "rejected", reason)

    def _answer_input(self, pending: PendingInput, text: str) -> None:
        self.state.pending_input = None
        self.state.step = "agent"
        self.state.agent = after_user(self.workflow, self.state.context) or pending.resume_agent
        self.state.consecutive = {}
        self.state.last_user_message = text

    async def submit_ui_response(self, message_id: str, call_id: str, response: Any) -> dict[str, Any]:
        pending = self.state.pending_ui
        if pending is None or pending.call_id != call_id:
            return await self._reject(message_id, "no_such_ui_tool")
        if pending.replay:
            events = await self._replay_ui_tool(pending, response)
        else:
            events = self._ui_answer_events(pending, "ok", response, None)
        self.state.pending_ui = None
        self.state.step = "agent"
        await self.commit(events, client_message_id=message_id)
        self._spawn_drive()
        return _ack(message_id, "accepted")

    async def _replay_ui_tool(self, pending: PendingUi, response: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
        """The function's second run, where use_ui_tool returns the answer: its return is the result."""
        spec = {t.name: t for t in self.workflow.tools_for(pending.agent)}[pending.name]
        call = ToolCallRequest(id=pending.call_id, name=pending.name, arguments=pending.arguments)
        _, outcome = await self._run_one(spec, call, ui_response=response)
        if outcome.status != "ok":
            log.warning("chat %s: UI tool %s failed after the user's answer: %s", self.chat.chat_id,
                        pending.name, outcome.error)
        events = self._ui_answer_events(pending, outcome.status, outcome.result, outcome.error)
        events += [self._set_context(k, v) for k, v in outcome.context_changes.items()]
        if outcome.status == "ok":  # triggers read the user's answer, as for any UI tool
            events += self._ui_triggers(pending.name, response)
        return events

    def _ui_answer_events(self, pending: PendingUi, status: str, result: Any,
                          error: str | None) -> list[tuple[str, str | None, dict[str, Any]]]:
        events: list[tuple[str, str | None, dict[str, Any]]] = [
            ("chat.tool_response", pending.agent, {"call_id": pending.call_id, "name": pending.name,
                                                   "status": status, "result": result, "error": error,
                                                   "duration_ms": 0}),
            ("chat.ui_tool_complete" if pending.display == "inline" else "chat.ui_tool_dismiss",
             pending.agent, {"call_id": pending.call_id}),
        ]
        if status == "ok" and not pending.replay:
            events += self._ui_triggers(pending.name, result)
        return events

    def _ui_triggers(self, tool: str, response: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
        events = []
        for var in self.workflow.context_variables:
            for trig in var.source.triggers:
                if trig.type == "ui_response" and trig.tool == tool:
                    value = response.get(trig.response_key) if isinstance(response, dict) and trig.response_key else response
                    events.append(self._set_context(var.name, value))
        return events

    async def cancel(self, mode: str) -> bool:
        """Cancel the current run. Returns False when nothing is running."""
        if self.state.step == "idle":
            return False
        if mode == "after_turn" and self.state.step in ("agent", "tools"):
            self.state.cancel_after_turn = True
            return True
        task = self._drive_task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self.state.step != "idle":  # waiting runs have no task to cancel
            await self._finish("cancelled", events=self._pending_cancel_events())
        return True

    def _pending_cancel_events(self) -> list[tuple[str, str | None, dict[str, Any]]]:
        if self.state.pending_ui:
            events = self._ui_answer_events(self.state.pending_ui, "cancelled", None, "run cancelled")
            self.state.pending_ui = None
            return events
        self.state.pending_input = None
        return []

    # ---------------------------------------------------------------- runs
    async def _start_run(self, queued: QueuedMessage | None, from_user: bool = True) -> None:
        if queued is not None:
            self.state.last_user_message = queued.text
        agent = self.state.agent if self.state.runs_started and self.state.agent else self.workflow.initial_agent_name
        agent = (after_user(self.workflow, self.state.context) if from_user else None) or agent
        self.state.run_id = new_id("run")
        self.state.runs_started += 1
        self.state.run_turns = 0
        self.state.step = "agent"
        self.state.agent = agent
        self.state.consecutive = {}
        self.state.cancel_after_turn = False
        self.status = "active"
        await self.commit([("chat.run_start", agent, {"run_id": self.state.run_id, "agent": agent})])
        self._spawn_drive()

    def _spawn_drive(self) -> None:
        if self._drive_task is None or self._drive_task.done():
            self._drive_task = asyncio.create_task(self._drive())

    async def _drive(self) -> None:
        try:
            while self.state.step in ("agent", "tools"):
                if self.state.step == "tools":
                    await self._finish_tools()
                    continue
                await self._agent_step()
        except StaleOwnerError:
            log.warning("session for chat %s lost ownership; stopping", self.chat.chat_id)
        except Exception:
            log.exception("run failed in chat %s", self.chat.chat_id)
            await self._finish("failed", events=[("chat.error", None, {
                "code": "internal_error", "message": "The run failed unexpectedly", "retryable": False})])

    async def _agent_step(self) -> None:
        agent_name = self.state.agent
        assert agent_name is not None
        orch = self.workflow.orchestrator
        if self.state.run_turns >= orch.max_turns:
            await self._finish("max_turns")
            return
        agent = self.workflow.agent(agent_name)
        limit = agent.max_consecutive_turns
        if limit is not None and self.state.consecutive.get(agent_name, 0) >= limit:
            await self._end_turn(agent_name, None)
            return
        await self.commit([("chat.select_speaker", agent_name, {"agent": agent_name})])
        reply, message_id = await self._call_model(agent_name)
        if reply is None:
            return
        self.state.run_turns += 1
        self.state.call_index[agent_name] = self.state.call_index.get(agent_name, 0) + 1
        self.state.consecutive[agent_name] = self.state.consecutive.get(agent_name, 0) + 1
        self.state.usage.add(agent_name, reply.model, reply.usage.prompt_tokens, reply.usage.completion_tokens)
        events = [self._usage_event(agent_name, reply)]
        if reply.text or reply.structured is not None:
            events += self._text_events(agent_name, message_id, reply)
        transfer = reply.handoff
        tool_calls: list[ToolCallRequest] = []
        for call in reply.tool_calls:
            target = _transfer_target(call.name, [t for t, _ in llm_targets(self.workflow, agent_name)])
            if target:
                transfer = target
            else:
                tool_calls.append(call)
        usage_row = self._usage_record(agent_name, reply)
        schema = self.workflow.output_schema_for(agent_name)
        if schema and not tool_calls and not reply.exhausted:
            problem = _structured_problem(schema[1], reply)
            if problem:
                await self._reject_structured(agent_name, schema[0], problem, events, usage_row)
                return
        if not tool_calls:
            await self.commit(events, usage=[usage_row])
            if self.state.cancel_after_turn:
                await self._finish("cancelled")
                return
            await self._end_turn(agent_name, transfer)
            return
        await self._dispatch_tools(agent_name, message_id, tool_calls, transfer, events, usage_row)

    async def _reject_structured(self, agent_name: str, schema_name: str, problem: str,
                                 events: list[tuple[str, str | None, dict[str, Any]]], usage_row: UsageRecord) -> None:
        """A reply that does not fit the agent's output model goes back to it with the reason."""
        self._validation_failures += 1
        note = ("chat.text", "runtime", {"message_id": new_id("msg"), "agent": "runtime", "role": "system",
                                         "content": f"Your reply must be a {schema_name} object: {problem}",
                                         "visibility": "trace"})
        await self.commit(events + [note], usage=[usage_row])
        if self._validation_failures > MAX_VALIDATION_RETRIES:
            await self._finish("failed", events=[("chat.error", agent_name, {
                "code": "invalid_structured_output", "retryable": False,
                "message": f"{agent_name} did not produce a valid {schema_name}: {problem}"})])

    async def _call_model(self, agent_name: str) -> tuple[ModelReply | None, str]:
        agent = self.workflow.agent(agent_name)
        model = resolve_model(self.workflow, agent_name, self.settings)
        schema = self.workflow.output_schema_for(agent_name)
        tools = [ToolDefinition(name=t.name, description=t.description, parameters=t.parameters or {})
                 for t in self.workflow.tools_for(agent_name)]
        tools += [ToolDefinition(name=transfer_tool_name(target), description=desc)
                  for target, desc in llm_targets(self.workflow, agent_name)]
        request = ModelRequest(
            agent=agent_name, model=model.model_dump(), tools=tools,
            messages=for_agent(self.history.messages, agent_name, agent.system_prompt(),
                               self.workflow.orchestrator.initial_message),
            response_schema=schema[1] if schema else None, response_schema_name=schema[0] if schema else None,
            call_index=self.state.call_index.get(agent_name, 0), variables=self.state.context,
            last_user_message=self.state.last_user_message or self.history.last_user_text())
        message_id = new_id("msg")
        buffer = DeltaBuffer(lambda text: self.publish_ephemeral(
            "chat.text_delta", agent_name, {"message_id": message_id, "agent": agent_name, "delta": text}),
            model_name=model.name or model.provider)
        try:
            reply = await self.providers.get(model).complete(request, buffer.on_delta)
            buffer.flush()
            return reply, message_id
        except ModelError as exc:
            buffer.flush()
            await self._finish("failed", events=[("chat.error", agent_name, {
                "code": exc.code, "message": str(exc), "retryable": exc.retryable})])
            return None, message_id
        except asyncio.CancelledError:
            buffer.flush()
            await self._commit_partial(agent_name, message_id, buffer)
            raise

    def _text_events(self, agent_name: str, message_id: str, reply: ModelReply) -> list[tuple[str, str | None, dict[str, Any]]]:
        visual = self.workflow.orchestrator.visual_agents
        content = reply.text if reply.text is not None else json.dumps(reply.structured)
        data: dict[str, Any] = {"message_id": message_id, "agent": agent_name, "role": "assistant",
                                "content": content,
                                "visibility": "trace" if visual and agent_name not in visual else "user"}
        if reply.structured is not None:
            data["structured_output"] = reply.structured
        return [("chat.text", agent_name, data)] + self._text_triggers(agent_name, content)

    def _text_triggers(self, agent_name: str, text: str) -> list[tuple[str, str | None, dict[str, Any]]]:
        events = []
        for var in self.workflow.context_variables:
            for trig in var.source.triggers:
                if trig.type == "agent_text" and trig.agent in (None, agent_name) and _matches(trig.match, text):
                    events.append(self._set_context(var.name, trig.value))
        return events

    def _set_context(self, name: str, value: Any) -> tuple[str, str | None, dict[str, Any]]:
        self.state.context[name] = value
        return ("context_update", None, {"variable": name, "value": value})

    def _usage_event(self, agent_name: str, reply: ModelReply) -> tuple[str, str | None, dict[str, Any]]:
        u = reply.usage
        return ("chat.usage_delta", agent_name, {"agent": agent_name, "model": reply.model,
                                                 "prompt_tokens": u.prompt_tokens,
                                                 "completion_tokens": u.completion_tokens,
                                                 "total_tokens": u.total_tokens, "cached": u.cached,
                                                 "duration_ms": reply.duration_ms})

    def _usage_record(self, agent_name: str, reply: ModelReply) -> UsageRecord:
        c = self.chat
        return UsageRecord(app_id=c.app_id, user_id=c.user_id, chat_id=c.chat_id, workflow_name=c.workflow_name,
                           agent=agent_name, model=reply.model, prompt_tokens=reply.usage.prompt_tokens,
                           completion_tokens=reply.usage.completion_tokens,
                           total_tokens=reply.usage.total_tokens, timestamp=utc_now_iso())

    # ---------------------------------------------------------------- tools
    async def _dispatch_tools(self, agent_name: str, message_id: str, calls: list[ToolCallRequest],
                              transfer: str | None, events: list[tuple[str, str | None, dict[str, Any]]],
                              usage_row: UsageRecord) -> None:
        allowed = {t.name: t for t in self.workflow.tools_for(agent_name)}
        ui_call = next((c for c in calls if c.name in allowed and allowed[c.name].kind == "ui_tool"), None)
        runnable: list[ToolCallRequest] = []
        rejected: list[tuple[str, str | None, dict[str, Any]]] = []
        for call in calls:
            spec = allowed.get(call.name)
            problem = _call_problem(spec, call, ui_call)
            if call is ui_call and not problem:
                continue  # announced when its wait opens, with the props its function prepares
            events.append(("chat.tool_call", agent_name, {
                "call_id": call.id, "name": call.name, "agent": agent_name, "arguments": call.arguments,
                "message_id": message_id, "kind": spec.kind if spec else "agent_tool", "awaiting_response": False}))
            if problem:
                rejected.append(("chat.tool_response", agent_name, {
                    "call_id": call.id, "name": call.name, "status": "error", "error": problem, "duration_ms": 0}))
            else:
                runnable.append(call)
        if rejected:
            self._validation_failures += 1
            if self._validation_failures > MAX_VALIDATION_RETRIES:
                await self.commit(events + rejected, usage=[usage_row])
                await self._finish("failed", events=[("chat.error", agent_name, {
                    "code": "tool_validation_failed", "retryable": False,
                    "message": "The model kept calling tools with invalid arguments"})])
                return
        self.state.step = "tools"
        if ui_call is not None and _call_problem(allowed[ui_call.name], ui_call, ui_call):
            ui_call = None
        self.state.pending_tools = PendingTools(agent=agent_name, calls=runnable, transfer=transfer,
                                                ui_call=ui_call)
        await self.commit(events + rejected, usage=[usage_row])

    async def _open_ui_wait(self, agent_name: str, call: ToolCallRequest, spec: ToolSpec) -> None:
        assert spec.ui is not None
        props: dict[str, Any] = dict(call.arguments)
        replay = False
        if spec.file:  # the UI tool's own function prepares the component's props, as a Ray task
            _, outcome = await self._run_one(spec, call)
            if outcome.status != "ok" or not isinstance(outcome.result, dict):
                # No props, no component: the failure goes back to the model like any tool error.
                error = outcome.error or f"the props function returned {type(outcome.result).__name__}, not a dict"
                log.warning("chat %s: UI tool %s could not prepare its props: %s", self.chat.chat_id,
                            call.name, error)
                self.state.step = "agent"
                await self.commit([
                    ("chat.tool_call", agent_name, {"call_id": call.id, "name": call.name, "agent": agent_name,
                                                    "arguments": call.arguments, "kind": "ui_tool",
                                                    "awaiting_response": False}),
                    ("chat.tool_response", agent_name, {"call_id": call.id, "name": call.name, "status": "error",
                                                        "error": error, "duration_ms": 0})])
                return
            props, replay = outcome.result, outcome.ui_requested
        timeout = spec.timeout_s
        self.state.step = "ui"
        self.state.pending_ui = PendingUi(call_id=call.id, name=call.name, agent=agent_name,
                                          component=spec.ui.component, display=spec.ui.display,
                                          props=props, timeout_at=time.time() + timeout if timeout else None,
                                          arguments=call.arguments, replay=replay)
        await self.commit([("chat.tool_call", agent_name, {
            "call_id": call.id, "name": call.name, "agent": agent_name, "arguments": call.arguments,
            "kind": "ui_tool", "awaiting_response": True, "component": spec.ui.component,
            "display": spec.ui.display, "props": props, "timeout_s": timeout})])
        self._arm_timer()

    async def _finish_tools(self) -> None:
        pending = self.state.pending_tools
        assert pending is not None
        todo = [c for c in pending.calls if c.id not in self.history.answered_calls]
        specs = {t.name: t for t in self.workflow.tools_for(pending.agent)}
        if self._resumed_mid_tools:
            self._resumed_mid_tools = False
            unsafe = [c for c in todo if not specs[c.name].execution.idempotent]
            todo = [c for c in todo if specs[c.name].execution.idempotent]
            if unsafe:  # never run a non-idempotent tool twice: report it instead
                await self.commit([("chat.tool_response", pending.agent, {
                    "call_id": c.id, "name": c.name, "status": "error", "duration_ms": 0,
                    "error": "interrupted by a session restart; not re-run because the tool is not idempotent"})
                    for c in unsafe])
        tasks = {asyncio.create_task(self._run_one(specs[c.name], c)): c for c in todo}
        try:
            for finished in asyncio.as_completed(tasks):
                call, outcome = await finished
                events = [("chat.tool_response", pending.agent, {
                    "call_id": call.id, "name": call.name, "status": outcome.status, "result": outcome.result,
                    "error": outcome.error, "duration_ms": int((outcome.ended_at - outcome.started_at) * 1000),
                    "started_at": outcome.started_at, "ended_at": outcome.ended_at, "node_id": outcome.node_id})]
                events += [self._set_context(k, v) for k, v in outcome.context_changes.items()]
                await self.commit(events)
        finally:
            for task in tasks:
                task.cancel()
        self.state.pending_tools = None
        if self.state.cancel_after_turn:
            await self._finish("cancelled")
            return
        if pending.ui_call is not None:
            await self._open_ui_wait(pending.agent, pending.ui_call, specs[pending.ui_call.name])
            return
        if pending.transfer:
            await self._end_turn(pending.agent, pending.transfer)
            return
        self.state.step = "agent"
        await self.commit([])

    async def _run_one(self, spec: ToolSpec, call: ToolCallRequest,
                       ui_response: Any = None) -> tuple[ToolCallRequest, ToolOutcome]:
        ctx = ToolContext(chat_id=self.chat.chat_id, app_id=self.chat.app_id, user_id=self.chat.user_id,
                          workflow_name=self.chat.workflow_name, variables=dict(self.state.context))
        if ui_response is not None:
            ctx.ui_answered, ctx.ui_response = True, ui_response
        outcome = await run_tool(spec, self.workflow.path, call.arguments, ctx, self.self_handle, call.id)
        return call, outcome

    # ---------------------------------------------------------------- turn end and run end
    async def _end_turn(self, agent_name: str, transfer: str | None) -> None:
        target, reason = route(self.workflow, agent_name, self.state.context, transfer)
        if target == TERMINATE:
            await self._finish("completed")
        elif target == USER:
            if not self.workflow.orchestrator.human_in_the_loop:
                await self._finish("completed")
                return
            await self._request_input(agent_name)
        else:
            self.state.agent = target
            self.state.step = "agent"
            self.state.consecutive = {}
            await self.commit([("chat.handoff", agent_name, {"from_agent": agent_name, "to_agent": target,
                                                              "reason": reason})])

    async def _request_input(self, agent_name: str) -> None:
        if self.state.queue:  # a message typed while the agent worked answers its question
            queued = self.state.queue.pop(0)
            request_id = new_id("req")
            self._answer_input(PendingInput(request_id=request_id, agent=agent_name, prompt="",
                                            resume_agent=agent_name), queued.text)
            await self.commit([("chat.input_ack", agent_name, {"request_id": request_id,
                                                               "message_id": queued.message_id})])
            return
        timeout = self.workflow.orchestrator.input_timeout_s
        pending = PendingInput(request_id=new_id("req"), agent=agent_name,
                               prompt=self.history.last_text_of(agent_name) or "Your reply",
                               timeout_at=time.time() + timeout if timeout else None, resume_agent=agent_name)
        self.state.step = "input"
        self.state.pending_input = pending
        await self.commit([("chat.input_request", agent_name, {
            "request_id": pending.request_id, "agent": agent_name, "prompt": pending.prompt,
            "input_schema": None, "timeout_s": timeout})])
        self._arm_timer()

    async def _finish(self, run_status: str, events: list[tuple[str, str | None, dict[str, Any]]] | None = None,
                      summary: str | None = None) -> None:
        usage = self.state.usage
        run_id = self.state.run_id
        self.state.step = "idle"
        self.state.pending_tools = None
        self.state.pending_input = None
        self.state.cancel_after_turn = False
        self.status = CHAT_STATUS_OF_RUN[run_status]
        self.state.usage = type(usage)()
        self._validation_failures = 0
        await self.commit((events or []) + [
            ("chat.usage_summary", None, {"totals": usage.totals(), "by_agent": usage.by_agent,
                                          "by_model": usage.by_model}),
            ("chat.run_complete", None, {"run_id": run_id, "status": run_status, "summary": summary,
                                         "usage": usage.totals()}),
        ])
        if self.on_run_end is not None:
            await self.on_run_end(run_status)
        if self.state.queue:
            await self._start_run(self.state.queue.pop(0))

    async def _commit_partial(self, agent_name: str, message_id: str, buffer: DeltaBuffer) -> None:
        """A cancelled model call keeps what it had streamed, and its estimated usage; the call
        counts as made, so a scripted agent moves on to its next reply."""
        self.state.call_index[agent_name] = self.state.call_index.get(agent_name, 0) + 1
        if not buffer.text:
            await self.commit([])
            return
        completion = estimate_tokens(buffer.text)
        self.state.usage.add(agent_name, buffer.model_name, 0, completion)
        reply = ModelReply(text=buffer.text, model=buffer.model_name)
        reply.usage.completion_tokens = reply.usage.total_tokens = completion
        events = self._text_events(agent_name, message_id, reply)
        events[0][2]["partial"] = True
        await self.commit([self._usage_event(agent_name, reply)] + events,
                          usage=[self._usage_record(agent_name, reply)])

    # ---------------------------------------------------------------- timeouts
    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = (self.state.pending_input.timeout_at if self.state.pending_input
                    else self.state.pending_ui.timeout_at if self.state.pending_ui else None)
        if deadline is not None:
            delay = max(0.0, deadline - time.time())
            self._timer = asyncio.get_running_loop().call_later(
                delay, lambda: asyncio.ensure_future(self._on_timeout()))

    async def _on_timeout(self) -> None:
        now = time.time()
        if self.state.pending_input and (self.state.pending_input.timeout_at or now + 1) <= now:
            await self._input_timed_out(self.state.pending_input)
        elif self.state.pending_ui and (self.state.pending_ui.timeout_at or now + 1) <= now:
            pending = self.state.pending_ui
            events = self._ui_answer_events(pending, "timeout", None, "no response before the timeout")
            self.state.pending_ui = None
            self.state.step = "agent"
            await self.commit(events)
            self._spawn_drive()

    async def _input_timed_out(self, pending: PendingInput) -> None:
        policy = self.workflow.orchestrator.on_input_timeout
        notice = ("chat.input_timeout", pending.agent, {"request_id": pending.request_id, "outcome": policy})
        if policy == "continue":
            self.state.pending_input = None
            self.state.step = "agent"
            self.state.agent = pending.resume_agent
            self.state.consecutive = {}
            await self.commit([notice])
            self._spawn_drive()
        elif policy == "complete":
            await self._finish("completed", events=[notice])
        else:
            await self._finish("failed", events=[notice, ("chat.error", pending.agent, {
                "code": "input_timeout", "message": "No answer before the input timeout", "retryable": True})])

    def settled(self) -> bool:
        """Waiting on nobody but the user, with no step or commit in flight: everything this
        session knows is in the store, so it may passivate."""
        return (self.state.step in ("idle", "input", "ui") and not self._lock.locked()
                and (self._drive_task is None or self._drive_task.done()))

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._drive_task is not None and not self._drive_task.done():
            self._drive_task.cancel()


def resolve_model(workflow: Workflow, agent_name: str, settings: Settings) -> ModelConfig:
    """The agent's model, else the workflow's default, else the runtime's configured model."""
    configured = workflow.model_for(agent_name)
    if configured is None or (settings.model_override == "openai" and configured.provider == "scripted"):
        return ModelConfig(provider="openai", name=settings.default_model)
    return configured


def _ack(message_id: str, status: str, reason: str | None = None) -> dict[str, Any]:
    return {"id": message_id, "status": status, "reason": reason}


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, round(deadline - time.time(), 3))


def _transfer_target(name: str, targets: list[str]) -> str | None:
    for target in targets:
        if name == transfer_tool_name(target):
            return target
    return None


def _matches(match: dict[str, str] | None, text: str) -> bool:
    if not match:
        return False
    if "equals" in match:
        return text.strip() == match["equals"]
    if "contains" in match:
        return match["contains"] in text
    if "regex" in match:
        return re.search(match["regex"], text) is not None
    return False


def _structured_problem(schema: dict[str, Any], reply: ModelReply) -> str | None:
    if reply.structured is None:
        return "the reply is not a JSON object" if reply.text else "no structured output in the reply"
    errors = validate_arguments(schema, reply.structured)
    return "; ".join(errors) if errors else None


def _call_problem(spec: ToolSpec | None, call: ToolCallRequest, ui_call: ToolCallRequest | None) -> str | None:
    if spec is None:
        return f"unknown tool {call.name!r} for this agent"
    if spec.kind == "ui_tool" and call is not ui_call:
        return "only one UI tool can be open at a time"
    errors = validate_arguments(spec.parameters or {}, call.arguments)
    return "invalid arguments: " + "; ".join(errors) if errors else None


__all__ = ["DuplicateMessageError", "SessionEngine", "StaleOwnerError"]
