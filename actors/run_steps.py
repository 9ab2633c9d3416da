"""Where a chat's run stands, and the one place that moves it.

The snapshot's ``step`` says what the orchestration loop does next; every change of it goes
through ``RunSteps.enter``, which also clears the waits the new step leaves behind, so a step and
its pending record cannot disagree.
"""

from __future__ import annotations

import uuid

from actors.snapshot import PendingChildren, PendingInput, PendingTools, PendingUi, SessionSnapshot, Step

CHAT_STATUS_OF_RUN = {"completed": "completed", "failed": "failed", "cancelled": "cancelled",
                      "max_turns": "failed"}
PHASE_OF_STEP = {"idle": "idle", "agent": "running", "tools": "running", "input": "waiting_input",
                 "ui": "waiting_input", "children": "waiting_children"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class RunSteps:
    def __init__(self, state: SessionSnapshot) -> None:
        self.state = state

    @property
    def step(self) -> Step:
        return self.state.step

    def enter(self, step: Step, *, agent: str | None = None, tools: PendingTools | None = None,
              input_: PendingInput | None = None, ui: PendingUi | None = None,
              children: PendingChildren | None = None) -> None:
        """Move to ``step``. Naming an ``agent`` makes it the speaker with fresh turn counts."""
        state = self.state
        state.step = step
        state.pending_tools = tools if step == "tools" else None
        state.pending_input = input_ if step == "input" else None
        state.pending_ui = ui if step == "ui" else None
        state.pending_children = children if step == "children" else None
        if agent is not None:
            state.agent = agent
            state.consecutive = {}
        if step == "idle":
            state.cancel_after_turn = False

    def start_run(self, agent: str) -> str:
        """A new run begins with ``agent``; returns its id."""
        state = self.state
        state.run_id = new_id("run")
        state.runs_started += 1
        state.run_turns = 0
        state.cancel_after_turn = False
        self.enter("agent", agent=agent)
        return state.run_id

    def first_agent(self, initial: str) -> str:
        """The speaker a new run starts with: where the last run left off, else the workflow's first."""
        return self.state.agent if self.state.runs_started and self.state.agent else initial

    def count_turn(self, agent: str) -> None:
        state = self.state
        state.run_turns += 1
        state.consecutive[agent] = state.consecutive.get(agent, 0) + 1
        self.count_call(agent)

    def count_call(self, agent: str) -> None:
        """A model call was made (scripted agents move on to their next reply)."""
        self.state.call_index[agent] = self.state.call_index.get(agent, 0) + 1

    def turn_limit_reached(self, max_turns: int) -> bool:
        return self.state.run_turns >= max_turns

    def consecutive_limit_reached(self, agent: str, limit: int | None) -> bool:
        return limit is not None and self.state.consecutive.get(agent, 0) >= limit

    @property
    def busy(self) -> bool:
        """The loop has work of its own (a model turn or tools) rather than waiting on someone."""
        return self.state.step in ("agent", "tools")
