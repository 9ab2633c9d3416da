"""What a passed deadline does: an input request's timeout policy, a UI tool's timeout answer, a
fan-out's timeout. ``waits.WaitTimer`` decides when a deadline is due; this decides what follows."""

from __future__ import annotations

import time
from typing import Protocol

from actors import children, tool_phase, waits
from actors.commits import EventSpec, error_event
from actors.run_host import RunHost
from actors.snapshot import PendingInput
from actors.tool_phase import ToolPhase
from mozaiks.protocol import events as ev


class DeadlineHost(RunHost, Protocol):
    tools: ToolPhase


async def on_due(host: DeadlineHost) -> None:
    now, state = time.time(), host.state
    if state.pending_input and waits.due(state.pending_input.timeout_at, now):
        await _input_timed_out(host, state.pending_input)
    elif (ui := state.pending_ui) and waits.due(ui.timeout_at, now):
        events = tool_phase.ui_answer(ui, "timeout", None, "no response before the timeout")
        host.tools.leave_ui(ui.agent, ui.then_route)
        await host.commit(events)
        host.spawn_drive()
    elif state.pending_children and waits.due(state.pending_children.timeout_at, now):
        await children.timed_out(host)


async def _input_timed_out(host: DeadlineHost, pending: PendingInput) -> None:
    policy = host.workflow.orchestrator.on_input_timeout
    notice: EventSpec = (pending.agent, ev.InputTimeout(request_id=pending.request_id, outcome=policy))
    if policy == "continue":
        host.steps.enter("agent", agent=pending.resume_agent)
        await host.commit([notice])
        host.spawn_drive()
    elif policy == "complete":
        await host.finish("completed", events=[notice])
    else:
        await host.finish("failed", events=[notice, error_event(pending.agent, "input_timeout",
                                                                "No answer before the input timeout")])
