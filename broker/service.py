"""The Session Broker (PROTOCOL §2): identity in, entitlement and usage checked, chat created or
resumed, a runtime token scoped to that chat out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from actors.handles import DirectoryHandle
from broker.runtime_token import RuntimeTokenMinter
from mozaiks import metrics
from mozaiks.errors import InvalidCursor
from mozaiks.protocol.broker_api import (
    CancelRequest, CancelResponse, CreateSessionRequest, CreateSessionResponse, EventPage, RuntimeToken, SessionList,
    SessionSummary, WorkflowInfo, WorkflowList,
)
from mozaiks.protocol.errors import ApiError, chat_not_found
from mozaiks.protocol.events import envelope_of
from mozaiks.protocol.identity import Identity
from mozaiks.settings import Settings
from mozaiks.store.base import ChatRecord, Store
from workflows.catalog import WorkflowCatalog
from workflows.fanout import PARENT_CONTEXT_KEY
from workflows.model import Workflow
from workflows.pack import JOURNEY_CONTEXT_KEY


class Listing(Protocol):
    """How the product lists a workflow (a capability of the registry)."""

    @property
    def name(self) -> str: ...
    @property
    def display_name(self) -> str | None: ...
    @property
    def description(self) -> str | None: ...


class AccessGate(Protocol):
    """Entitlements and usage (``capabilities.Gate``): who may start and see which workflow.
    ``capability``: an installed workflow's own, which the registry file does not know."""

    async def check_start(self, identity: Identity, workflow: Workflow, resuming: bool,
                          capability: Any = None) -> Sequence[tuple[str, int]]:
        """Raises ``ApiError`` when the user may not start (or resume) the workflow now; returns
        what it took from the usage limits (a rate slot, token reservations)."""

    async def give_back(self, taken: Sequence[tuple[str, int]]) -> None:
        """Return what ``check_start`` took, for a creation refused after it."""

    async def visible(self, identity: Identity, workflow: Workflow,
                      capability: Any = None) -> tuple[bool, Listing | None]: ...


class WorkflowSource(Protocol):
    """The workflows an app's chats may be of: the directory's, then the app's installed ones
    (``capabilities.installs.InstalledWorkflows``), each with its installed capability or None."""

    @property
    def catalog(self) -> WorkflowCatalog: ...

    async def find(self, app_id: str, name: str) -> tuple[Workflow, Listing | None]:
        """KeyError when the app has no workflow of that name."""

    async def all(self, app_id: str) -> list[tuple[Workflow, Listing | None]]: ...


class SessionBroker:
    def __init__(self, settings: Settings, store: Store, workflows: WorkflowSource, directory: DirectoryHandle,
                 gate: AccessGate | None = None) -> None:
        self.settings = settings
        self.store = store
        self.workflows = workflows  # the workflows directory, then the app's installed workflows
        self.catalog = workflows.catalog
        self.directory = directory
        # None on a Standalone runtime: the host's broker mints, and this one's endpoints are off.
        self.minter = RuntimeTokenMinter(settings) if settings.mints_runtime_tokens else None
        self.gate = gate  # None allows everything

    async def _workflow(self, app_id: str, name: str) -> tuple[Workflow, Listing | None]:
        """The workflow, and its capability when it is one this app installed."""
        try:
            return await self.workflows.find(app_id, name)
        except KeyError:
            raise ApiError(404, "unknown_workflow", f"Workflow {name!r} is not registered") from None

    async def _owned_chat(self, identity: Identity, chat_id: str) -> ChatRecord:
        chat = await self.store.get_chat(identity.app_id, identity.user_id, chat_id)
        if chat is None:
            raise chat_not_found()
        return chat

    def _mint(self, chat: ChatRecord) -> tuple[str, datetime]:
        assert self.minter is not None, "the ingress refuses broker calls when this runtime does not mint"
        return self.minter.mint(chat.user_id, chat.app_id, chat.chat_id, chat.workflow_name)

    def ws_url(self, chat: ChatRecord) -> str:
        base = self.settings.ws_base.rstrip("/")
        # Percent-encoded: the server decodes the path before routing, so any id but one with '/'
        # (refused at the identity) comes back as it was.
        segments = (chat.workflow_name, chat.app_id, chat.chat_id, chat.user_id)
        return f"{base}/ws/" + "/".join(quote(segment, safe="") for segment in segments)

    async def create_or_resume(self, identity: Identity, request: CreateSessionRequest,
                               idempotency_key: str | None) -> tuple[CreateSessionResponse, bool]:
        workflow, capability = await self._workflow(identity.app_id, request.workflow_name)
        taken: Sequence[tuple[str, int]] = ()
        if self.gate is not None:
            taken = await metrics.gated(self.gate.check_start(identity, workflow, resuming=request.chat_id is not None,
                                                              capability=capability))
        try:
            chat, created = await self.open_chat(identity.app_id, identity.user_id, request.workflow_name,
                                                 request.chat_id, request.context, idempotency_key,
                                                 tenant_id=identity.tenant_id)
        except ApiError:
            if self.gate is not None:
                await self.gate.give_back(taken)  # refused: it spends no rate slot, no reservation
            raise
        token, expires_at = self._mint(chat)
        return CreateSessionResponse(chat_id=chat.chat_id, workflow_name=chat.workflow_name,
                                     status="created" if created else "resumed", ws_url=self.ws_url(chat),
                                     runtime_token=token, expires_at=_iso(expires_at)), created

    async def open_chat(self, app_id: str, user_id: str, workflow_name: str, chat_id: str | None,
                        context: dict[str, Any] | None, idempotency_key: str | None = None,
                        tenant_id: str | None = None) -> tuple[ChatRecord, bool]:
        """Create or resume a chat and warm its session actor. Shared by the broker and the
        Standalone runtime API."""
        await self._workflow(app_id, workflow_name)
        if chat_id is not None:
            chat = await self.store.get_chat(app_id, user_id, chat_id)
            if chat is None:
                raise chat_not_found()
            if chat.workflow_name != workflow_name:
                raise ApiError(409, "workflow_mismatch",
                               f"Chat {chat_id!r} belongs to workflow {chat.workflow_name!r}")
            created = False
        else:
            for reserved in (JOURNEY_CONTEXT_KEY, PARENT_CONTEXT_KEY):
                if context and reserved in context:
                    raise ApiError(422, "invalid_request", f"context.{reserved} is set by the runtime only",
                                   {"fields": [{"field": f"context.{reserved}", "message": "reserved"}]})
            self._check_context(context)
            await self._check_prerequisites(app_id, user_id, workflow_name)
            record = ChatRecord.new(app_id, user_id, workflow_name, context or {}, tenant_id)
            chat, created = await self.store.create_chat(record, idempotency_key)
            # As payment APIs do: a key names one request; the same key with another body is a client bug.
            if not created and (chat.workflow_name != record.workflow_name or chat.context != record.context):
                raise ApiError(409, "idempotency_key_reused",
                               "This Idempotency-Key was used for a different request")
        # Activate now so the socket that follows finds its session already running.
        await self.directory.session(app_id, user_id, chat.chat_id)
        return chat, created

    def _check_context(self, context: dict[str, Any] | None) -> None:
        if not context:
            return
        size = len(json.dumps(context, separators=(",", ":")).encode())
        if size > self.settings.context_max_bytes:
            raise ApiError(422, "invalid_request", "context is too large",
                           {"fields": [{"field": "context", "message":
                                        f"{size} bytes, at most {self.settings.context_max_bytes}"}]})
        if _depth(context) > self.settings.context_max_depth:
            raise ApiError(422, "invalid_request", "context is nested too deeply",
                           {"fields": [{"field": "context", "message":
                                        f"at most {self.settings.context_max_depth} levels"}]})

    async def _check_prerequisites(self, app_id: str, user_id: str, workflow_name: str) -> None:
        """Pack gating: a run of every dependency must have completed once for this user (the store
        keeps that fact, whatever the chat's status is now; failed runs never count)."""
        pack = await asyncio.to_thread(self.catalog.pack)
        if pack is None:
            return
        missing = [name for name in pack.dependencies_of(workflow_name)
                   if not await self.store.has_completed(app_id, user_id, name)]
        if missing:
            raise ApiError(409, "prerequisites_not_met",
                           f"Complete {', '.join(missing)} before starting {workflow_name}",
                           {"missing": missing})

    async def list_sessions(self, identity: Identity, limit: int, cursor: str | None) -> SessionList:
        try:
            chats, next_cursor = await self.store.list_chats(identity.app_id, identity.user_id, limit, cursor)
        except InvalidCursor:
            raise ApiError(422, "invalid_request", "The cursor is invalid",
                           {"fields": [{"field": "cursor", "message": "not a cursor this API returned"}]}) from None
        return SessionList(sessions=[SessionSummary(
            chat_id=c.chat_id, workflow_name=c.workflow_name, status=c.status,  # type: ignore[arg-type]
            phase=c.phase if c.status == "active" else None,  # type: ignore[arg-type]
            created_at=c.created_at, updated_at=c.updated_at) for c in chats], next_cursor=next_cursor)

    async def list_workflows(self, identity: Identity) -> WorkflowList:
        infos = []
        for workflow, installed in sorted(await self.workflows.all(identity.app_id), key=lambda w: w[0].name):
            capability = installed
            if self.gate is not None:
                visible, capability = await self.gate.visible(identity, workflow, capability=installed)
                if not visible:
                    continue
            info = workflow.public_info()
            # The registry's display fields, when given, are the product's words for the workflow.
            infos.append(WorkflowInfo(
                name=info["name"],
                display_name=(capability and capability.display_name) or info.get("display_name") or info["name"],
                description=(capability and capability.description) or info.get("description") or "",
                capability=capability.name if capability else None))
        return WorkflowList(workflows=infos)

    async def refresh_token(self, identity: Identity, chat_id: str) -> RuntimeToken:
        chat = await self._owned_chat(identity, chat_id)
        if self.gate is not None:  # a reconnect is a resume: a lapsed plan or spent budget ends access
            workflow, capability = await self._workflow(chat.app_id, chat.workflow_name)
            await metrics.gated(self.gate.check_start(identity, workflow, resuming=True, capability=capability))
        token, expires_at = self._mint(chat)
        return RuntimeToken(runtime_token=token, expires_at=_iso(expires_at), ws_url=self.ws_url(chat))

    async def cancel(self, identity: Identity, chat_id: str, request: CancelRequest) -> CancelResponse:
        await self._owned_chat(identity, chat_id)
        session = await self.directory.session(identity.app_id, identity.user_id, chat_id)
        if session is None:
            raise chat_not_found()
        cancelled = await session.cancel(chat_id, request.mode)
        return CancelResponse(chat_id=chat_id, cancelled=cancelled, mode=request.mode)

    async def events(self, identity: Identity, chat_id: str, after_seq: int, limit: int) -> EventPage:
        await self._owned_chat(identity, chat_id)
        events = await self.store.read_events(identity.app_id, identity.user_id, chat_id, after_seq, limit + 1)
        page = events[:limit]
        return EventPage(chat_id=chat_id,
                         events=[envelope_of(chat_id, e.type, e.data, agent=e.agent, seq=e.seq, timestamp=e.timestamp)
                                 for e in page],
                         next_after_seq=page[-1].seq if len(events) > limit else None)


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, iteratively: a hostile body must not exhaust the stack."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
