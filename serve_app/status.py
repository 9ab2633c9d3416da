"""What `mozaiks status` reports, read from the Ray cluster the runtime runs on: the Serve
application and its deployments, the session directory's resident chats and warm pool, and the
nodes. Runs in a driver connected to that cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import ray
from pydantic import BaseModel
from ray import serve

from actors.handles import DirectoryHandle

ADDRESS_FILE = "ray-address"  # in the data dir, while `mozaiks run` has a private Ray


class DeploymentState(BaseModel):
    status: str
    message: str
    replicas: dict[str, int]  # replica state -> count


class ApplicationState(BaseModel):
    name: str
    status: str
    message: str
    deployments: dict[str, DeploymentState]


class NodeState(BaseModel):
    node_id: str
    address: str
    alive: bool
    cpus: float
    resident: int  # chats bound to a session actor on this node
    pool: int  # blank session actors waiting there


class RuntimeStatus(BaseModel):
    application: ApplicationState | None  # None: Serve runs no mozaiks application
    resident: int
    pool: int
    idle_timeout_s: float
    max_resident_sessions: int
    warm_pool_size: int
    counters: dict[str, int]
    nodes: list[NodeState]


class NoRuntime(Exception):
    """The cluster runs no mozaiks runtime (no session directory)."""


def write_address(data_dir: Path) -> Path:
    path = data_dir / ADDRESS_FILE
    path.write_text(ray.get_runtime_context().gcs_address)
    return path


def read_address(data_dir: Path) -> str | None:
    path = data_dir / ADDRESS_FILE
    return path.read_text().strip() if path.is_file() else None


def runtime_status(app_name: str) -> RuntimeStatus:
    try:
        directory = DirectoryHandle.lookup()
    except ValueError:
        raise NoRuntime("no mozaiks runtime on this Ray cluster (no session directory)") from None
    stats = asyncio.run(directory.stats())
    served = serve.status().applications.get(app_name)
    application = None if served is None else ApplicationState(
        name=app_name, status=_text(served.status), message=served.message,
        deployments={name: DeploymentState(status=_text(d.status), message=d.message,
                                           replicas={_text(state): n for state, n in d.replica_states.items()})
                     for name, d in served.deployments.items()})
    nodes = [NodeState(node_id=node["NodeID"], address=node["NodeManagerAddress"], alive=node["Alive"],
                       cpus=node["Resources"].get("CPU", 0.0), resident=stats.per_node.get(node["NodeID"], 0),
                       pool=stats.pool_per_node.get(node["NodeID"], 0)) for node in ray.nodes()]
    return RuntimeStatus(application=application, resident=stats.resident, pool=stats.pool,
                         idle_timeout_s=stats.policy.idle_timeout_s,
                         max_resident_sessions=stats.policy.max_resident_sessions,
                         warm_pool_size=stats.policy.warm_pool_size, counters=stats.counters, nodes=nodes)


def _text(value: object) -> str:
    """An enum of Serve's as its plain value ("RUNNING", not "ApplicationStatus.RUNNING")."""
    return str(getattr(value, "value", value))
