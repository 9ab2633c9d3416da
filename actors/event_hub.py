"""In-memory fan-out of a session's outgoing events to the sockets watching it (long-poll).

Each published event gets a monotonically increasing offset. A watcher polls with the last offset
it saw; if that offset has already left the bounded buffer it is told so (``gap``) and replays the
durable events from the store instead. Ephemeral events older than the buffer are simply gone,
which is their contract.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class EventHub:
    def __init__(self, capacity: int = 4096) -> None:
        self._items: deque[tuple[int, int | None, str]] = deque(maxlen=capacity)
        self._offset = 0
        self._waiter: asyncio.Future[None] | None = None
        self.last_publish = time.monotonic()  # the session is not idle while it keeps talking

    @property
    def offset(self) -> int:
        return self._offset

    def publish(self, seq: int | None, payload: str) -> None:
        self._offset += 1
        self._items.append((self._offset, seq, payload))
        self.last_publish = time.monotonic()
        self.wake()

    def wake(self) -> None:
        """Return every pending ``wait`` now (with what there is, maybe nothing)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None

    def read(self, after: int) -> tuple[list[tuple[int | None, str]], int, bool]:
        """Events with offset > ``after``: (events as (seq, json), new offset, gap)."""
        if after >= self._offset:
            return [], self._offset, False
        first = self._items[0][0] if self._items else self._offset + 1
        gap = after + 1 < first
        start = max(0, after + 1 - first)
        items = [(seq, payload) for _, seq, payload in list(self._items)[start:]]
        return items, self._offset, gap

    async def wait(self, after: int, timeout: float) -> tuple[list[tuple[int | None, str]], int, bool]:
        if after >= self._offset:
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._waiter), timeout)
            except TimeoutError:
                pass
        return self.read(after)
