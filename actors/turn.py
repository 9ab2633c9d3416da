"""One agent's turn: select the speaker, call its model (streaming deltas), and act on the reply —
end the turn, hand off, reject a reply of the wrong shape, or pass its tool calls on."""

from __future__ import annotations

import asyncio
from actors import agent_turn, children, usage
from actors.commits import EventSpec, error_event
from actors.delta_buffer import DeltaBuffer
from actors.lifecycle_hooks import LifecycleHooks
from actors.run_host import RunHost
from actors.run_steps import new_id
from actors.tool_phase import ToolPhase
from mozaiks import logs, metrics
from mozaiks.protocol.events import SelectSpeaker, TextDelta
from mozaiks.providers.base import ModelError, ModelReply
from mozaiks.store.base import UsageRecord


class AgentTurn:
    def __init__(self, host: RunHost, tools: ToolPhase, lifecycle: LifecycleHooks) -> None:
        self.host = host
        self.tools = tools
        self.lifecycle = lifecycle

    def announcement(self, agent_name: str) -> list[EventSpec]:
        """chat.select_speaker of the turn ``agent_name`` is handed, for the commit that hands it
        over (one transaction fewer per turn), when nothing happens before its model call: no
        limit ends the turn first, no lifecycle tool runs, no `pre` route sends it elsewhere.
        Otherwise none: ``step`` announces the turn itself once it gets to the model."""
        h = self.host
        if (h.steps.turn_limit_reached(h.workflow.orchestrator.max_turns)
                or h.steps.consecutive_limit_reached(agent_name, h.workflow.agent(agent_name).max_consecutive_turns)
                or self.lifecycle.acts_before(agent_name)):
            return []
        return self._announcement(agent_name)

    def _announcement(self, agent_name: str) -> list[EventSpec]:
        """chat.select_speaker, once per turn: a turn resumed after a crash (its model call made
        again) was announced already."""
        h = self.host
        turn = f"{h.state.run_id}:{h.state.run_turns}:{agent_name}"
        if h.state.speaker_announced == turn:
            return []
        h.state.speaker_announced = turn
        return [(agent_name, SelectSpeaker(agent=agent_name))]

    async def step(self) -> None:
        h = self.host
        agent_name = h.state.agent
        assert agent_name is not None
        logs.bind(agent=agent_name)
        if h.steps.turn_limit_reached(h.workflow.orchestrator.max_turns):
            return await h.finish("max_turns")
        if h.steps.consecutive_limit_reached(agent_name, h.workflow.agent(agent_name).max_consecutive_turns):
            return await h.end_turn(agent_name, None)
        if (pre := await self.lifecycle.before_turn(agent_name)) is not None:
            return await h.end_turn(agent_name, None, pre=pre)
        if announced := self._announcement(agent_name):
            await h.commit(announced)
        reply, message_id = await self._call_model(agent_name)
        if reply is None:
            return None
        h.steps.count_turn(agent_name)
        usage_event, usage_row = h.meter.record(h.state.usage, agent_name, reply)
        events = [usage_event]
        if reply.text or reply.structured is not None:
            events += agent_turn.text_events(h.workflow, h.triggers, agent_name, message_id, reply)
        transfer, tool_calls = agent_turn.split_transfers(h.workflow, agent_name, reply, h.history.user_spoke_last)
        schema = h.workflow.output_schema_for(agent_name)
        checked = schema is not None and not tool_calls and not reply.exhausted
        problem = agent_turn.structured_problem(schema[1], reply) if schema and checked else None
        if schema and problem:
            return await self._reject_structured(agent_name, schema[0], problem, events, usage_row)
        if schema and not tool_calls and (auto := agent_turn.auto_call(h.workflow, agent_name, reply)):
            return await self.tools.dispatch(agent_name, message_id, [auto], transfer, events, usage_row, then_route=True)
        if tool_calls:
            return await self.tools.dispatch(agent_name, message_id, tool_calls, transfer, events, usage_row)
        if (journey := children.trigger(h, agent_name, reply)) is not None and not reply.exhausted:
            return await children.fan_out(h, journey, agent_name, None, events, [usage_row], reply.structured)
        if h.state.cancel_after_turn:
            return await h.finish("cancelled", events=events, usage=[usage_row])
        # The reply goes with what follows it (the handoff, the input request, the run's end).
        return await h.end_turn(agent_name, transfer, events=events, usage=[usage_row])

    async def _reject_structured(self, agent_name: str, schema_name: str, problem: str,
                                 events: list[EventSpec], usage_row: UsageRecord) -> None:
        """A reply that does not fit the agent's output model goes back to it with the reason."""
        exhausted = self.host.validation.spend()
        note = agent_turn.runtime_note(new_id("msg"), f"Your reply must be a {schema_name} object: {problem}")
        await self.host.commit(events + [note], usage=[usage_row])
        if exhausted:
            message = f"{agent_name} did not produce a valid {schema_name}: {problem}"
            await self.host.finish("failed", events=[error_event(agent_name, "invalid_structured_output", message)])

    async def _call_model(self, agent_name: str) -> tuple[ModelReply | None, str]:
        h = self.host
        model = agent_turn.resolve_model(h.workflow, agent_name, h.settings)
        request = agent_turn.build_request(h.workflow, agent_name, model, h.history, h.state)
        message_id = new_id("msg")
        shown = agent_turn.shown_to_user(h.workflow, agent_name)
        # A hidden agent's text is trace only: streaming it would show the user what the log hides.
        buffer = DeltaBuffer(lambda text, more_coming: h.publish_ephemeral(
            agent_name, TextDelta(message_id=message_id, agent=agent_name, delta=text), more_coming) if shown else None,
            model_name=model.name or model.provider)
        try:
            reply = await metrics.model_call(h.providers.get(model), request, buffer.on_delta, h.chat, model.name or model.provider)
            buffer.flush(more_coming=True)
            return reply, message_id
        except ModelError as exc:
            buffer.flush()
            await self.host.finish("failed", events=[error_event(agent_name, exc.code, str(exc), exc.retryable)])
            return None, message_id
        except asyncio.CancelledError:
            buffer.flush()
            await self._commit_partial(agent_name, message_id, buffer)
            raise

    async def _commit_partial(self, agent_name: str, message_id: str, buffer: DeltaBuffer) -> None:
        """A cancelled model call keeps what it had streamed, and its estimated usage; the call
        counts as made, so a scripted agent moves on to its next reply."""
        self.host.steps.count_call(agent_name)
        if not buffer.text:
            await self.host.commit([])
            return
        reply = usage.partial_reply(buffer)
        usage_event, usage_row = self.host.meter.record(self.host.state.usage, agent_name, reply)
        events = agent_turn.text_events(self.host.workflow, self.host.triggers, agent_name, message_id, reply,
                                        partial=True)
        await self.host.commit([usage_event] + events, usage=[usage_row])

