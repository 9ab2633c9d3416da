"""HTTP bodies of the Session Broker (PROTOCOL §2) and the Standalone runtime API (§3)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mozaiks.protocol.events import Event

ChatStatus = Literal["active", "completed", "failed", "cancelled"]
ChatPhase = Literal["idle", "running", "waiting_input", "waiting_children"]


class CreateSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflow_name: str = Field(min_length=1, max_length=128)
    chat_id: str | None = Field(default=None, max_length=128)
    context: dict[str, Any] | None = None


class CreateSessionResponse(BaseModel):
    chat_id: str
    workflow_name: str
    status: Literal["created", "resumed"]
    ws_url: str
    runtime_token: str
    expires_at: str


class SessionSummary(BaseModel):
    chat_id: str
    workflow_name: str
    status: ChatStatus
    phase: ChatPhase | None
    created_at: str
    updated_at: str


class SessionList(BaseModel):
    sessions: list[SessionSummary]
    next_cursor: str | None


class WorkflowInfo(BaseModel):
    name: str
    display_name: str
    description: str
    capability: str | None = None


class WorkflowList(BaseModel):
    workflows: list[WorkflowInfo]


class RuntimeToken(BaseModel):
    runtime_token: str
    expires_at: str
    ws_url: str


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["immediate", "after_turn"] = "immediate"


class CancelResponse(BaseModel):
    chat_id: str
    cancelled: bool  # false: no run was in progress
    mode: Literal["immediate", "after_turn"]


class EventPage(BaseModel):
    """Durable events in seq order; ``next_after_seq`` is where the next page starts (None: this is the last)."""

    chat_id: str
    events: list[Event]
    next_after_seq: int | None


class RuntimeSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Path segments of the chat's WebSocket URL, where a '/' could never be routed back.
    app_id: str = Field(min_length=1, max_length=128, pattern=r"^[^/]+$")
    user_id: str = Field(min_length=1, max_length=128, pattern=r"^[^/]+$")
    workflow_name: str = Field(min_length=1, max_length=128)
    chat_id: str | None = Field(default=None, max_length=128)
    context: dict[str, Any] | None = None


class WorkflowInstallRequest(BaseModel):
    """``PUT /api/runtime/workflows/{name}``: the workflow's files, for one app."""

    model_config = ConfigDict(extra="forbid")
    app_id: str = Field(min_length=1, max_length=128, pattern=r"^[^/]+$")
    files: dict[str, str]  # path relative to the workflow folder -> UTF-8 text
    # The capability registry's fields (gated, allowed_plans, visibility, ...); default {"gated": true}.
    capability: dict[str, Any] | None = None


class WorkflowInstallResponse(BaseModel):
    app_id: str
    name: str
    version: str
    capability: dict[str, Any]
    installed_by: str
    installed_at: str
    files: list[str]


class RuntimeSessionResponse(BaseModel):
    chat_id: str
    status: Literal["created", "resumed"]


class SubscriptionRequest(BaseModel):
    """``plan: null`` ends the subscription."""

    model_config = ConfigDict(extra="forbid")
    app_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    plan: str | None = Field(max_length=64)
