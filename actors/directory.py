"""Finds or activates the one session actor of a chat, and keeps a pool of blank actors warm.

A single named actor per cluster. Activation of a chat is serialised by a per-chat lock, so any
number of concurrent connects and broker calls for the same chat end with one live actor; the
store's epoch fences out any actor this directory lost track of.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from actors.chat_session import ChatSession
from settings import Settings

log = logging.getLogger("mozaiks.directory")

DIRECTORY_NAME = "mozaiks-session-directory"
NAMESPACE = "mozaiks"


@ray.remote(num_cpus=0, max_restarts=-1)
class SessionDirectory:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions: dict[str, Any] = {}
        self.owners: dict[str, tuple[str, str]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.pool: list[Any] = []
        self._refill_task: asyncio.Task[None] | None = None
        self.activations = 0

    async def ready(self) -> int:
        """Fill the warm pool before the first chat needs it; returns the pool size."""
        await self._refill()
        return len(self.pool)

    def _new_actor(self) -> Any:
        return ChatSession.options(scheduling_strategy="SPREAD").remote(self.settings)

    async def _refill(self) -> None:
        missing = self.settings.warm_pool_size - len(self.pool)
        if missing <= 0:
            return
        fresh = [self._new_actor() for _ in range(missing)]
        await asyncio.gather(*(a.ping.remote() for a in fresh))
        self.pool.extend(fresh)

    def _schedule_refill(self) -> None:
        if self._refill_task is None or self._refill_task.done():
            self._refill_task = asyncio.create_task(self._refill())

    async def _take_blank(self) -> Any:
        actor = self.pool.pop() if self.pool else self._new_actor()
        self._schedule_refill()
        return actor

    async def get(self, app_id: str, user_id: str, chat_id: str, dead: Any = None) -> Any | None:
        """The chat's live session actor, activating one if needed; None if the chat does not exist
        for this app and user. ``dead`` is a handle the caller saw fail: it is replaced."""
        lock = self.locks.setdefault(chat_id, asyncio.Lock())
        async with lock:
            current = self.sessions.get(chat_id)
            if current is not None and dead is not None and current._actor_id == dead._actor_id:
                self.sessions.pop(chat_id, None)
                self.owners.pop(chat_id, None)
                current = None
            if current is not None:
                # Another tenant's chat id looks exactly like a missing one.
                return current if self.owners.get(chat_id) == (app_id, user_id) else None
            actor = await self._take_blank()
            meta = await actor.activate.remote(app_id, user_id, chat_id)
            if meta is None:
                self.pool.append(actor)  # still blank: it can serve the next chat
                return None
            self.owners[chat_id] = (app_id, user_id)
            self.sessions[chat_id] = actor
            self.activations += 1
            return actor

    async def forget(self, chat_id: str, actor: Any) -> None:
        """A session that passivated itself tells the directory it is gone."""
        current = self.sessions.get(chat_id)
        if current is not None and current._actor_id == actor._actor_id:
            self.sessions.pop(chat_id, None)
            self.owners.pop(chat_id, None)

    async def stats(self) -> dict[str, int]:
        return {"resident": len(self.sessions), "pool": len(self.pool), "activations": self.activations}


def get_directory(settings: Settings) -> Any:
    """The cluster's directory, created on first use (detached, so it outlives the caller)."""
    return SessionDirectory.options(name=DIRECTORY_NAME, namespace=NAMESPACE, get_if_exists=True,
                                    lifetime="detached").remote(settings)
