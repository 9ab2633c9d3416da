"""Server → client events (PROTOCOL §4.1–4.2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

# Durable events carry a per-chat seq, are persisted before they are sent and replayed on resume.
DURABLE_TYPES = frozenset({
    "chat.run_start", "chat.select_speaker", "chat.text", "chat.tool_call", "chat.tool_response",
    "chat.ui_tool_complete", "chat.ui_tool_dismiss", "chat.input_request", "chat.input_ack",
    "chat.input_timeout", "chat.handoff", "context_update", "chat.usage_delta", "chat.usage_summary",
    "chat.run_complete", "chat.error", "chat.journey_next",
})
EPHEMERAL_TYPES = frozenset({
    "chat_meta", "chat.text_delta", "tool_progress", "chat.resume_boundary", "ack", "ping",
})

RUN_STATUSES = ("completed", "failed", "cancelled", "max_turns")


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
