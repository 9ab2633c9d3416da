"""An installed workflow on a two-node cluster: installed over HTTP while the runtime runs, then
started by chats whose session actors spread over both nodes and whose tool must run on the worker
node, which has a temp directory of its own (so no folder any other node wrote is visible there).

``python -m tests.cluster_support.install_scenario WORKDIR``, through tests.cluster_support.runner.
Prints one JSON document; tests/test_workflow_install_cluster.py asserts on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from ray.cluster_utils import Cluster

from mozaiks.client import BrokerClient
from mozaiks.settings import Settings
from tests.cluster_support.cluster_runtime import runtime_on
from tests.cluster_support.multinode_scenario import APP_ID, USER_SECRET, user_token
from tests.conftest import free_port

CHATS = 4
SERVICE = "cluster-service-credential-0123456789abcdef"
NAME = "installed_on_cluster"
TOOL = '''import os
import tempfile

import ray


def where() -> dict:
    return {"node_id": ray.get_runtime_context().get_node_id(), "file": __file__,
            "tmp": tempfile.gettempdir(), "pid": os.getpid()}
'''
FILES: dict[str, Any] = {
    "orchestrator.json": {"name": NAME, "startup_mode": "AgentDriven", "initial_agent": "Worker", "max_turns": 4},
    "agents.json": {"agents": [{"name": "Worker", "system_message": "Call where.", "tools": ["where"], "model": {
        "provider": "scripted", "script": [{"tool_calls": [{"name": "where", "arguments": {}}]}, {"text": "done"}]}}]},
    "handoffs.json": {"handoff_rules": [{"source_agent": "Worker", "target_agent": "terminate",
                                         "handoff_type": "after_work"}]},
    "tools.json": {"tools": [{"name": "where", "description": "Where it ran", "file": "where.py", "agents": ["Worker"],
                              "execution": {"num_cpus": 0.1, "resources": {"generator": 1}}}]},
}


async def drive(http_url: str, worker_tmp: Path) -> dict[str, Any]:
    files = {**{path: json.dumps(content) for path, content in FILES.items()}, "tools/where.py": TOOL}
    async with httpx.AsyncClient(base_url=http_url, timeout=60) as http:
        installed = await http.put(f"/api/runtime/workflows/{NAME}", headers={"Authorization": f"Bearer {SERVICE}"},
                                   json={"app_id": APP_ID, "files": files, "capability": {"gated": False}})
    runs = []
    async with BrokerClient(http_url, user_token("cluster-user")) as broker:
        sessions = await asyncio.gather(*(broker.create_session(NAME) for _ in range(CHATS)))
        for session in sessions:
            async with await broker.connect(session) as conn:
                events = []
                while not events or events[-1]["type"] != "chat.run_complete":
                    events.append(await conn.next_event(timeout=120))
            runs.append({"status": events[-1]["data"]["status"],
                         "tool": [e["data"] for e in events if e["type"] == "chat.tool_response"]})
    return {"install_status": installed.status_code, "version": installed.json().get("version"), "runs": runs,
            "worker_tmp": str(worker_tmp)}


def main(workdir: Path) -> None:
    worker_tmp = workdir / "worker-tmp"
    worker_tmp.mkdir(parents=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1, resources={"generator": 2}, env_vars={"TMPDIR": str(worker_tmp)})
    cluster.wait_for_nodes()
    (workdir / "workflows").mkdir()
    settings = Settings(mode="local", data_dir=workdir / "data", workflows_dir=workdir / "workflows",
                        port=free_port(), default_app_id=APP_ID, user_jwt_secret=SecretStr(USER_SECRET),
                        runtime_token_secret=SecretStr(USER_SECRET[::-1]), service_credential=SecretStr(SERVICE),
                        warm_pool_size=2)
    nodes = {"head": cluster.head_node.node_id, "worker": worker.node_id}
    with runtime_on(cluster, settings) as info:
        result = {**asyncio.run(drive(info.http_url, worker_tmp)), "nodes": nodes}
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.pop("RAY_ADDRESS", None)
    main(Path(sys.argv[1]))
