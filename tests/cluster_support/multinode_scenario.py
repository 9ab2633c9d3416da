"""The runtime on a multi-node Ray cluster on this one machine, driven by Python clients.

Three raylets (``ray.cluster_utils.Cluster``): the head and two worker nodes that offer the custom
resource ``generator``. Ten chats of the ``cluster_lab`` test workflow run at once;
while their heavy tool calls run, generator node 1 is killed (its raylet and every process on it).
Prints one JSON document describing what happened; tests/test_cluster_multinode.py asserts on it.

It is a separate program because a process can join only one Ray cluster and the test session has
joined its own. ``python -m tests.cluster_support.multinode_scenario WORKDIR``; run it with
``RAY_TMPDIR`` set to a private directory so the cluster's files stay out of the shared /tmp/ray.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import jwt
from pydantic import SecretStr
from ray.cluster_utils import Cluster
from websockets.exceptions import WebSocketException

from mozaiks.client import BrokerClient, ChatClosed, ChatConnection, Session
from mozaiks.settings import Settings
from tests.cluster_support.cluster_runtime import local_cluster, runtime_on
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
CHATS = 10
APP_ID = "cluster-app"
USER_SECRET = "cluster-user-secret-0123456789abcdef0123456789ab"
# Ray declares a node dead after missing health checks (default: 5 × 3 s, plus timeouts); a test
# does not need to wait that long to watch what happens next.
FAST_FAILURE_DETECTION = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                          "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}


def start_cluster() -> tuple[Cluster, dict[str, Any]]:
    cluster, (gen1, gen2) = local_cluster(
        {"num_cpus": 2, "include_dashboard": False, "_system_config": FAST_FAILURE_DETECTION},
        [{"num_cpus": 1, "resources": {"generator": 4}}] * 2)
    return cluster, {"head": cluster.head_node, "gen1": gen1, "gen2": gen2}


def scenario_settings(workdir: Path, **overrides: Any) -> Settings:
    """A local runtime on a free port with the scenarios' app and secrets, serving what
    ``workdir/workflows`` holds. No chat passivates on its own: what these scenarios count (placement,
    residency, children) must not change while creates crawl through a loaded cluster."""
    values: dict[str, Any] = {"mode": "local", "data_dir": workdir / "data", "workflows_dir": workdir / "workflows",
                              "port": free_port(), "default_app_id": APP_ID,
                              "user_jwt_secret": SecretStr(USER_SECRET),
                              "runtime_token_secret": SecretStr(USER_SECRET[::-1]), "idle_timeout_s": 300.0}
    return Settings(**{**values, **overrides})


def copy_workflow(workdir: Path, name: str) -> None:
    shutil.copytree(REPO / "tests" / "workflows" / name, workdir / "workflows" / name)


def runtime_settings(workdir: Path) -> Settings:
    copy_workflow(workdir, "cluster_lab")
    return scenario_settings(workdir, warm_pool_size=2)


def user_token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "app_id": APP_ID, "iat": now, "exp": now + 900}, USER_SECRET, algorithm="HS256")


class ChatDriver:
    """One user's chat: send one message, read until the run completes, reconnect after drops
    (resuming after the last durable event it saw, as any client should)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.seen: list[int] = []
        self.acks: list[dict[str, Any]] = []
        self.reconnects = 0
        self.crunching = asyncio.Event()

    async def run(self, deadline_s: float) -> str:
        async with asyncio.timeout(deadline_s):
            conn = await self._connect(0)
            self.acks.append(await conn.say("go", message_id=f"go-{self.session.chat_id}"))
            while True:
                try:
                    event = await conn.next_event(timeout=None)
                except ChatClosed:
                    conn = await self._reconnect()
                    continue
                if event["seq"] is not None:
                    self.seen.append(event["seq"])
                if event["type"] == "chat.tool_call" and event["data"]["name"] == "crunch":
                    self.crunching.set()
                if event["type"] == "chat.run_complete":
                    await conn.close()
                    return str(event["data"]["status"])

    async def _connect(self, last_seq: int) -> ChatConnection:
        return await ChatConnection.open(self.session.ws_url, self.session.runtime_token, last_seq=last_seq)

    async def _reconnect(self) -> ChatConnection:
        self.reconnects += 1
        while True:  # the ingress replica may be moving to another node: retry until the deadline
            try:
                return await self._connect(self.seen[-1] if self.seen else 0)
            except (OSError, TimeoutError, ChatClosed, WebSocketException):
                await asyncio.sleep(0.5)


def started_on(markers: Path, node_id: str) -> list[str]:
    """Marker files of heavy tool runs that started on ``node_id`` (each sleeps 2 s once started,
    so the first one found is still running a moment later)."""
    return [p.name for p in markers.iterdir()
            if p.name.split(".")[0] in ("crunch", "once") and p.read_text() == node_id]


def tool_runs(markers: Path) -> dict[str, dict[str, list[str]]]:
    """tool -> chat id -> the node ids of every run (a retried call ran more than once)."""
    runs: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in markers.iterdir():
        tool, chat_id, _ = path.name.split(".")
        runs[tool][chat_id].append(path.read_text())
    return {tool: dict(chats) for tool, chats in runs.items()}


async def check_log(broker: BrokerClient, driver: ChatDriver) -> dict[str, Any]:
    chat_id = driver.session.chat_id
    events = (await broker.events(chat_id, limit=1000))["events"]
    seqs = [e["seq"] for e in events]
    responses: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["type"] == "chat.tool_response":
            result = e["data"].get("result") or {}
            responses[e["data"]["name"]].append({"status": e["data"]["status"], "error": e["data"].get("error"),
                                                 "node_id": result.get("node_id") if isinstance(result, dict) else None})
    return {
        "chat_id": chat_id,
        "log_contiguous": seqs == list(range(1, len(seqs) + 1)),
        "client_saw_log": driver.seen == seqs,
        "acks": [a["status"] for a in driver.acks],
        "user_texts": [e["data"]["content"] for e in events
                       if e["type"] == "chat.text" and e["data"].get("role") == "user"],
        "tool_calls": Counter(e["data"]["name"] for e in events if e["type"] == "chat.tool_call"),
        "tool_responses": responses,
        "run_complete": [e["data"]["status"] for e in events if e["type"] == "chat.run_complete"],
        "reconnects": driver.reconnects,
    }


async def drive(info: Any, cluster: Cluster, nodes: dict[str, Any], markers: Path) -> dict[str, Any]:
    node_ids = {name: node.node_id for name, node in nodes.items()}
    timings: dict[str, float] = {}
    async with BrokerClient(info.http_url, user_token("cluster-user")) as broker:
        started = time.monotonic()
        sessions = await asyncio.gather(*(broker.create_session("cluster_lab") for _ in range(CHATS)))
        timings["create_10_sessions_s"] = time.monotonic() - started
        placement = await info.directory.stats()
        drivers = [ChatDriver(s) for s in sessions]
        runs = [asyncio.create_task(d.run(deadline_s=120)) for d in drivers]

        # Kill generator node 1 once heavy tool calls are running there.
        await asyncio.wait_for(asyncio.gather(*(d.crunching.wait() for d in drivers)), 60)
        async with asyncio.timeout(30):
            while not started_on(markers, node_ids["gen1"]):
                await asyncio.sleep(0.1)
        started_there = started_on(markers, node_ids["gen1"])
        killed_at = time.monotonic()
        cluster.remove_node(nodes["gen1"], allow_graceful=False)
        timings["remove_node_s"] = time.monotonic() - killed_at

        statuses = await asyncio.gather(*runs)
        timings["kill_to_all_complete_s"] = time.monotonic() - killed_at
        chats = [await check_log(broker, d) for d in drivers]
    return {"nodes": node_ids, "sessions_per_node": placement.per_node,
            "started_on_killed_node": started_there, "statuses": statuses, "chats": chats,
            "tool_runs": tool_runs(markers), "directory_after": (await info.directory.stats()).model_dump(),
            "timings": timings}


def main(workdir: Path) -> None:
    markers = workdir / "markers"
    markers.mkdir(parents=True)
    os.environ["MOZAIKS_CLUSTER_LAB_DIR"] = str(markers)  # inherited by every raylet's workers
    timings: dict[str, float] = {}
    started = time.monotonic()
    cluster, nodes = start_cluster()
    timings["cluster_start_s"] = time.monotonic() - started
    started = time.monotonic()
    with runtime_on(cluster, runtime_settings(workdir)) as info:
        timings["runtime_start_s"] = time.monotonic() - started
        result = asyncio.run(drive(info, cluster, nodes, markers))
        result["timings"] = {**timings, **result["timings"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
