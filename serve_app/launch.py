"""Bring the runtime up on Ray: the store, the session directory with its warm pool, and Serve."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import serve

from actors.directory import end_directory, start_directory
from actors.handles import DirectoryHandle
from actors.names import NAMESPACE
from serve_app.http_edge import proxy_environment
from serve_app.ingress import build_app
from serve_app.status import write_address
from mozaiks import logs
from mozaiks.settings import Settings
from mozaiks.store import open_store

APP_NAME = "mozaiks"


@dataclass
class RuntimeInfo:
    http_url: str
    ws_url: str
    directory: DirectoryHandle


async def _init_store(url: str) -> None:
    store = open_store(url)
    await store.init()
    await store.close()


def start_runtime(settings: Settings, *, address: str | None = None, num_cpus: int | None = None,
                  resources: dict[str, float] | None = None) -> RuntimeInfo:
    """Start (or join, with ``address``) Ray, then deploy the app. Returns where it listens."""
    logs.configure(settings.log_format, settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    proxy_environment()  # before Ray starts: its processes, Serve's proxy among them, inherit it
    if not ray.is_initialized():
        if address:
            join_cluster(address)
        else:
            # Without an address, always a fresh local instance: never silently join whatever
            # `ray start` cluster happens to run on this machine.
            ray.init(address="local", namespace=NAMESPACE, num_cpus=num_cpus, resources=resources,
                     include_dashboard=False, configure_logging=False,
                     _metrics_export_port=settings.metrics_export_port)
            global _owns_ray, _address_file
            _owns_ray = True
            _address_file = write_address(settings.data_dir)  # for `mozaiks status` on this machine
    asyncio.run(_init_store(settings.resolved_store_url))
    directory = start_directory(settings)
    asyncio.run(directory.ready())
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


class ClusterJoinError(Exception):
    """Joining the Ray cluster failed; the message is one line saying what to do."""


_owns_ray = False  # this process started the Ray it runs on (then stopping stops that Ray too)
_address_file: Path | None = None  # where that Ray's address is written for `mozaiks status`


def join_cluster(address: str) -> None:
    """``ray.init`` against an existing cluster, turning its failures into one clear line.

    A refused auth token makes Ray's core print a warning per retry for about half a minute and
    then raise a bare ConnectionError, so its stderr is held back while connecting and shown
    only if the failure is not one recognised here.
    """
    with tempfile.TemporaryFile(mode="w+b") as held:
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            ray.init(address=address, namespace=NAMESPACE, configure_logging=False)
            failure: BaseException | None = None
        except Exception as exc:  # Ray raises several kinds here; each ends in one line below
            failure = exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        output = held.read().decode(errors="replace")
    if failure is None:
        sys.stderr.write("".join(line for line in output.splitlines(keepends=True)
                                 if "InvalidAuthToken" not in line))
        return
    if "InvalidAuthToken" in output or "InvalidAuthToken" in str(failure):
        raise ClusterJoinError(
            f"The Ray cluster at {address} refused this machine's auth token (missing or wrong): "
            "copy the head node's ~/.ray/auth_token here or set RAY_AUTH_TOKEN (docs/cluster.md)")
    sys.stderr.write(output)
    raise ClusterJoinError(f"Could not join the Ray cluster at {address}: {failure}") from failure


def stop_runtime() -> None:
    global _owns_ray, _address_file
    if _address_file is not None:
        _address_file.unlink(missing_ok=True)
        _address_file = None
    serve.shutdown()
    if ray.is_initialized():
        end_directory()  # detached: on a cluster this runtime joined, nothing else would end them
    ray.shutdown()
    DirectoryHandle.forget()
    _owns_ray = False


def kill_private_ray() -> None:
    """Stop at once: kill the Ray processes this process started, if any, without draining."""
    node = getattr(ray._private.worker, "_global_node", None)
    if _owns_ray and node is not None:
        node.kill_all_processes(check_alive=False, allow_graceful=False)
