"""The orchestration loop of one chat: model turns, tool fan-out, handoffs, waits, run statuses.

Every durable step is one store write of its events together with the new snapshot, so the loop
can be resumed from the snapshot after a crash at any point (``SessionEngine.resume``). The parts
it drives are plain classes tested without Ray: ``RunSteps`` (the one place the step changes),
``tool_phase``, ``waits``, ``ContextTriggers``, ``UsageMeter``, ``agent_turn``, ``Committer``.
Nothing here knows about sockets; events go to the store and then to the session's EventHub.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from actors import children, deadlines, tool_phase, waits
from actors.commits import Committer, EventSpec, SessionState, error_event
from actors.event_hub import EventHub
from actors.handles import SessionHandle
from actors.history import History
from actors.lifecycle_hooks import LifecycleHooks
from actors.routing import TERMINATE, USER, after_user, route
from actors.run_host import ValidationBudget, WorkflowSource
from actors.run_steps import CHAT_STATUS_OF_RUN, PHASE_OF_STEP, RunSteps, new_id
from actors.snapshot import PendingInput, QueuedMessage, SessionSnapshot
from actors.tool_phase import ToolPhase
from actors.triggers import ContextTriggers
from actors.usage import UsageMeter, summary as usage_summary
from actors.turn import AgentTurn
from mozaiks import logs, metrics
from mozaiks.errors import StaleOwnerError
from mozaiks.protocol import events as ev
from mozaiks.providers.registry import ProviderRegistry
from mozaiks.settings import Settings
from mozaiks.store.base import ChatRecord, DuplicateMessageError, Store, UsageRecord
from workflows.model import Workflow

log = logging.getLogger("mozaiks.session")


class SessionEngine:
    def __init__(self, settings: Settings, store: Store, workflow: Workflow, chat: ChatRecord,
                 epoch: int, hub: EventHub, providers: ProviderRegistry, self_handle: SessionHandle | None,
                 on_run_end: Callable[[str], Awaitable[None]] | None = None,
                 workflows: WorkflowSource | None = None) -> None:
        self.settings, self.store, self.workflow, self.chat = settings, store, workflow, chat
        self.workflows = workflows
        self.hub, self.providers, self.self_handle = hub, providers, self_handle
        self.on_run_end = on_run_end  # journeys advance here, after the run's end is durable
        self.state = SessionSnapshot.model_validate(chat.snapshot) if chat.snapshot else SessionSnapshot()
        self.steps = RunSteps(self.state)
        self.triggers = ContextTriggers(workflow, self.state.context)
        self.meter = UsageMeter(chat)
        self.history = History()
        self.status = chat.status
        self.committer = Committer(store, chat, epoch, hub, self.history, SessionState(
            lambda: self.state.model_dump(mode="json"), lambda: self.status, lambda: self.phase))
        self.commit = self.committer.commit
        self.publish_ephemeral = self.committer.publish_ephemeral
        self.timer = waits.WaitTimer(lambda: deadlines.on_due(self))
        self.validation = ValidationBudget()
        self.tools = ToolPhase(self)
        self.lifecycle = LifecycleHooks(self, self.tools)
        self.turn = AgentTurn(self, self.tools, self.lifecycle)
        self._drive_task: asyncio.Task[None] | None = None
        self.children_lock = asyncio.Lock()
        self._children_task: asyncio.Task[None] | None = None

    @property
    def stale(self) -> bool:
        return self.committer.stale

    # ---------------------------------------------------------------- activation
    async def load(self) -> None:
        self.history.replay(await self.store.read_events(self.chat.app_id, self.chat.user_id, self.chat.chat_id))
        if not self.chat.snapshot:
            self.state.context.update(self.triggers.initial(self.chat))

    async def on_attach(self) -> None:
        """A client opened the chat: an AgentDriven workflow that never ran starts now."""
        await self.lifecycle.greet()
        if (self.workflow.orchestrator.startup_mode == "AgentDriven" and self.state.runs_started == 0
                and self.steps.step == "idle" and self.status == "active"):
            await self._start_run(None, from_user=False)

    async def _run_end_hook(self) -> None:
        """The hook of the run that just ended (or, on activation, of one whose owner died before
        the hook finished): idempotent, so running it again is always safe. The cleared mark is
        persisted with the next commit; until then a re-activation merely runs it once more."""
        status = self.state.run_end_due
        if status is not None and self.on_run_end is not None:
            await self.on_run_end(status)
        self.state.run_end_due = None

    async def resume(self) -> None:
        """Continue whatever the previous owner was doing when it stopped."""
        if self.steps.step == "idle" and self.state.run_end_due is not None:
            await self._run_end_hook()
        if self.steps.busy:
            # Tool calls the previous owner had started may or may not have run.
            self.tools.resumed = self.steps.step == "tools"
            self.spawn_drive()
        elif self.steps.step == "children":  # off the activation's path: it may start children
            self._children_task = asyncio.create_task(children.advance(self, resumed=True))
        elif self.steps.step == "idle" and self.state.queue and self.status == "active":
            await self._start_run(self.state.queue.pop(0))
        self.timer.arm(waits.open_deadline(self.state))

    @property
    def phase(self) -> str | None:
        return PHASE_OF_STEP[self.steps.step] if self.status == "active" else None

    def pending(self) -> dict[str, Any] | None:
        return waits.pending_view(self.state)

    def meta(self) -> ev.ChatMeta:
        return ev.ChatMeta(chat_id=self.chat.chat_id, workflow_name=self.chat.workflow_name,
                           app_id=self.chat.app_id, user_id=self.chat.user_id, status=self.status,
                           phase=self.phase, last_seq=self.chat.last_seq, created_at=self.chat.created_at,
                           pending=self.pending())

    # ---------------------------------------------------------------- client messages
    async def submit_text(self, message_id: str, text: str, input_request_id: str | None) -> ev.Ack:
        with self.state.unchanged_on(DuplicateMessageError):  # a resent message changes nothing
            return await self._submit_text(message_id, text, input_request_id)

    async def _submit_text(self, message_id: str, text: str, input_request_id: str | None) -> ev.Ack:
        user_event = ("user", ev.ChatText(message_id=message_id, agent="user", role="user", content=text,
                                          visibility="user"))
        step, pending = self.steps.step, self.state.pending_input
        if pending is not None and step == "input":
            if input_request_id and input_request_id != pending.request_id:
                return await self._reject(message_id, "unknown_input_request")
            self._answer_input(pending, text)
            await self.commit([user_event, (pending.agent, ev.InputAck(request_id=pending.request_id)),
                               *self.turn.announcement(self.state.agent or pending.agent)],
                              client_message_id=message_id)
            self.spawn_drive()
            return _ack(message_id, "accepted")
        if input_request_id:
            return await self._reject(message_id, "no_open_input_request")
        # An open UI tool keeps its run: what the user types meanwhile waits in the queue.
        policy = "start" if step == "idle" else "enqueue" if step == "ui" else self.workflow.orchestrator.concurrency
        if policy == "reject":
            return await self._reject(message_id, "run_in_progress")
        if policy == "start":
            self.state.last_user_message = text
        if policy == "start":  # the message and the run it starts: one commit
            await self._start_run(None, lead=[user_event], client_message_id=message_id)
            return _ack(message_id, "accepted")
        if policy == "interrupt":
            await self.commit([user_event], client_message_id=message_id)
            await self.cancel("immediate")
            self.state.last_user_message = text
            await self._start_run(None)
            return _ack(message_id, "accepted")
        self.state.queue.append(QueuedMessage(message_id=message_id, text=text))
        await self.commit([user_event], client_message_id=message_id)
        return _ack(message_id, "accepted")

    async def _reject(self, message_id: str, reason: str) -> ev.Ack:
        # Recording the id makes a retry of a rejected message a duplicate, not a second attempt.
        await self.commit([], client_message_id=message_id)
        return _ack(message_id, "rejected", reason)

    def _answer_input(self, pending: PendingInput, text: str) -> None:
        self.steps.enter("agent", agent=after_user(self.workflow, self.state.context) or pending.resume_agent)
        self.state.last_user_message = text

    async def submit_ui_response(self, message_id: str, call_id: str, response: Any) -> ev.Ack:
        with self.state.unchanged_on(DuplicateMessageError):
            return await self._submit_ui_response(message_id, call_id, response)

    async def _submit_ui_response(self, message_id: str, call_id: str, response: Any) -> ev.Ack:
        pending = self.state.pending_ui
        if pending is None or pending.call_id != call_id:
            return await self._reject(message_id, "no_such_ui_tool")
        events = await self.tools.answer_ui(pending, response)
        self.tools.leave_ui(pending.agent, pending.then_route)
        await self.commit(events, client_message_id=message_id)
        self.spawn_drive()
        return _ack(message_id, "accepted")

    async def cancel(self, mode: str) -> bool:
        """Cancel the current run. Returns False when nothing is running."""
        if self.steps.step == "idle":
            return False
        if mode == "after_turn" and self.steps.busy:
            self.state.cancel_after_turn = True
            return True
        task = self._drive_task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self.steps.step == "children":
            async with self.children_lock:
                await self.finish("cancelled", events=await children.cancel_children(self))
        elif self.steps.step != "idle":  # waiting runs have no task to cancel
            ui = self.state.pending_ui
            await self.finish("cancelled", events=tool_phase.ui_answer(ui, "cancelled", None, "run cancelled")
                               if ui else [])
        return True

    # ---------------------------------------------------------------- runs
    async def _start_run(self, queued: QueuedMessage | None, from_user: bool = True, lead: list[EventSpec] | None = None,
                         client_message_id: str | None = None) -> None:
        """``lead``: events committed with the run's start, before it (the message that starts it)."""
        if queued is not None:
            self.state.last_user_message = queued.text
        routed = after_user(self.workflow, self.state.context) if from_user else None
        agent = routed or self.steps.first_agent(self.workflow.initial_agent_name)
        run_id = self.steps.start_run(agent)
        self.status = "active"
        await self.commit([*(lead or []), (agent, ev.RunStart(run_id=run_id, agent=agent)), *self.turn.announcement(agent)],
                          client_message_id=client_message_id)
        self.spawn_drive()

    def spawn_drive(self) -> None:
        if self._drive_task is None or self._drive_task.done():
            self._drive_task = asyncio.create_task(self._drive())

    async def _drive(self) -> None:
        try:
            while self.steps.busy:
                logs.bind(chat_id=self.chat.chat_id, app_id=self.chat.app_id, workflow=self.chat.workflow_name,
                          run_id=self.state.run_id)
                if self.steps.step == "tools":
                    await self.tools.finish()
                else:
                    await metrics.timed_turn(self.turn.step(), self.chat, self.state.agent)
        except StaleOwnerError:
            log.warning("session for chat %s lost ownership; stopping", self.chat.chat_id)
        except Exception:
            log.exception("run failed in chat %s", self.chat.chat_id)
            await self.finish("failed", events=[error_event(None, "internal_error", "The run failed unexpectedly")])

    # ---------------------------------------------------------------- turn end and run end
    async def end_turn(self, agent_name: str, transfer: str | None, pre: str | None = None, *,
                       events: list[EventSpec] | None = None, usage: list[UsageRecord] | None = None) -> None:
        """``pre``: a `condition_scope: pre` rule's target, chosen before the agent spoke.
        ``events``/``usage``: the agent's reply, committed with where the turn goes next (one
        transaction, not two), or before the agent's `after_agent` tools when it has any."""
        events, usage = list(events or []), list(usage or [])
        if pre is None and self.lifecycle.acts_after(agent_name):
            if events or usage:
                await self.commit(events, usage=usage)  # the reply is shown before slow tools run
                events, usage = [], []
            await self.lifecycle.after_agent(agent_name)
        target, reason = (pre, "condition") if pre else route(self.workflow, agent_name, self.state.context, transfer)
        if target == TERMINATE or (target == USER and not self.workflow.orchestrator.human_in_the_loop):
            await self.finish("completed", events=events, usage=usage)
        elif target == USER:
            await self._request_input(agent_name, events, usage)
        else:
            self.steps.enter("agent", agent=target)
            await self.commit([*events, (agent_name, ev.Handoff(from_agent=agent_name, to_agent=target, reason=reason)),
                               *self.turn.announcement(target)], usage=usage)

    async def _request_input(self, agent_name: str, events: list[EventSpec], usage: list[UsageRecord]) -> None:
        if self.state.queue:  # a message typed while the agent worked answers its question
            queued = self.state.queue.pop(0)
            request_id = new_id("req")
            self._answer_input(PendingInput(request_id=request_id, agent=agent_name, prompt="",
                                            resume_agent=agent_name), queued.text)
            await self.commit([*events, (agent_name, ev.InputAck(request_id=request_id, message_id=queued.message_id)),
                               *self.turn.announcement(self.state.agent or agent_name)], usage=usage)
            return
        timeout = self.workflow.orchestrator.input_timeout_s
        said = [p.content for a, p in events if a == agent_name and isinstance(p, ev.ChatText) and p.content]
        pending = PendingInput(request_id=new_id("req"), agent=agent_name,
                               prompt=(said[-1] if said else self.history.last_text_of(agent_name)) or "Your reply",
                               timeout_at=waits.deadline_at(timeout), resume_agent=agent_name)
        self.steps.enter("input", input_=pending)
        await self.commit([*events, (agent_name, ev.InputRequest(request_id=pending.request_id, agent=agent_name,
                                                                 prompt=pending.prompt, input_schema=None,
                                                                 timeout_s=timeout))], usage=usage)
        self.timer.arm(waits.open_deadline(self.state))

    async def finish(self, run_status: str, events: list[EventSpec] | None = None,
                      summary: str | None = None, usage: list[UsageRecord] | None = None) -> None:
        events = (events or []) + await self.lifecycle.after_chat()
        run_usage, run_id = self.state.usage, self.state.run_id
        self.steps.enter("idle")
        self.status = CHAT_STATUS_OF_RUN[run_status]
        self.state.usage = type(run_usage)()
        self.validation.reset()
        metrics.RUNS.inc(**metrics.chat_tags(self.chat), status=run_status)
        self.state.run_end_due = run_status if self.on_run_end is not None else None
        await self.commit(events + [usage_summary(run_usage), (None, ev.RunComplete(
            run_id=run_id, status=run_status, summary=summary, usage=run_usage.totals()))], usage=usage)
        await self._run_end_hook()
        if self.state.queue:
            await self._start_run(self.state.queue.pop(0))

    def settled(self) -> bool:
        """Waiting on nobody but the user, with no step or commit in flight: everything this
        session knows is in the store, so it may passivate."""
        return (self.steps.step in ("idle", "input", "ui", "children") and not self.committer.lock.locked()
                and not self.children_lock.locked() and all(t is None or t.done()
                                                            for t in (self._drive_task, self._children_task)))

    async def stop(self) -> None:
        self.timer.cancel()
        for task in (self._drive_task, self._children_task):
            if task is not None and not task.done():
                task.cancel()


def _ack(message_id: str, status: Literal["accepted", "rejected"], reason: str | None = None) -> ev.Ack:
    return ev.Ack(id=message_id, status=status, reason=reason)


__all__ = ["DuplicateMessageError", "SessionEngine"]
