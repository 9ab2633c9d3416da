"""Bring the runtime up on Ray: the store, the session directory with its warm pool, and Serve."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from actors.directory import NAMESPACE, get_directory
from serve_app.ingress import build_app
from serve_app.logging_setup import configure_logging
from mozaiks.settings import Settings
from mozaiks.store import open_store

APP_NAME = "mozaiks"


@dataclass
class RuntimeInfo:
    http_url: str
    ws_url: str
    directory: Any


async def _init_store(url: str) -> None:
    store = open_store(url)
    await store.init()
    await store.close()


def start_runtime(settings: Settings, *, address: str | None = None, num_cpus: int | None = None,
                  resources: dict[str, float] | None = None) -> RuntimeInfo:
    """Start (or join, with ``address``) Ray, then deploy the app. Returns where it listens."""
    configure_logging()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        # Without an address, always a fresh local instance: never silently join whatever
        # `ray start` cluster happens to run on this machine.
        ray.init(address=address or "local", namespace=NAMESPACE, num_cpus=None if address else num_cpus,
                 resources=None if address else resources, include_dashboard=False,
                 configure_logging=False)
    asyncio.run(_init_store(settings.resolved_store_url))
    directory = get_directory(settings)
    ray.get(directory.ready.remote())
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/", blocking=False)
    _warm_tool_workers()
    return RuntimeInfo(http_url=f"http://{settings.host}:{settings.port}", ws_url=settings.ws_base,
                       directory=directory)


@ray.remote(num_cpus=0.1)
def _noop() -> int:
    time.sleep(0.5)  # overlap, so each call gets a worker process of its own
    return os.getpid()


def _warm_tool_workers(count: int = 4) -> None:
    """Start a few worker processes for tool tasks now: a new Ray worker takes about a second to
    boot here, which the first parallel tool calls of the first chat would otherwise wait for."""
    ray.get([_noop.remote() for _ in range(count)])


def stop_runtime() -> None:
    serve.shutdown()
    ray.shutdown()
