"""The store interface every backend implements, and the records it holds.

Every method that touches a chat is scoped by ``app_id`` and ``user_id``: a chat of another app
or user behaves exactly like a missing one (tenant isolation is a property of the store, not of
its callers' care).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel, Field

from mozaiks.errors import DuplicateMessageError, FencedError  # re-exported: what callers of append catch
from mozaiks.protocol.events import utc_now_iso

SCHEMA_VERSION = 5  # 2: fanouts, 3: installed_workflows, 4: wakeups and usage by time, 5: completions


class ChatRecord(BaseModel):
    chat_id: str
    app_id: str
    user_id: str
    workflow_name: str
    status: str = "active"  # active | completed | failed | cancelled
    phase: str | None = "idle"  # idle | running | waiting_input | waiting_children (active only)
    created_at: str
    updated_at: str
    epoch: int = 0  # owner generation (fencing)
    last_seq: int = 0
    snapshot: dict[str, Any] = Field(default_factory=dict)  # the session's resumable state
    context: dict[str, Any] = Field(default_factory=dict)  # the broker request's context
    tenant_id: str | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def new(cls, app_id: str, user_id: str, workflow_name: str, context: dict[str, Any],
            tenant_id: str | None) -> ChatRecord:
        """A chat to create: a fresh id, created and updated now."""
        now = utc_now_iso()
        return cls(chat_id=uuid.uuid4().hex, app_id=app_id, user_id=user_id, workflow_name=workflow_name,
                   created_at=now, updated_at=now, context=context, tenant_id=tenant_id)


class StoredEvent(BaseModel):
    seq: int
    type: str
    timestamp: str
    agent: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class UsageRecord(BaseModel):
    app_id: str
    user_id: str
    chat_id: str
    workflow_name: str
    agent: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    timestamp: str


class Wakeup(BaseModel):
    """When a passivated chat's open wait (input request, UI tool) times out: the chat must be
    activated then, even if the whole runtime restarted meanwhile."""

    app_id: str
    user_id: str
    chat_id: str
    wake_at: float  # epoch seconds


ChildStatus = Literal["pending", "running", "completed", "failed", "cancelled", "timed_out"]
CHILD_ENDED: tuple[ChildStatus, ...] = ("completed", "failed", "cancelled", "timed_out")


class ChildLink(BaseModel):
    """One child chat of a fan-out, and how it ended."""

    index: int
    chat_id: str
    workflow_name: str
    key: str  # the child's name in structured / deep merges
    status: ChildStatus = "pending"
    result: Any = None  # the child's last structured output, else its last agent text
    error: str | None = None


class FanOutRecord(BaseModel):
    """A parent chat waiting for its children: who they are and each one's outcome. Written by
    the parent when it fans out; each child's outcome is set once (``set_child_status``)."""

    fanout_id: str
    app_id: str
    user_id: str
    parent_chat_id: str
    journey_id: str
    created_at: str
    children: list[ChildLink]

    def with_child(self, index: int, status: ChildStatus, result: Any, error: str | None,
                   only_from: tuple[ChildStatus, ...]) -> FanOutRecord | None:
        """This record with one child's status changed, or None if that child is not in ``only_from``."""
        if not 0 <= index < len(self.children) or self.children[index].status not in only_from:
            return None
        children = list(self.children)
        children[index] = children[index].model_copy(update={"status": status, "result": result, "error": error})
        return self.model_copy(update={"children": children})


class InstalledWorkflow(BaseModel):
    """A workflow installed at runtime (``PUT /api/runtime/workflows/{name}`` or a generator's tool),
    usable by the one app that installed it. ``version`` addresses the content: the same files give
    the same version on every node."""

    app_id: str
    name: str
    version: str
    files: dict[str, str]  # relative path -> text content, exactly as validated
    capability: dict[str, Any] = Field(default_factory=dict)  # CapabilitySpec fields but `workflow`
    installed_by: str  # "service" or "workflow:<generator>/<chat_id>"
    installed_at: str


class Store(ABC):
    @abstractmethod
    async def init(self) -> None:
        """Create tables/indexes; idempotent."""

    @abstractmethod
    async def close(self) -> None: ...

    # -- chats ------------------------------------------------------------------------------
    @abstractmethod
    async def create_chat(self, chat: ChatRecord, idempotency_key: str | None = None) -> tuple[ChatRecord, bool]:
        """Insert a chat. With an idempotency key already used by the same app+user, return that
        chat instead and ``created=False``. Returns ``(record, created)``."""

    @abstractmethod
    async def get_chat(self, app_id: str, user_id: str, chat_id: str) -> ChatRecord | None: ...

    @abstractmethod
    async def list_chats(self, app_id: str, user_id: str, limit: int = 20,
                         cursor: str | None = None) -> tuple[list[ChatRecord], str | None]:
        """Newest first (by created_at, then chat_id). ``cursor`` is opaque; returns the next one or None."""

    @abstractmethod
    async def has_completed(self, app_id: str, user_id: str, workflow_name: str) -> bool:
        """Whether a run of that workflow has ever completed for this user. Durable: a completed
        chat that starts a new run (or fails later) does not take it back."""

    # -- ownership and the event log ------------------------------------------------------------
    @abstractmethod
    async def claim(self, app_id: str, user_id: str, chat_id: str) -> int:
        """Take ownership: atomically increment and return the chat's epoch. Raises ChatNotFound if absent."""

    @abstractmethod
    async def append(self, app_id: str, user_id: str, chat_id: str, epoch: int, events: list[StoredEvent],
                     snapshot: dict[str, Any] | None = None, status: str | None = None,
                     phase: str | None = None, client_message_id: str | None = None,
                     usage: list[UsageRecord] | None = None) -> None:
        """One atomic write: the events (their seqs must continue ``last_seq`` by +1, without gaps),
        the new snapshot/status/phase if given, the client message id if given, and usage rows.

        Raises FencedError when ``epoch`` is not the chat's current epoch, DuplicateMessageError
        when ``client_message_id`` was recorded before (nothing is written then), ChatNotFound when
        the chat is absent for this app+user.
        """

    @abstractmethod
    async def read_events(self, app_id: str, user_id: str, chat_id: str, after_seq: int = 0,
                          limit: int | None = None) -> list[StoredEvent]: ...

    # -- usage and counters ------------------------------------------------------------------
    @abstractmethod
    async def usage_totals(self, app_id: str, user_id: str | None = None, chat_id: str | None = None,
                           since: str | None = None) -> dict[str, int]:
        """Sums of prompt/completion/total tokens, filtered by user, chat and ISO time ``since``."""

    @abstractmethod
    async def prune_usage(self, before: str) -> int:
        """Delete usage records older than ISO time ``before`` (every app: the retention policy);
        returns how many went."""

    @abstractmethod
    async def counter_add(self, key: str, amount: int) -> int:
        """Add to a named counter (created at 0) and return the new value."""

    @abstractmethod
    async def counter_try_consume(self, key: str, amount: int, limit: int) -> tuple[bool, int]:
        """Atomically: if ``value + amount <= limit`` add it and return ``(True, new)``; else
        ``(False, value)`` and change nothing. Concurrent callers never overshoot ``limit``."""

    @abstractmethod
    async def counter_get(self, key: str) -> int: ...

    # -- subscriptions (the "store" entitlement provider) -------------------------------------------
    @abstractmethod
    async def get_subscription(self, app_id: str, user_id: str) -> str | None:
        """The user's plan in this app, or None when they have no subscription."""

    @abstractmethod
    async def set_subscription(self, app_id: str, user_id: str, plan: str | None) -> None:
        """Set (or with None, end) the user's plan in this app."""

    # -- wake-ups (deadlines of passivated chats' waits) -----------------------------------------
    @abstractmethod
    async def set_wakeup(self, app_id: str, user_id: str, chat_id: str, wake_at: float | None) -> None:
        """Record (or with None, clear) when the chat must be activated to time its wait out."""

    @abstractmethod
    async def list_wakeups(self) -> list[Wakeup]:
        """Every recorded wake-up, earliest first (the directory's, across apps, at its start)."""

    # -- fan-outs (a parent chat's children) ------------------------------------------------------
    @abstractmethod
    async def create_fanout(self, fanout: FanOutRecord) -> FanOutRecord:
        """Insert a fan-out; if its id exists for the same app+user, return the stored one unchanged."""

    @abstractmethod
    async def get_fanout(self, app_id: str, user_id: str, fanout_id: str) -> FanOutRecord | None: ...

    @abstractmethod
    async def set_child_status(self, app_id: str, user_id: str, fanout_id: str, index: int, status: ChildStatus,
                               *, result: Any = None, error: str | None = None,
                               only_from: tuple[ChildStatus, ...] = ("pending", "running")) -> tuple[bool, FanOutRecord]:
        """Atomically set one child's status (and result/error) if its status is in ``only_from``:
        of two racing writers exactly one changes it. Returns whether this call did, and the record
        as stored after it. FanOutNotFound if the fan-out is absent for this app+user."""

    # -- installed workflows (app-scoped) ---------------------------------------------------------
    @abstractmethod
    async def put_installed_workflow(self, record: InstalledWorkflow) -> None:
        """Insert or replace the app's workflow of that name, atomically."""

    @abstractmethod
    async def get_installed_workflow(self, app_id: str, name: str) -> InstalledWorkflow | None: ...

    @abstractmethod
    async def list_installed_workflows(self, app_id: str) -> list[InstalledWorkflow]:
        """This app's installed workflows, by name."""

    @abstractmethod
    async def delete_installed_workflow(self, app_id: str, name: str) -> bool:
        """Remove it; whether there was one."""
