"""The warm pool sizes itself to the arrival rate: a burst of chats grows it ahead of demand (bounded
by ``warm_pool_max``), and a quiet period shrinks it back to ``warm_pool_size``."""

from __future__ import annotations

import asyncio

from actors.handles import DirectoryStats
from tests.lifecycle_support import eventually, lifecycle_policy

FLOOR, CEILING, BURST = 2, 3, 5


async def test_a_burst_grows_the_pool_and_a_quiet_period_shrinks_it(broker_for):
    # A short window, so the burst below is a high rate and the quiet after it comes soon; a short
    # keep-alive and no grace for a caller (nobody connects to the burst's chats), so they passivate
    # and their processes come back to the pool too.
    async with lifecycle_policy(warm_pool_size=FLOOR, warm_pool_max=CEILING, warm_pool_window_s=3.0,
                                idle_timeout_s=0.5, activation_grace_s=0.0) as sessions:
        async def quiet() -> bool:
            stats = await sessions.stats()
            return stats.pool_target == FLOOR and stats.pool == FLOOR and stats.resident == 0

        await eventually(quiet, timeout=60, what="the pool to settle at its floor before the burst")
        seen: list[DirectoryStats] = []
        watching = True

        async def watch() -> None:
            while watching:
                seen.append(await sessions.stats())
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        broker = broker_for("bursty")
        before = await sessions.stats()
        await asyncio.gather(*(broker.create_session("waits") for _ in range(BURST)))
        # Refilled ahead of demand, beyond its floor: a process for each start the pool could not
        # serve, and the pool filled to its ceiling besides.
        wanted = before.count("processes_started") + (BURST - FLOOR) + CEILING

        async def grown() -> bool:
            return bool(seen) and seen[-1].count("processes_started") >= wanted

        try:
            await eventually(grown, timeout=90, what="the pool to boot its replacements and grow")
        finally:
            watching = False
            await watcher
        assert max(stats.pool_target for stats in seen) == CEILING  # the rate called for more; capped
        assert seen[-1].count("activations") >= before.count("activations") + BURST

        # Quiet: the chats passivate (their processes come back to the pool), the rate decays, and
        # what is beyond the floor is ended once it has gone unused for a window.
        await eventually(quiet, timeout=60, what="the pool to shrink back to its floor")
