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


# A burst has ended when nothing was published for BURST_GAP_S; no poll waits for more than BURST_MAX_S.
BURST_GAP_S = 0.001
BURST_MAX_S = 0.005
# A publish that says more follows at once (a turn's announcement: its model call is next; a
# reply's last delta: its commit is next) does not end the burst. Polls are answered by what
# follows, or after LINGER_S at the latest: a zero-latency two-agent turn then reaches its
# watchers in one poll instead of three, a slow model's text at most LINGER_S late.
LINGER_S = 0.02


class EventHub:
    def __init__(self, capacity: int = 4096) -> None:
        self._items: deque[tuple[int, int | None, str]] = deque(maxlen=capacity)
        self._offset = 0
        self._waiter: asyncio.Future[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self.last_publish = time.monotonic()  # the session is not idle while it keeps talking

    @property
    def offset(self) -> int:
        return self._offset

    def publish(self, seq: int | None, payload: str, more_coming: bool = False) -> None:
        self._offset += 1
        self._items.append((self._offset, seq, payload))
        self.last_publish = time.monotonic()
        if not more_coming:
            self.wake()
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(LINGER_S, self.wake)

    def wake(self) -> None:
        """Return every pending ``wait`` now (with what there is, maybe nothing)."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None

    def read(self, after: int) -> tuple[list[tuple[int | None, str]], int, bool]:
        """Events with offset > ``after``: (events as (seq, json), new offset, gap)."""
        if after >= self._offset:
            return [], self._offset, False
        first = self._items[0][0] if self._items else self._offset + 1
        items = []
        for offset, seq, payload in reversed(self._items):  # from the new end: O(new events), not O(buffer)
            if offset <= after:
                break
            items.append((seq, payload))
        items.reverse()
        return items, self._offset, after + 1 < first

    async def wait(self, after: int, timeout: float) -> tuple[list[tuple[int | None, str]], int, bool]:
        """Like ``read``, but first waits up to ``timeout`` for something to read, and then for the
        rest of its burst: a turn publishes in four or five bursts a millisecond or so apart, and
        each poll that returns costs a round trip through Ray (about a millisecond of CPU on
        either side), so gathering a burst into one answer buys throughput for at most
        ``BURST_MAX_S`` of latency."""
        if after >= self._offset or self._linger is not None:
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._waiter), timeout)
            except TimeoutError:
                return self.read(after)
            deadline = time.monotonic() + BURST_MAX_S
            while time.monotonic() < deadline:
                seen = self._offset
                await asyncio.sleep(BURST_GAP_S)
                if self._offset == seen:
                    break
        return self.read(after)
