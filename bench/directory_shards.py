"""Activations per second with 1 vs 4 directory shards, on a 3-node local cluster, in the same run.

Each setup gets its own ``ray.cluster_utils.Cluster`` (the head and two workers of 2 CPUs; the
shard count is fixed for a runtime's life) and ``CHATS`` chats of ``bench_chat``. A run lets every
chat passivate (idle ``IDLE_S``; its process goes back to the warm pool, which keeps them all:
``warm_pool_window_s`` is longer than the benchmark), then re-activates all of them at once through
the directory, as a socket's connect or a broker call does (``DirectoryHandle.session``): the
activations per second of that burst, with no process booted during it (``cold_starts`` says if
one was). Then, for the directory alone, ``LOOKUPS`` rounds of ``peek`` over the resident chats:
the shards' own rate, no session involved. ``RUNS`` runs per setup; median and spread of each;
the CPU each directory shard spent per activation (what bounds one shard: 1,000 ms divided by it);
the machine's load before and after.

Target (non-zero exit when missed): 4 shards activate at least ``TARGET_RATIO`` times as fast as 1
shard. On this two-core machine every process of the three "nodes" shares the same two cores, and
an activation's CPU is mostly the session's (store claim, log load, engine build), not the
directory's: more shards cannot raise the rate here, so the target is that sharding costs nothing
within the noise of a shared machine. The shard CPU per activation shows where one shard would
saturate on real machines.

    python -m bench.directory_shards
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from bench.harness import APP_ID, Runtime, cpu_between, cpu_seconds, report, runtime
from tests.cluster_support.cluster_runtime import local_cluster

SHARD_SETUPS, CHATS, RUNS, IDLE_S, LOOKUPS = (1, 4), 24, 3, 4.0, 10
TARGET_RATIO = 0.8
USER = "shards-bench"


def _spread(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "runs": [round(v, 2) for v in values]}


async def _all_passivated(rt: Runtime) -> None:
    async with asyncio.timeout(120):
        while (await rt.directory().stats()).resident:
            await asyncio.sleep(0.2)


async def measure(rt: Runtime, shards: int) -> dict[str, Any]:
    directory = rt.directory()
    async with rt.broker(USER) as broker:
        chats = [s.chat_id for s in await asyncio.gather(*(broker.create_session("bench_chat") for _ in range(CHATS)))]
    load_before = os.getloadavg()[0]
    rates, lookup_rates, cold, shard_ms = [], [], [], []
    for _ in range(RUNS):
        await _all_passivated(rt)
        before, cpu_before = await directory.stats(), cpu_seconds()
        began = time.perf_counter()
        sessions = await asyncio.gather(*(directory.session(APP_ID, USER, chat) for chat in chats))
        wall = time.perf_counter() - began
        cpu_after, after = cpu_seconds(), await directory.stats()
        assert all(sessions), "a chat was not found"
        activations = after.count("activations") - before.count("activations")
        assert activations == CHATS, f"{activations} activations for {CHATS} chats"
        rates.append(CHATS / wall)
        cold.append(after.count("cold_starts") - before.count("cold_starts"))
        shard_ms.append(cpu_between(cpu_before, cpu_after, CHATS).get("directory", 0.0))
        began = time.perf_counter()
        for _ in range(LOOKUPS):
            await asyncio.gather(*(directory.peek(chat) for chat in chats))
        lookup_rates.append(LOOKUPS * CHATS / (time.perf_counter() - began))
    stats = await directory.stats()
    return {"shards": shards, "chats": CHATS, "activations_per_s": _spread(rates),
            "peek_lookups_per_s": _spread(lookup_rates), "cold_starts_during_bursts": cold,
            "directory_cpu_ms_per_activation": _spread(shard_ms),
            "resident_per_shard_last_run": [s.resident for s in stats.shards],
            "load_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}}


def setup(shards: int) -> dict[str, Any]:
    cluster, _ = local_cluster({"num_cpus": 2, "include_dashboard": False}, [{"num_cpus": 2}] * 2)
    try:
        with runtime(address=cluster.address, directory_shards=shards, idle_timeout_s=IDLE_S, warm_pool_size=2,
                     warm_pool_max=CHATS, warm_pool_window_s=3600.0, max_resident_sessions=1000) as rt:
            return asyncio.run(measure(rt, shards))
    finally:
        cluster.shutdown()


def main() -> bool:
    setups = {shards: setup(shards) for shards in SHARD_SETUPS}
    one, four = setups[1], setups[4]
    ratio = four["activations_per_s"]["median"] / one["activations_per_s"]["median"]
    met = ratio >= TARGET_RATIO
    rows: list[list[Any]] = []
    for label, key in ((f"activations per second ({CHATS} at once), median", "activations_per_s"),
                       ("peek lookups per second (directory only), median", "peek_lookups_per_s"),
                       ("directory CPU ms per activation, median", "directory_cpu_ms_per_activation")):
        rows += [[label, f"{n} shard{'s' if n > 1 else ''}", r[key]["median"], f"{r[key]['min']}–{r[key]['max']}"]
                 for n, r in setups.items()]
    rows += [["machine load (1 min) before → after", f"{n} shard{'s' if n > 1 else ''}",
              f"{r['load_1m']['before']} → {r['load_1m']['after']}", ""] for n, r in setups.items()]
    results = {"setups": {str(n): r for n, r in setups.items()}, "ratio_4_to_1": round(ratio, 2),
               "target_ratio": TARGET_RATIO, "met": met}
    report("directory_shards", "Directory shards: activations per second, 1 vs 4 shards, 3-node local cluster",
           ["case", "setup", "value", "spread (min–max)"], rows, results,
           notes=[f"{RUNS} runs per setup; each: {CHATS} passivated chats re-activated at once through the directory "
                  "(warm pool holds their processes: cold starts per burst "
                  f"{one['cold_starts_during_bursts']} / {four['cold_starts_during_bursts']})",
                  "3 nodes: ray.cluster_utils.Cluster on this 2-core machine (head 2 CPUs + 2 workers of 2); "
                  "shards placed off the head",
                  f"4 shards / 1 shard = {ratio:.2f}; target ≥ {TARGET_RATIO:g} ({'met' if met else 'MISSED'})"])
    return met


if __name__ == "__main__":
    # A private Ray temp dir: the cluster's address file stays out of the shared /tmp/ray.
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="mzk-bench-"))
    sys.exit(0 if main() else 1)
