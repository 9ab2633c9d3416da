"""A fan-out on a three-raylet cluster (``ray.cluster_utils.Cluster``: the head and two workers).

A parent chat fans out to eight children that each ask their user a question, so all eight stay
resident at once: where their session actors live is the placement. Then worker node 1 is killed
with its raylet and every process on it; the children (and the parent) that lived there are
re-activated elsewhere from their logs. The user then answers every child; each must end exactly
once and the parent must complete with all eight results. Prints one JSON document;
tests/test_children_cluster.py asserts on it.

``python -m tests.cluster_support.children_scenario WORKDIR`` (through tests/cluster_support/runner.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from ray.cluster_utils import Cluster
from websockets.exceptions import WebSocketException

from mozaiks.client import BrokerClient, BrokerError, ChatClosed
from mozaiks.settings import Settings
from tests.children_support import events_of, fan_out_to_askers, run_ended, write_children, write_parent
from tests.cluster_support.cluster_runtime import runtime_on
from tests.cluster_support.multinode_scenario import FAST_FAILURE_DETECTION, scenario_settings, user_token

CHILDREN = 8
USER = "fan-out-user"


def start_cluster() -> tuple[Cluster, dict[str, Any]]:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": False, "_system_config": FAST_FAILURE_DETECTION})
    nodes = {"head": cluster.head_node, "worker1": cluster.add_node(num_cpus=1), "worker2": cluster.add_node(num_cpus=1)}
    cluster.wait_for_nodes()
    return cluster, nodes


def runtime_settings(workdir: Path) -> Settings:
    workflows = workdir / "workflows"
    write_children(workflows)
    askers = [{"workflow": "fo_child_ask", "key": f"q{i}", "context": {"item": str(i)}} for i in range(CHILDREN)]
    write_parent(workflows, "fo_parent_cluster", askers, {"merge_mode": "collect_all"})
    return scenario_settings(workdir, warm_pool_size=3)


async def answer(broker: BrokerClient, child: str) -> str:
    """Answer the child's question (retrying while the cluster recovers: a socket, the HTTP edge or
    the ingress replica that lived on the killed node); its run's status."""
    async with asyncio.timeout(120):
        while True:
            try:
                opened = await broker.create_session("fo_child_ask", chat_id=child)
                async with await broker.connect(opened) as conn:
                    request = await conn.wait_for("chat.input_request")
                    await conn.say("green", input_request_id=request["data"]["request_id"],
                                   message_id=f"answer-{child}")
                    return str((await conn.wait_for("chat.run_complete"))["data"]["status"])
            except BrokerError as exc:
                if exc.status < 500:
                    raise
                await asyncio.sleep(0.5)  # the ingress is being re-placed after its node died
            except (OSError, TimeoutError, ChatClosed, WebSocketException, httpx.TransportError, json.JSONDecodeError):
                await asyncio.sleep(0.5)  # the connection went down with the killed node


async def drive(info: Any, cluster: Cluster, nodes: dict[str, Any]) -> dict[str, Any]:
    node_ids = {name: node.node_id for name, node in nodes.items()}
    async with BrokerClient(info.http_url, user_token(USER), timeout_s=120) as broker:
        parent, children = await fan_out_to_askers(broker, "fo_parent_cluster", CHILDREN)
        placement = (await info.directory.stats()).per_node  # the parent and its waiting children
        killed_at = time.monotonic()
        cluster.remove_node(nodes["worker1"], allow_graceful=False)
        statuses = await asyncio.gather(*(answer(broker, c) for c in children))
        parent_log = await run_ended(broker, parent)
        return {"nodes": node_ids, "placement": placement, "statuses": statuses,
                "kill_to_parent_done_s": round(time.monotonic() - killed_at, 2),
                "parent_log": parent_log, "child_logs": {c: await events_of(broker, c) for c in children},
                "directory": (await info.directory.stats()).model_dump()}


def main(workdir: Path) -> None:
    cluster, nodes = start_cluster()
    with runtime_on(cluster, runtime_settings(workdir)) as info:
        result = asyncio.run(drive(info, cluster, nodes))
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
