"""Child chats: 20 children of a short scripted workflow in parallel vs the same 20 one at a time,
on one node and on a 3-node local cluster (``ray.cluster_utils.Cluster``: the head and two
workers), in the same run.

A parent's Planner fans out to ``CHILDREN`` children of ``bench_child``, whose one agent streams a
scripted reply for ``CHILD_WORK_S`` (a stand-in for a model's latency, which is what running
children side by side hides). The parallel parent starts them all at once (``max_children: 0``),
the sequential one one at a time (``max_children: 1``) — same workflows, same runtime, same run.
Measured at the client: the parent's user message sent → its ``chat.children_merged`` received.
The warm pool is sized for the children, so no child waits for a process to boot.

Reported for each setup: median and spread of ``RUNS`` runs each; speed-up; per-child overhead
(the sequential wall time per child beyond its scripted work); child activations per second in
the parallel run; the machine's load before and after. Exits non-zero when a setup's median
speed-up misses ``TARGET_SPEEDUP``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import Runtime, report, runtime
from tests.cluster_support.cluster_runtime import local_cluster

CHILDREN, RUNS, TARGET_SPEEDUP = 20, 3, 5.0
CHUNKS, CHUNK_DELAY_S = 20, 0.05
CHILD_WORK_S = CHUNKS * CHUNK_DELAY_S
POOL = CHILDREN + 2  # the children and both parents


def _write(folder: Path, files: dict[str, Any]) -> None:
    for name, body in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body))


def write_workflows(root: Path) -> None:
    _write(root / "bench_child", {
        "orchestrator.json": {"name": "bench_child", "startup_mode": "UserDriven", "human_in_the_loop": False},
        "agents.json": {"agents": [{"name": "Worker", "model": {
            "provider": "scripted", "params": {"stream_chunk_chars": 1, "stream_delay_s": CHUNK_DELAY_S},
            "script": [{"text": "x" * CHUNKS}]}}]},
    })
    children = [{"workflow": "bench_child", "key": f"c{i}"} for i in range(CHILDREN)]
    for name, max_children in (("bench_children_parallel", 0), ("bench_children_sequential", 1)):
        _write(root / name, {
            "orchestrator.json": {"name": name, "startup_mode": "UserDriven", "initial_agent": "Planner",
                                  "human_in_the_loop": False},
            "agents.json": {"agents": [
                {"name": "Planner", "structured_output": "Split",
                 "model": {"provider": "scripted", "script": [{"structured": {"children": children}}]}},
                {"name": "Reporter", "model": {"provider": "scripted", "script": [{"text": "done"}]}}]},
            "handoffs.json": {"handoff_rules": [
                {"source_agent": "Reporter", "target_agent": "terminate", "handoff_type": "after_work"}]},
            "structured_outputs.json": {"models": {"Split": {"type": "object", "required": ["children"]}}},
            "_pack/workflow_graph.json": {"version": 3, "mid_flight_journeys": [{
                "id": "bench", "trigger_agent": "Planner", "fan_out": {"max_children": max_children},
                "fan_in": {"resume_agent": "Reporter", "merge_mode": "concatenate"}}]},
        })


async def _fan_out(rt: Runtime, workflow: str, user: str) -> tuple[float, int]:
    """Wall seconds from the message to the merge, and how many children completed."""
    async with rt.broker(user) as broker:
        session = await broker.create_session(workflow)
        async with await broker.connect(session, last_seq=None) as conn:
            began = time.perf_counter()
            await conn.say("go")
            merged = await conn.wait_for("chat.children_merged", timeout=300)
            wall = time.perf_counter() - began
            await conn.wait_for("chat.run_complete", timeout=60)
    return wall, int(merged["data"]["completed"])


def _spread(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "runs": [round(v, 3) for v in values]}


async def measure(rt: Runtime) -> dict[str, Any]:
    write_workflows(rt.settings.workflows_dir)
    load_before = os.getloadavg()[0]
    await _fan_out(rt, "bench_children_parallel", "warm-up")  # the pool has its processes, the files are parsed
    parallel, sequential, rates = [], [], []
    for run in range(RUNS):
        before = (await rt.directory().stats()).count("activations")
        wall, done = await _fan_out(rt, "bench_children_parallel", f"parallel-{run}")
        activations = (await rt.directory().stats()).count("activations") - before
        assert done == CHILDREN, f"only {done} of {CHILDREN} children completed"
        parallel.append(wall)
        rates.append(activations / wall)
        wall, done = await _fan_out(rt, "bench_children_sequential", f"sequential-{run}")
        assert done == CHILDREN, f"only {done} of {CHILDREN} children completed"
        sequential.append(wall)
    speedups = [s / p for s, p in zip(sequential, parallel, strict=True)]
    speedup = statistics.median(speedups)
    overhead_ms = (statistics.median(sequential) / CHILDREN - CHILD_WORK_S) * 1000
    return {"parallel": _spread(parallel), "sequential": _spread(sequential), "speedup_median": round(speedup, 2),
            "speedup_runs": [round(s, 2) for s in speedups], "per_child_overhead_ms": round(overhead_ms, 1),
            "activations_per_s_median": round(statistics.median(rates), 1), "met": speedup >= TARGET_SPEEDUP,
            "placement": (await rt.directory().stats()).per_node,
            "load_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}}


def one_node() -> dict[str, Any]:
    with runtime(warm_pool_size=POOL) as rt:
        return asyncio.run(measure(rt))


def three_nodes() -> dict[str, Any]:
    # Eight logical CPUs in all, as the one-node runtime has; session actors spread over the nodes.
    cluster, _ = local_cluster({"num_cpus": 4, "include_dashboard": False}, [{"num_cpus": 2}] * 2)
    try:
        with runtime(address=cluster.address, warm_pool_size=POOL) as rt:
            result = asyncio.run(measure(rt))
        result["nodes"] = 3
        return result
    finally:
        cluster.shutdown()


def main() -> bool:
    setups = {"1 node": one_node()}
    print(json.dumps({"1 node": setups["1 node"]}), flush=True)  # kept if the cluster cannot start
    setups["3 nodes"] = three_nodes()
    rows: list[list[Any]] = []
    for label, key in ((f"{CHILDREN} children in parallel, wall s (median)", "parallel"),
                       (f"{CHILDREN} children one at a time, wall s (median)", "sequential")):
        rows += [[label, setup, r[key]["median_s"], f"{r[key]['min_s']}–{r[key]['max_s']}"]
                 for setup, r in setups.items()]
    rows += [["speed-up (median of the runs' ratios)", setup, r["speedup_median"],
              f"{min(r['speedup_runs']):.2f}–{max(r['speedup_runs']):.2f}"] for setup, r in setups.items()]
    rows += [["per-child overhead beyond its work, ms", setup, r["per_child_overhead_ms"], ""]
             for setup, r in setups.items()]
    rows += [["child activations per second (parallel)", setup, r["activations_per_s_median"], ""]
             for setup, r in setups.items()]
    rows += [["machine load (1 min) before → after", setup, f"{r['load_1m']['before']} → {r['load_1m']['after']}", ""]
             for setup, r in setups.items()]
    met = all(r["met"] for r in setups.values())
    results = {"children": CHILDREN, "child_work_s": CHILD_WORK_S, "target_speedup": TARGET_SPEEDUP,
               "setups": setups, "met": met}
    report("children", "Child chats: parallel vs sequential fan-out, one node and a 3-node cluster",
           ["case", "setup", "value", "spread (min–max)"], rows, results,
           notes=[f"each child streams a scripted reply for {CHILD_WORK_S:g} s; {RUNS} runs of each, per setup",
                  "wall: the parent's message sent → chat.children_merged received, at the client",
                  "3 nodes: ray.cluster_utils.Cluster on this machine (head 4 CPUs + 2 workers of 2), 8 as the 1 node",
                  f"target: ≥ {TARGET_SPEEDUP:g}× on each setup ({'met' if met else 'MISSED'})"])
    return met


if __name__ == "__main__":
    # A private Ray temp dir: the cluster's address file stays out of the shared /tmp/ray, where
    # another process's bare ray.init() would find and join it.
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="mzk-bench-"))
    sys.exit(0 if main() else 1)
