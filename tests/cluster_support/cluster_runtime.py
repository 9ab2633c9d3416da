"""The runtime started on a scenario's cluster, and both torn down however the scenario ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
