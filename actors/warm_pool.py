"""The session directory's warm pool: blank session actors, prepared (store open, workflows parsed,
their model providers built) before anyone needs them, so starting a chat does not wait for a
process to boot.

It is refilled to its size with new processes, and takes back every passivated session's process
too: re-activating a chat then costs no new process. What it holds beyond its size and has not
been used for ``POOL_KEEP_S`` is ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import ray
from ray.actor import ActorHandle

from actors.chat_session import ChatSession
from actors.handles import DirectoryHandle
from mozaiks.settings import Settings

log = logging.getLogger("mozaiks.directory")

# Blank actors beyond the pool's size are kept this long after their last use, then ended: long
# enough to absorb the churn of chats passivating and coming back, short enough to give the
# memory of a burst back.
POOL_KEEP_S = 60.0

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


@dataclass(eq=False)
class SessionProcess:
    """One session actor process, blank or serving a chat, and the node it runs on."""

    handle: ActorHandle
    node_id: str
    pooled_at: float = 0.0  # monotonic time it last went (back) into the pool


class WarmPool:
    """Blank session actors, used last in, first out, so what the pool holds beyond its size ages
    and is trimmed. ``reuse`` frees a process another way when the pool is empty (the directory
    passivates an idle chat on a node at its cap); ``spawn`` runs the pool's background work."""

    def __init__(self, settings: Settings, directory: DirectoryHandle, size: int,
                 reuse: Callable[[], Awaitable[SessionProcess | None]], spawn: Spawn,
                 counters: Counter[str]) -> None:
        self.settings = settings
        self.directory = directory
        self.size = size
        self._reuse = reuse
        self._spawn = spawn
        self.counters = counters
        self._blank: list[SessionProcess] = []
        self._refill_task: asyncio.Task[None] | None = None
        self._trim_task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._blank)

    def node_ids(self) -> list[str]:
        return [process.node_id for process in self._blank]

    async def take(self) -> tuple[SessionProcess, Literal["warm", "cold"]]:
        """A blank actor, and whether it is a prepared process ("warm") or a new one ("cold")."""
        if not self._blank:
            freed = await self._reuse()
            if freed is not None:
                return freed, "warm"
            self.counters["cold_starts"] += 1
            return await self._start(), "cold"
        return self._blank.pop(), "warm"

    async def _start(self) -> SessionProcess:
        handle = ChatSession.options(scheduling_strategy="SPREAD").remote(self.settings, self.directory)
        node_id = await handle.prepare.remote()
        self.counters["processes_started"] += 1
        return SessionProcess(handle, node_id)

    def schedule_refill(self) -> None:
        if self._refill_task is None or self._refill_task.done():
            self._refill_task = self._spawn(self.refill())

    async def refill(self) -> None:
        missing = self.size - len(self._blank)
        if missing <= 0:
            return
        started = await asyncio.gather(*(self._start() for _ in range(missing)), return_exceptions=True)
        for process in started:
            if isinstance(process, SessionProcess):
                self.recycle(process)
            else:
                log.warning("a warm-pool session actor failed to start: %s", process)

    def recycle(self, process: SessionProcess) -> None:
        """A blank actor goes (back) into the pool."""
        process.pooled_at = time.monotonic()
        self._blank.append(process)
        if self._trim_task is None or self._trim_task.done():
            self._trim_task = self._spawn(self._trim())

    async def _trim(self) -> None:
        while len(self._blank) > self.size:
            await asyncio.sleep(1.0)
            cutoff = time.monotonic() - POOL_KEEP_S
            while len(self._blank) > self.size and self._blank[0].pooled_at < cutoff:
                ray.kill(self._blank.pop(0).handle)

    def resize(self, size: int) -> None:
        """A new size: what is beyond it is ended at once, what is missing is started."""
        self.size = size
        while len(self._blank) > self.size:
            ray.kill(self._blank.pop(0).handle)
        self.schedule_refill()

    def forget_lost(self, alive_nodes: set[str]) -> None:
        """Forget the blank actors on nodes that are no longer alive, and start their replacements."""
        lost = [process for process in self._blank if process.node_id not in alive_nodes]
        if lost:
            self._blank = [process for process in self._blank if process.node_id in alive_nodes]
            self.counters["pool_lost"] += len(lost)
            self.schedule_refill()
