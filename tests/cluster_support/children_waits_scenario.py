"""Waiting parents on a three-raylet cluster (the head, a worker, and a worker offering the custom
resource ``generator``), with the cluster-wide cap ``max_running_children`` set to 3.

1. **cap**: two parents fan out to four askers each (the first with ``max_children: 2``); the user
   answers whichever child asks, one at a time, until all eight ended. Each child's run interval
   (its log's run_start to run_complete, inside the time it held its slot) is reported.
2. **generator**: a parent fans out to two ``fo_child_gen`` children, whose tool asks for
   ``generator``; each child's result names the node its tool ran on.
3. **sigkill**: a parent waits for four askers; its session process is SIGKILLed; the directory
   re-activates it; the user answers the children and the parent completes.
4. **restart**: a parent waits for four askers; the runtime stops and the whole cluster shuts
   down (every process); a new cluster and runtime start on the same store; the user answers the
   children and the parent completes.

Prints one JSON document; tests/test_children_cluster.py asserts on it.
``python -m tests.cluster_support.children_waits_scenario WORKDIR`` (through tests/cluster_support/runner.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ray.cluster_utils import Cluster

from mozaiks.client import BrokerClient
from mozaiks.settings import Settings
from tests.children_support import (
    ASKING, data, eventually, events_of, fan_out_to_askers, reactivated, run_ended, write_children,
    write_generator_child, write_parent,
)
from tests.cluster_support.children_scenario import answer
from tests.cluster_support.cluster_runtime import runtime_on
from tests.cluster_support.multinode_scenario import APP_ID, FAST_FAILURE_DETECTION, scenario_settings, user_token

CAP = 3
USER = "waiting-parent-user"


def start_cluster() -> tuple[Cluster, dict[str, str]]:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": False, "_system_config": FAST_FAILURE_DETECTION})
    nodes = {"head": cluster.head_node, "worker": cluster.add_node(num_cpus=1),
             "generator": cluster.add_node(num_cpus=1, resources={"generator": 2})}
    cluster.wait_for_nodes()
    return cluster, {name: node.node_id for name, node in nodes.items()}


def runtime_settings(workdir: Path) -> Settings:
    workflows = workdir / "workflows"
    write_children(workflows)
    write_generator_child(workflows)
    write_parent(workflows, "fo_parent_capped", ASKING, {"merge_mode": "collect_all"}, {"max_children": 2})
    write_parent(workflows, "fo_parent_uncapped", ASKING, {"merge_mode": "collect_all"})
    write_parent(workflows, "fo_parent_gen", [{"workflow": "fo_child_gen", "key": f"g{i}"} for i in range(2)],
                 {"merge_mode": "collect_all"})
    return scenario_settings(workdir, warm_pool_size=2, max_running_children=CAP)


async def started(broker: BrokerClient, parents: list[str]) -> list[str]:
    return [e["data"]["child_chat_id"] for p in parents for e in await events_of(broker, p, "chat.child_started")]


async def answer_as_they_ask(broker: BrokerClient, parents: list[str], count: int) -> dict[str, Any]:
    """Answer the parents' children one at a time, whichever asks, until ``count`` ended; then wait
    for the parents' runs to end. Also the most children started and not yet answered at once."""
    answered: list[str] = []
    most_running = 0
    while len(answered) < count:
        async def asking() -> str | None:
            for child in await started(broker, parents):
                if child not in answered and await events_of(broker, child, "chat.input_request"):
                    return child
            return None
        child = await eventually(asking, timeout=120)
        most_running = max(most_running, len(await started(broker, parents)) - len(answered))
        assert await answer(broker, child) == "completed", child
        answered.append(child)
    return {"answered": answered, "most_running": most_running,
            "parent_logs": [await run_ended(broker, p) for p in parents],
            "child_logs": {c: await events_of(broker, c) for c in answered}}


async def capped(broker: BrokerClient) -> dict[str, Any]:
    parents = []
    for workflow in ("fo_parent_capped", "fo_parent_uncapped"):
        session = await broker.create_session(workflow)
        async with await broker.connect(session) as conn:
            await conn.say("split the work")
        parents.append(session.chat_id)
    result = await answer_as_they_ask(broker, parents, 8)
    return {"parents": parents, **result}


async def on_generators(broker: BrokerClient) -> dict[str, Any]:
    session = await broker.create_session("fo_parent_gen")
    async with await broker.connect(session) as conn:
        await conn.say("build")
    log = await run_ended(broker, session.chat_id)
    [merged] = [d["value"] for d in data(log, "context_update") if d["variable"] == "child_results"]
    return {"parent_log": log, "merged": merged}


async def sigkilled(info: Any, broker: BrokerClient) -> dict[str, Any]:
    parent, _ = await fan_out_to_askers(broker, "fo_parent_uncapped", CAP)  # the fourth waits for a slot
    old = await info.directory.session(APP_ID, USER, parent)
    old_pid = await old.pid()
    os.kill(old_pid, signal.SIGKILL)
    new_pid = await reactivated(info.directory, parent, old_pid, timeout=120)
    return {"parent": parent, "old_pid": old_pid, "new_pid": new_pid,
            **await answer_as_they_ask(broker, [parent], len(ASKING))}


async def first_run(info: Any, nodes: dict[str, str]) -> dict[str, Any]:
    async with BrokerClient(info.http_url, user_token(USER), timeout_s=120) as broker:
        result = {"nodes": nodes, "cap": await capped(broker), "generator": await on_generators(broker),
                  "sigkill": await sigkilled(info, broker)}
        parent, _ = await fan_out_to_askers(broker, "fo_parent_uncapped", CAP)
        rows = {r["chat_id"]: r for r in (await broker.list_sessions(limit=100))["sessions"]}
        result["restart"] = {"parent": parent, "phase": rows[parent]["phase"]}
        return result


async def after_restart(info: Any, parent: str) -> dict[str, Any]:
    async with BrokerClient(info.http_url, user_token(USER), timeout_s=120) as broker:
        return await answer_as_they_ask(broker, [parent], len(ASKING))


def main(workdir: Path) -> None:
    settings = runtime_settings(workdir)
    cluster, nodes = start_cluster()
    with runtime_on(cluster, settings) as info:
        result = asyncio.run(first_run(info, nodes))
    # Every process of the first cluster is gone now; only the store (SQLite in data_dir) remains.
    cluster, _ = start_cluster()
    with runtime_on(cluster, settings) as info:
        restart = result["restart"]
        restart.update(asyncio.run(after_restart(info, restart["parent"])))
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
