"""The warm pool sizes itself to the arrival rate: a burst of chats grows it ahead of demand (bounded
by ``warm_pool_max``), and a quiet period shrinks it back to ``warm_pool_size``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from actors.directory import LEND_IDLE_S
from actors.handles import DirectoryHandle, DirectoryStats
from tests.lifecycle_support import RawSocket, eventually, lifecycle_policy, passivated, user_message

FLOOR, CEILING, BURST = 2, 3, 5


@asynccontextmanager
async def watching(sessions: DirectoryHandle) -> AsyncIterator[list[DirectoryStats]]:
    """The directory's figures every 20 ms while the block runs (the newest last)."""
    seen: list[DirectoryStats] = []

    async def watch() -> None:
        while True:
            seen.append(await sessions.stats())
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher


async def test_a_burst_grows_the_pool_and_a_quiet_period_shrinks_it(broker_for):
    # A short window, so the burst below is a high rate and the quiet after it comes soon; a short
    # keep-alive and no grace for a caller (nobody connects to the burst's chats), so they passivate
    # and their processes come back to the pool too.
    async with lifecycle_policy(warm_pool_size=FLOOR, warm_pool_max=CEILING, warm_pool_window_s=1.0,
                                idle_timeout_s=0.5, activation_grace_s=0.0) as sessions:
        async def quiet() -> bool:
            stats = await sessions.stats()
            return stats.pool_target == FLOOR and stats.pool == FLOOR and stats.resident == 0

        await eventually(quiet, timeout=60, what="the pool to settle at its floor before the burst")
        broker = broker_for("bursty")
        before = await sessions.stats()
        async with watching(sessions) as seen:
            await asyncio.gather(*(broker.create_session("waits") for _ in range(BURST)))

            # Refilled ahead of demand, beyond its floor: the starts the pool could not serve took
            # processes booted for them or given back by chats that passivated, and the pool filled
            # to its ceiling besides.
            async def grown() -> bool:
                return (bool(seen) and seen[-1].pool >= CEILING
                        and seen[-1].count("activations") >= before.count("activations") + BURST
                        and seen[-1].count("processes_started") > before.count("processes_started"))

            await eventually(grown, timeout=90, what="the burst to start and the pool to grow")
        assert max(stats.pool_target for stats in seen) == CEILING  # the rate called for more; capped

        # Quiet: the chats passivate (their processes come back to the pool), the rate decays, and
        # what is beyond the floor is ended once it has gone unused for a window.
        await eventually(quiet, timeout=60, what="the pool to shrink back to its floor")


async def test_a_burst_boots_at_most_the_bound_at_once_and_every_chat_starts(broker_for):
    """A hundred session processes booting at once on two cores made every boot take a minute, so
    the first chat of a burst started as late as the last (bench/chat_load.py). The pool starts at
    most ``warm_pool_max_booting`` at a time and the next as one ends, until every waiting
    activation has its process."""
    chats = 4
    # A short window: processes still booting for the previous policy are ended soon after.
    async with lifecycle_policy(warm_pool_size=0, warm_pool_max=0, warm_pool_max_booting=1, warm_pool_window_s=1.0,
                                idle_timeout_s=0.5, activation_grace_s=0.0) as sessions:
        async def drained() -> bool:
            stats = await sessions.stats()
            return stats.pool == 0 and stats.booting == 0 and stats.resident == 0

        await eventually(drained, timeout=60, what="the pool to empty before the burst")
        before = await sessions.stats()
        broker = broker_for("bounded-boots")
        async with watching(sessions) as seen:
            created = await asyncio.gather(*(broker.create_session("waits") for _ in range(chats)))

            async def all_activated() -> bool:
                return bool(seen) and seen[-1].count("activations") >= before.count("activations") + chats

            await eventually(all_activated, timeout=120, what="every chat of the burst to activate")
        assert len({session.chat_id for session in created}) == chats
        assert max(stats.booting for stats in seen) == 1  # some boots, never two at once


async def test_a_chat_waiting_for_its_user_lends_its_process_to_a_new_chat(broker_for):
    """With no blank process, a new chat takes the process of one whose user has been reading for
    a moment (a boot costs a second of CPU, the reader's re-activation a few milliseconds); the
    reader's socket stays open and its next message is served where it left off."""
    async with lifecycle_policy(warm_pool_size=0, warm_pool_max=0, warm_pool_max_booting=1, warm_pool_window_s=1.0,
                                idle_timeout_s=300.0) as sessions:
        async def alone() -> bool:  # no other chat that could lend instead
            stats = await sessions.stats()
            return stats.resident == 0 and stats.booting == 0

        await eventually(alone, timeout=90, what="earlier tests' chats to passivate")
        broker = broker_for("lends")
        reader = await broker.create_session("waits")
        sock = await RawSocket.open(reader)
        request = await sock.next("chat.input_request")

        async def drained() -> bool:
            stats = await sessions.stats()
            return stats.pool == 0 and stats.booting == 0 and stats.resident == 1

        await eventually(drained, timeout=60, what="the pool to empty")
        await asyncio.sleep(LEND_IDLE_S)  # the condition itself: the reader idle that long
        before = await sessions.stats()
        await broker.create_session("waits")
        after = await sessions.stats()
        assert after.count("lent") == before.count("lent") + 1
        assert after.count("processes_started") == before.count("processes_started")  # no boot
        await passivated(reader.chat_id)

        ack = await sock.send(user_message("launch", input_request_id=request["data"]["request_id"]))
        assert ack["status"] == "accepted"
        await sock.next("chat.tool_call")
        logged = [e["seq"] for e in (await broker.events(reader.chat_id, limit=1000))["events"]]
        assert sock.durable_seqs() == logged == list(range(1, len(logged) + 1))
        await sock.close()
