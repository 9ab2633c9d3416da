"""The runtime started on a scenario's cluster, and both torn down however the scenario ends."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray.cluster_utils import Cluster

from mozaiks.settings import Settings
from serve_app.launch import start_runtime, stop_runtime


@contextmanager
def runtime_on(cluster: Cluster, settings: Settings) -> Iterator[Any]:
    """The started runtime's info; on exit the runtime stops, then the cluster shuts down."""
    try:
        yield start_runtime(settings, address=cluster.address)
    finally:
        try:
            stop_runtime()
        finally:
            cluster.shutdown()


def local_cluster(head: dict[str, Any], workers: list[dict[str, Any]], attempts: int = 3) -> tuple[Cluster, list[Any]]:
    """A ``ray.cluster_utils.Cluster`` of a head (``head``: its ``add_node`` arguments) and
    ``workers``, all registered; returns it and the worker nodes. Ray gives a raylet 30 s to
    register, which a loaded shared machine can miss: then what that attempt started is ended and
    it tries again. Needs a private ``RAY_TMPDIR`` (the processes to end are those naming it)."""
    for attempt in range(1, attempts + 1):
        try:
            cluster = Cluster(initialize_head=True, head_node_args=head)
            nodes = [cluster.add_node(**worker) for worker in workers]
            cluster.wait_for_nodes()
            return cluster, nodes
        except Exception:
            if attempt == attempts:
                raise
            _end_ray_processes(os.environ["RAY_TMPDIR"])
    raise AssertionError("unreachable")


def _end_ray_processes(ray_tmp: str) -> None:
    """SIGKILL the Ray processes of this program's private temp dir (theirs name it in their arguments)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if ray_tmp.encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue
