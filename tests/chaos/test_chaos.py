"""Chaos, bounded for CI: 20 chats of ``chaos_mix`` (tools, one of them not idempotent, a streamed
reply, an input request) run while a seeded random schedule SIGKILLs session actors, the ingress
replica and the directory; then every chat's invariants are checked. The seed and the schedule
are printed (``-s``), and ``MOZAIKS_CHAOS_SEED`` replays one."""

from __future__ import annotations

import asyncio
import os
import random

from actors.handles import DirectoryHandle
from mozaiks.client import BrokerClient
from tests.chaos.chaos_support import ChatDriver, run_schedule, schedule, violations
from tests.conftest import APP_ID, user_token

CHATS = 20
ROUNDS = 3
BOUND_S = 150.0
SPAN_S = 6.0  # kills land in the first seconds: a chat runs 3 s tools, then streams, then asks


async def test_invariants_hold_for_every_chat_through_seeded_kills(runtime, settings, tmp_path):
    seed = int(os.environ.get("MOZAIKS_CHAOS_SEED") or random.randrange(1 << 32))
    plan = schedule(seed, ROUNDS, span_s=SPAN_S)
    print(f"chaos seed={seed} plan={plan}")
    user = "chaos-user"
    async with BrokerClient(runtime.http_url, user_token(user)) as broker:
        drivers = []
        for i in range(CHATS):
            marker = tmp_path / f"unsafe-{i}"
            session = await broker.create_session("chaos_mix", context={"marker": str(marker)})
            drivers.append(ChatDriver(session, marker))
        chats = [asyncio.create_task(d.run()) for d in drivers]
        kills = await run_schedule(plan, drivers, seed)
        print("chaos kills:", "; ".join(map(str, kills)))
        async with asyncio.timeout(BOUND_S):
            await asyncio.gather(*chats)
        broken = {d.session.chat_id: v for d in drivers
                  if (v := await violations(broker, settings.resolved_store_url, APP_ID, user, d))}
    await DirectoryHandle.lookup().ready()  # the tests after this one share the runtime: a warm pool again
    print("chaos reconnects:", sum(d.connections - 1 for d in drivers))
    assert sum(len(k.targets) for k in kills) >= ROUNDS, kills
    assert not broken, f"seed={seed} kills={[str(k) for k in kills]}: {broken}"
