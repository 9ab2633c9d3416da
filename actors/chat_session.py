"""The ChatSession Ray actor: one per active chat, the single writer of that chat's state and log.

Actors are started blank (a warm pool keeps some ready) and bound to a chat by ``activate``,
which takes ownership in the store with a new epoch and rebuilds the chat from its log.
Sockets watch it by long-polling ``poll``; client messages arrive through ``submit``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import ray
from pydantic import ValidationError

from actors.engine import SessionEngine, StaleOwnerError
from actors.event_hub import EventHub
from protocol.client_messages import ChatCancel, UiToolResponse, UserInputSubmit, client_message_adapter
from protocol.events import Event
from providers.registry import ProviderRegistry
from settings import Settings
from store import DuplicateMessageError, Store, open_store
from workflows.catalog import WorkflowCatalog

log = logging.getLogger("mozaiks.session")

# A watcher that has not polled for this long is considered gone (its ingress replica died).
WATCHER_LEASE_S = 60.0


@ray.remote(num_cpus=0, max_restarts=0)
class ChatSession:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = EventHub()
        self.engine: SessionEngine | None = None
        self.store: Store | None = None
        self.catalog = WorkflowCatalog(settings.workflows_dir)
        self.providers = ProviderRegistry(settings)
        self.watchers: dict[str, float] = {}
        self.last_activity = time.monotonic()

    async def ping(self) -> str:
        return self.engine.chat.chat_id if self.engine else ""

    async def pid(self) -> int:
        return os.getpid()

    async def activate(self, app_id: str, user_id: str, chat_id: str) -> dict[str, Any] | None:
        """Bind this blank actor to a chat. Returns chat_meta data, or None if no such chat."""
        if self.engine is not None:
            raise RuntimeError("session actor already bound")
        if self.store is None:
            self.store = open_store(self.settings.resolved_store_url)
            await self.store.init()
        chat = await self.store.get_chat(app_id, user_id, chat_id)
        if chat is None:
            return None
        epoch = await self.store.claim(app_id, user_id, chat_id)
        chat = await self.store.get_chat(app_id, user_id, chat_id)
        assert chat is not None
        workflow = self.catalog.get(chat.workflow_name)
        self.engine = SessionEngine(self.settings, self.store, workflow, chat, epoch, self.hub, self.providers,
                                    ray.get_runtime_context().current_actor)
        await self.engine.load()
        await self.engine.resume()
        return self.engine.meta()

    def _engine(self) -> SessionEngine:
        if self.engine is None or self.engine.stale:
            raise StaleOwnerError("session actor is not bound to a live chat")
        return self.engine

    # ------------------------------------------------------------------ watchers
    async def attach(self, watcher_id: str) -> tuple[dict[str, Any], int]:
        engine = self._engine()
        self.watchers[watcher_id] = time.monotonic()
        self.last_activity = time.monotonic()
        meta, offset = engine.meta(), self.hub.offset
        await engine.on_attach()
        return meta, offset

    async def detach(self, watcher_id: str) -> None:
        self.watchers.pop(watcher_id, None)
        self.last_activity = time.monotonic()

    async def poll(self, watcher_id: str, after: int, timeout: float) -> tuple[list[tuple[int | None, str]], int, bool]:
        self._engine()
        self.watchers[watcher_id] = time.monotonic()
        result = await self.hub.wait(after, timeout)
        if self.engine is None or self.engine.stale:
            raise StaleOwnerError("session lost ownership")
        return result

    async def read_events(self, after_seq: int, upto_seq: int | None = None) -> list[tuple[int, str]]:
        """Durable events with after_seq < seq <= upto_seq, as (seq, envelope JSON), for replay."""
        engine = self._engine()
        assert self.store is not None
        chat = engine.chat
        limit = None if upto_seq is None else max(0, upto_seq - after_seq)
        events = await self.store.read_events(chat.app_id, chat.user_id, chat.chat_id, after_seq, limit)
        return [(e.seq, Event(type=e.type, seq=e.seq, chat_id=chat.chat_id, timestamp=e.timestamp,
                              agent=e.agent, data=e.data).model_dump_json())
                for e in events if upto_seq is None or e.seq <= upto_seq]

    def active_watchers(self) -> int:
        cutoff = time.monotonic() - WATCHER_LEASE_S
        return sum(1 for seen in self.watchers.values() if seen >= cutoff)

    # ------------------------------------------------------------------ client messages
    async def submit(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Handle one client message; returns the ``ack`` data. Persisted before it is acked."""
        engine = self._engine()
        self.last_activity = time.monotonic()
        try:
            message = client_message_adapter.validate_python(raw)
        except ValidationError as exc:
            return {"id": str(raw.get("id", "")), "status": "rejected", "reason": _first_error(exc)}
        try:
            if isinstance(message, UserInputSubmit):
                return await engine.submit_text(message.id, message.text, message.input_request_id)
            if isinstance(message, UiToolResponse):
                return await engine.submit_ui_response(message.id, message.call_id, message.response)
            if isinstance(message, ChatCancel):
                cancelled = await engine.cancel(message.mode)
                return {"id": message.id, "status": "accepted" if cancelled else "rejected",
                        "reason": None if cancelled else "no_run_in_progress"}
        except DuplicateMessageError:
            return {"id": raw.get("id"), "status": "duplicate", "reason": None}
        return {"id": str(raw.get("id", "")), "status": "rejected", "reason": "unsupported_message_type"}

    async def cancel(self, mode: str) -> bool:
        return await self._engine().cancel(mode)

    async def tool_progress(self, call_id: str, name: str, fraction: float, message: str) -> None:
        if self.engine is not None:
            self.engine.publish_ephemeral("tool_progress", None, {
                "call_id": call_id, "name": name, "progress": max(0.0, min(1.0, float(fraction))),
                "message": message})

    async def status(self) -> dict[str, Any]:
        engine = self._engine()
        return {**engine.meta(), "watchers": self.active_watchers(),
                "idle_s": time.monotonic() - self.last_activity}

    async def shutdown(self) -> None:
        if self.engine is not None:
            await self.engine.stop()
        if self.store is not None:
            await self.store.close()
        await asyncio.sleep(0)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"invalid_message: {where}: {err.get('msg')}" if where else f"invalid_message: {err.get('msg')}"
