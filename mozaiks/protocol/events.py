"""Server → client events (PROTOCOL §4.1–4.2, docs/protocol.md): one model per event payload.

Each payload model names its ``TYPE`` and whether it is ``DURABLE`` (carries a per-chat seq, is
persisted before it is sent and replayed on resume) or ephemeral (never stored). The sets of
types below are derived from the models, so adding an event is adding one class here. Payloads
are dumped with ``exclude_unset``: an optional field a producer did not set is not on the wire.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

RUN_STATUSES = ("completed", "failed", "cancelled", "max_turns")


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventData(BaseModel):
    """The ``data`` of one event type."""

    model_config = ConfigDict(extra="forbid")
    TYPE: ClassVar[str]
    DURABLE: ClassVar[bool] = True

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class RunStart(EventData):
    TYPE = "chat.run_start"
    run_id: str
    agent: str


class SelectSpeaker(EventData):
    TYPE = "chat.select_speaker"
    agent: str


class ChatText(EventData):
    TYPE = "chat.text"
    message_id: str
    agent: str
    role: Literal["user", "assistant", "system"]
    content: str
    visibility: Literal["user", "trace"]
    structured_output: dict[str, Any] | None = None
    partial: bool | None = None  # the text a cancelled model call had streamed


class ToolCall(EventData):
    TYPE = "chat.tool_call"
    call_id: str
    name: str
    agent: str
    arguments: dict[str, Any]
    kind: Literal["agent_tool", "ui_tool"]
    awaiting_response: bool
    message_id: str | None = None
    component: str | None = None
    display: Literal["inline", "artifact"] | None = None
    props: dict[str, Any] | None = None
    timeout_s: float | None = None
    # Set on a lifecycle tool's call (the runtime made it, not a model): before_chat, after_agent, …
    trigger: Literal["before_chat", "after_chat", "before_agent", "after_agent"] | None = None


class ToolResponse(EventData):
    TYPE = "chat.tool_response"
    call_id: str
    name: str
    status: Literal["ok", "error", "timeout", "cancelled"]
    result: Any = None
    error: str | None = None
    duration_ms: int = 0
    started_at: float | None = None  # agent tools: when and where the Ray task ran
    ended_at: float | None = None
    node_id: str | None = None


class UiToolComplete(EventData):
    TYPE = "chat.ui_tool_complete"
    call_id: str


class UiToolDismiss(EventData):
    TYPE = "chat.ui_tool_dismiss"
    call_id: str


class InputRequest(EventData):
    TYPE = "chat.input_request"
    request_id: str
    agent: str
    prompt: str
    input_schema: dict[str, Any] | None = None
    timeout_s: float | None = None


class InputAck(EventData):
    TYPE = "chat.input_ack"
    request_id: str
    message_id: str | None = None  # a queued message that answered the request


class InputTimeout(EventData):
    TYPE = "chat.input_timeout"
    request_id: str
    outcome: Literal["fail", "complete", "continue"]


class Handoff(EventData):
    TYPE = "chat.handoff"
    from_agent: str
    to_agent: str
    reason: str


class ContextUpdate(EventData):
    TYPE = "context_update"
    variable: str
    value: Any = None


class UsageDelta(EventData):
    TYPE = "chat.usage_delta"
    agent: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached: bool
    duration_ms: int


class UsageSummary(EventData):
    TYPE = "chat.usage_summary"
    totals: dict[str, int]
    by_agent: dict[str, dict[str, int]]
    by_model: dict[str, dict[str, int]]


class RunComplete(EventData):
    TYPE = "chat.run_complete"
    run_id: str | None
    status: Literal["completed", "failed", "cancelled", "max_turns"]
    summary: str | None = None
    usage: dict[str, int]


class ChatError(EventData):
    TYPE = "chat.error"
    code: str
    message: str
    retryable: bool


class JourneyChat(BaseModel):
    workflow_name: str
    chat_id: str


class JourneyNext(EventData):
    TYPE = "chat.journey_next"
    journey_id: str
    instance: str
    step: int
    next: list[JourneyChat]
    waiting_for: list[str]



class ChildStarted(EventData):
    """A fan-out started one of this chat's children (a chat of its own, of the same user)."""

    TYPE = "chat.child_started"
    child_chat_id: str
    workflow_name: str
    journey: str
    index: int
    total: int


class ChildCompleted(EventData):
    TYPE = "chat.child_completed"
    child_chat_id: str
    workflow_name: str
    status: Literal["completed", "failed", "cancelled", "timed_out"]
    summary: str | None = None


class ChildrenMerged(EventData):
    """The children's results are in the context under ``inject_as``; the run goes on at ``resume_agent``."""

    TYPE = "chat.children_merged"
    merge_mode: str
    inject_as: str
    resume_agent: str | None
    completed: int
    failed: int
    usage: dict[str, int] | None = None  # the children's token totals, rolled up into this run

class ChatMeta(EventData):
    TYPE = "chat_meta"
    DURABLE = False
    model_config = ConfigDict(extra="allow")  # session listings add residency details
    chat_id: str
    workflow_name: str
    app_id: str
    user_id: str
    status: str
    phase: str | None
    last_seq: int
    created_at: str
    pending: dict[str, Any] | None = None


class TextDelta(EventData):
    TYPE = "chat.text_delta"
    DURABLE = False
    message_id: str
    agent: str
    delta: str


class ToolProgress(EventData):
    TYPE = "tool_progress"
    DURABLE = False
    call_id: str
    name: str
    progress: float
    message: str | None = None


class ResumeBoundary(EventData):
    TYPE = "chat.resume_boundary"
    DURABLE = False
    replayed: int
    last_seq: int


class Ack(EventData):
    TYPE = "ack"
    DURABLE = False
    id: Any = None  # the client message's id, as it sent it (none for a frame that is not JSON)
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None


class Ping(EventData):
    TYPE = "ping"
    DURABLE = False


EVENT_MODELS: dict[str, type[EventData]] = {m.TYPE: m for m in EventData.__subclasses__()}
DURABLE_TYPES = frozenset(t for t, m in EVENT_MODELS.items() if m.DURABLE)
EPHEMERAL_TYPES = frozenset(t for t, m in EVENT_MODELS.items() if not m.DURABLE)


def parse_data(type_: str, data: dict[str, Any]) -> EventData | None:
    """The typed payload of a known event; None for a type this version does not know."""
    model = EVENT_MODELS.get(type_)
    return model.model_validate(data) if model is not None else None


class Event(BaseModel):
    """The envelope every server → client message uses."""

    type: str
    seq: int | None = None
    chat_id: str
    timestamp: str = Field(default_factory=utc_now_iso)
    agent: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def durable(self) -> bool:
        return self.type in DURABLE_TYPES

    @property
    def payload(self) -> EventData | None:
        """``data`` as its event's model (validated); None for a type this version does not know."""
        return parse_data(self.type, self.data)


def envelope(chat_id: str, payload: EventData, *, agent: str | None = None, seq: int | None = None,
             timestamp: str | None = None) -> str:
    """The wire form of one event, as the socket and the events endpoint send it."""
    return wire(chat_id, payload.TYPE, payload.dump(), agent=agent, seq=seq, timestamp=timestamp)


def wire(chat_id: str, type_: str, data: dict[str, Any], *, agent: str | None = None, seq: int | None = None,
         timestamp: str | None = None) -> str:
    """The wire form of an event already reduced to its data (a stored one, read back)."""
    return envelope_of(chat_id, type_, data, agent=agent, seq=seq, timestamp=timestamp).model_dump_json()


def envelope_of(chat_id: str, type_: str, data: dict[str, Any], *, agent: str | None = None,
                seq: int | None = None, timestamp: str | None = None) -> Event:
    """The envelope of an event already reduced to its data, as a model (the events endpoint's items)."""
    return Event(type=type_, seq=seq, chat_id=chat_id, timestamp=timestamp or utc_now_iso(), agent=agent, data=data)
