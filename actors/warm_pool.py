"""The session directory's warm pool: blank session actors, prepared (store open, workflows parsed,
their model providers built) before anyone needs them, so starting a chat does not wait for a
process to boot. It takes back every passivated session's process too: re-activating a chat then
costs no new process.

Sizing. The pool holds what is likely to arrive while a replacement boots: the arrival rate of
activations (a moving average over ``warm_pool_window_s``) times how long starting and preparing a
session process takes lately (itself a moving average: it grows with the machine's load), with
``HEADROOM`` for bursts; never below ``warm_pool_size``, never above ``warm_pool_max`` nor a node's
``max_resident_sessions`` (each directory shard: its share of them, and of the arrivals). Every take starts the replacements at once, counting those already
booting, so the pool is refilled ahead of demand rather than once it is empty. A take that finds
it empty waits for the next process that becomes ready (a new one or a passivated session's), in
arrival order. After a quiet period the rate decays, the target falls back to ``warm_pool_size``,
and the pooled actors beyond the target that went unused for a window are ended.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import ray
from ray.actor import ActorHandle

from actors.chat_session import ChatSession
from actors.handles import DirectoryHandle
from actors.names import NAMESPACE
from mozaiks.settings import Settings

log = logging.getLogger("mozaiks.directory")

# Arrivals come in bursts: the pool covers twice the mean demand during one boot.
HEADROOM = 2.0
# A session process' start and prepare before any was measured (about a second of CPU here).
BOOT_GUESS_S = 1.0
# The newest boot's weight in the moving average of boot times.
BOOT_WEIGHT = 0.3
# How often the pool looks for actors to end while it holds more than its floor.
TRIM_EVERY_S = 1.0

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


@dataclass(frozen=True)
class PoolLimits:
    """The pool's bounds and the arrival rate's window, as the directory's policy says now."""

    floor: int
    ceiling: int
    window_s: float


@dataclass(eq=False)
class SessionProcess:
    """One session actor process, blank or serving a chat, and the node it runs on."""

    handle: ActorHandle
    node_id: str
    pooled_at: float = 0.0  # monotonic time it last went (back) into the pool


class ArrivalRate:
    """Events per second as an exponentially decaying average: each event adds 1/window and the
    sum decays with the window as time constant. A steady rate reads as itself, a burst shows at
    once, and a few quiet windows read as almost nothing."""

    def __init__(self) -> None:
        self._level = 0.0
        self._at = time.monotonic()

    def note(self, window_s: float) -> None:
        now = time.monotonic()
        self._level = self._decayed(now, window_s) + 1.0 / window_s
        self._at = now

    def per_s(self, window_s: float) -> float:
        return self._decayed(time.monotonic(), window_s)

    def _decayed(self, now: float, window_s: float) -> float:
        return self._level * math.exp(-(now - self._at) / window_s)


class WarmPool:
    """Blank session actors, used last in, first out, so what the pool holds beyond its target
    ages and is trimmed. ``limits`` reads the directory's policy (it changes at run time);
    ``reuse`` frees a process another way when the pool is empty (the directory passivates an idle
    chat on a node at its cap); ``spawn`` runs the pool's background work."""

    def __init__(self, settings: Settings, directory: DirectoryHandle, name_prefix: str, limits: Callable[[], PoolLimits],
                 reuse: Callable[[], Awaitable[SessionProcess | None]], spawn: Spawn,
                 counters: Counter[str]) -> None:
        self.settings = settings
        self.directory = directory
        self.limits = limits
        self.name_prefix = name_prefix
        self._reuse = reuse
        self._spawn = spawn
        self.counters = counters
        self.arrivals = ArrivalRate()
        self.boot_s = BOOT_GUESS_S
        self._blank: list[SessionProcess] = []
        self._waiters: deque[asyncio.Future[SessionProcess]] = deque()  # takes that found it empty
        self._booting = 0
        self._boots: set[asyncio.Task[None]] = set()
        self._trim_task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._blank)

    def node_ids(self) -> list[str]:
        return [process.node_id for process in self._blank]

    def arrivals_per_s(self) -> float:
        return self.arrivals.per_s(self.limits().window_s)

    def target(self) -> int:
        """How many blank actors the pool is refilled to now."""
        limits = self.limits()
        demand = math.ceil(self.arrivals.per_s(limits.window_s) * self.boot_s * HEADROOM)
        return max(limits.floor, min(demand, limits.ceiling))

    def arrived(self) -> None:
        """An activation is under way: it counts towards the arrival rate."""
        self.arrivals.note(self.limits().window_s)

    async def take(self) -> tuple[SessionProcess, Literal["warm", "cold"]]:
        """A blank actor, and whether it was ready ("warm") or had to be booted first ("cold")."""
        if self._blank:
            process = self._blank.pop()
            self.refill()
            return process, "warm"
        freed = await self._reuse()
        if freed is not None:
            self.refill()
            return freed, "warm"
        self.counters["cold_starts"] += 1
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.refill()
        return await waiter, "cold"

    def refill(self) -> None:
        """Start what the pool and the takes waiting on it lack, beyond what is booting already."""
        waiting = sum(not waiter.done() for waiter in self._waiters)
        for _ in range(self.target() + waiting - len(self._blank) - self._booting):
            self._booting += 1
            boot = self._spawn(self._boot())
            self._boots.add(boot)
            boot.add_done_callback(self._boots.discard)

    async def filled(self) -> int:
        """Start what the pool lacks and wait for every boot under way; returns the pool's size."""
        self.refill()
        while self._boots:
            await asyncio.wait(set(self._boots))
        return len(self._blank)

    async def _boot(self) -> None:
        began = time.monotonic()
        try:
            # Detached and named, not owned by the directory shard: a shard that dies takes no chat
            # with it, and its next life finds its sessions by their names (SessionDirectory._adopt).
            handle = ChatSession.options(name=f"{self.name_prefix}{uuid.uuid4().hex}", namespace=NAMESPACE,
                                         lifetime="detached", scheduling_strategy="SPREAD"
                                         ).remote(self.settings, self.directory)
            process = SessionProcess(handle, await handle.prepare.remote())
        except Exception as error:
            self._booting -= 1
            log.warning("a warm-pool session actor failed to start: %s", error)
            if (waiter := self._next_waiter()) is not None:
                waiter.set_exception(error)  # as if it had started its own process, and that failed
            return
        self._booting -= 1
        self.counters["processes_started"] += 1
        self.boot_s += BOOT_WEIGHT * (time.monotonic() - began - self.boot_s)
        self.recycle(process)

    def _next_waiter(self) -> asyncio.Future[SessionProcess] | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled take leaves its future behind
                return waiter
        return None

    def recycle(self, process: SessionProcess) -> None:
        """A blank actor goes to the longest waiting take, or (back) into the pool."""
        if (waiter := self._next_waiter()) is not None:
            waiter.set_result(process)
            return
        process.pooled_at = time.monotonic()
        self._blank.append(process)
        if self._trim_task is None or self._trim_task.done():
            self._trim_task = self._spawn(self._trim())

    async def _trim(self) -> None:
        while len(self._blank) > self.limits().floor:
            await asyncio.sleep(TRIM_EVERY_S)
            cutoff = time.monotonic() - self.limits().window_s
            while len(self._blank) > self.target() and self._blank[0].pooled_at < cutoff:
                ray.kill(self._blank.pop(0).handle)

    def reconfigured(self) -> None:
        """The policy changed: what is beyond the new target is ended at once, what is missing started."""
        while len(self._blank) > self.target():
            ray.kill(self._blank.pop(0).handle)
        self.refill()

    def forget_lost(self, alive_nodes: set[str]) -> None:
        """Forget the blank actors on nodes that are no longer alive, and start their replacements."""
        lost = [process for process in self._blank if process.node_id not in alive_nodes]
        if lost:
            self._blank = [process for process in self._blank if process.node_id in alive_nodes]
            self.counters["pool_lost"] += len(lost)
            self.refill()
