"""The EventHub's bursts: what a poll is answered with, and when."""

from __future__ import annotations

import asyncio
import time

from actors.event_hub import LINGER_S, EventHub


async def test_a_publish_with_more_coming_waits_for_what_follows() -> None:
    hub = EventHub()
    poll = asyncio.create_task(hub.wait(0, timeout=5))
    hub.publish(1, "announcement", more_coming=True)
    await asyncio.sleep(LINGER_S / 4)
    assert not poll.done(), "a burst that says more follows is not answered yet"
    hub.publish(2, "reply")
    items, offset, gap = await poll
    assert [seq for seq, _ in items] == [1, 2] and offset == 2 and not gap


async def test_a_publish_with_more_coming_is_answered_within_the_linger() -> None:
    hub = EventHub()
    hub.publish(1, "announcement", more_coming=True)  # before the poll: it still waits for the rest
    began = time.monotonic()
    items, _, _ = await hub.wait(0, timeout=5)
    assert [seq for seq, _ in items] == [1]
    assert time.monotonic() - began < LINGER_S + 0.5


async def test_a_plain_publish_answers_at_once() -> None:
    hub = EventHub()
    hub.publish(1, "event")
    began = time.monotonic()
    items, _, _ = await hub.wait(0, timeout=5)
    assert [seq for seq, _ in items] == [1] and time.monotonic() - began < LINGER_S
