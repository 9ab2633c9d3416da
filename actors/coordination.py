"""Two small asyncio building blocks of the session directory: per-chat locks and a wake-up timer."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

K = TypeVar("K", bound=tuple[str, ...])  # ordered, so equal moments still compare in the heap


class KeyedLocks:
    """One lock per key, kept only while someone holds or waits for it: a directory that has seen
    a million chats does not keep a million locks."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: Counter[str] = Counter()

    def busy(self, key: str) -> bool:
        return self._users[key] > 0

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]


class WakeupTimer(Generic[K]):
    """Calls ``due(key)`` once each registered moment (epoch seconds) has come."""

    def __init__(self, due: Callable[[K], None]) -> None:
        self._due = due
        self._heap: list[tuple[float, K]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, at: float, key: K) -> None:
        heapq.heappush(self._heap, (at, key))
        self._changed.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            delay = self._heap[0][0] - time.time() if self._heap else None
            if delay is not None and delay <= 0:
                self._due(heapq.heappop(self._heap)[1])
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), delay)
