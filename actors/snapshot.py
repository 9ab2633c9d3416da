"""The resumable state of a chat session, written with every durable event.

Conversation history is not in here: it is rebuilt from the event log. The snapshot holds only
what the log does not say directly — where the orchestration loop stands and what it waits for —
so it stays small however long the chat grows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field

from mozaiks.providers.base import ToolCallRequest
from workflows.fanout import ChildRequest, MidFlightJourney

Step = Literal["idle", "agent", "tools", "input", "ui", "children"]


class PendingInput(BaseModel):
    request_id: str
    agent: str
    prompt: str
    timeout_at: float | None = None  # epoch seconds
    resume_agent: str


class PendingUi(BaseModel):
    call_id: str
    name: str
    agent: str
    component: str
    display: str
    props: dict[str, Any] = Field(default_factory=dict)
    timeout_at: float | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    replay: bool = False  # a use_ui_tool function: run it again with the answer to get the result
    then_route: bool = False  # an auto-invoked tool: once answered, the agent's turn ends


class PendingTools(BaseModel):
    agent: str
    calls: list[ToolCallRequest]
    transfer: str | None = None  # an LLM handoff chosen in the same reply, applied after the tools
    ui_call: ToolCallRequest | None = None  # a UI tool of the same reply, opened once the tools are done
    then_route: bool = False  # the runtime's own call of an auto-invoked tool: the turn ends after it
    children: dict[str, Any] | None = None  # a tool's ToolContext.start_children, started after the tools


class PendingChildren(BaseModel):
    """A fan-out this chat waits for (actors/children.py). Its children and their outcomes are in
    the store's fan-out record; this says what the parent has done about them so far."""

    fanout_id: str
    journey: MidFlightJourney  # the declared spec, or one a tool asked for
    agent: str  # the trigger agent (or the agent whose tool fanned out)
    requests: list[ChildRequest]
    timeout_at: float | None = None  # epoch seconds
    created: bool = False  # the child chats and the store's fan-out record exist
    started: list[int] = Field(default_factory=list)  # children announced with chat.child_started
    reported: list[int] = Field(default_factory=list)  # children announced ended, in that order


class QueuedMessage(BaseModel):
    message_id: str
    text: str


class RunUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    by_agent: dict[str, dict[str, int]] = Field(default_factory=dict)
    by_model: dict[str, dict[str, int]] = Field(default_factory=dict)

    def add(self, agent: str, model: str, prompt: int, completion: int) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.total_tokens += prompt + completion
        for bucket, key in ((self.by_agent, agent), (self.by_model, model)):
            row = bucket.setdefault(key, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
            row["prompt_tokens"] += prompt
            row["completion_tokens"] += completion
            row["total_tokens"] += prompt + completion

    def totals(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


class SessionSnapshot(BaseModel):
    step: Step = "idle"
    run_id: str | None = None
    runs_started: int = 0
    run_turns: int = 0
    agent: str | None = None
    pending_input: PendingInput | None = None
    pending_ui: PendingUi | None = None
    pending_tools: PendingTools | None = None
    pending_children: PendingChildren | None = None
    call_index: dict[str, int] = Field(default_factory=dict)
    consecutive: dict[str, int] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    queue: list[QueuedMessage] = Field(default_factory=list)
    usage: RunUsage = Field(default_factory=RunUsage)
    last_user_message: str = ""
    cancel_after_turn: bool = False
    # The last lifecycle point whose tools ran, so a resumed turn does not run them twice.
    lifecycle_point: str | None = None
    greeted: bool = False  # the workflow's initial_message_to_user was shown
    # The status of the last run while its end hook (journeys) has not finished: written with its
    # chat.run_complete, so a session that dies in between runs the hook again on activation.
    run_end_due: str | None = None
    speaker_announced: str | None = None  # "run_id:run_turns:agent" of the turn whose speaker was announced
    journeys_announced: list[str] = Field(default_factory=list)  # chat.journey_next sent, per step

    @contextlib.contextmanager
    def unchanged_on(self, *errors: type[BaseException]) -> Iterator[None]:
        """Undo what the block changed if it raises one of ``errors`` — e.g. a client message whose
        commit finds it recorded before: the answer it resent must neither queue nor close a wait."""
        saved = self.model_copy(deep=True)
        try:
            yield
        except errors:
            self._restore(saved)
            raise

    def _restore(self, saved: SessionSnapshot) -> None:
        # In place: the engine's parts hold this object and its containers.
        for name in type(self).model_fields:
            value, current = getattr(saved, name), getattr(self, name)
            if isinstance(current, dict):
                current.clear()
                current.update(value)
            elif isinstance(current, list):
                current[:] = value
            else:
                setattr(self, name, value)
