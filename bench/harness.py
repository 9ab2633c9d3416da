"""What every benchmark shares: a real runtime on a scratch data dir, the echo baseline, clients,
statistics, and the result table and JSON.

Each benchmark runs the whole stack the way a user meets it — Ray, Serve's proxy, the ingress,
session actors, SQLite with synchronous=FULL — and measures from a client in this process.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import ray
from pydantic import SecretStr
from ray import serve

from actors.handles import DirectoryHandle
from actors.names import NAMESPACE
from bench.echo import ECHO_PREFIX, echo_app
from mozaiks.client import BrokerClient
from mozaiks.settings import Settings
from mozaiks.settings.model import EXAMPLE_WORKFLOWS

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
APP_ID = "bench-app"
_USER_SECRET = "bench-user-secret-0123456789abcdef0123456789abcdef"
_RUNTIME_SECRET = "bench-runtime-secret-0123456789abcdef0123456789ab"


@dataclass
class Runtime:
    settings: Settings
    http_url: str
    ws_url: str

    @property
    def echo_url(self) -> str:
        return f"{self.ws_url}{ECHO_PREFIX}/ws"

    def broker(self, user: str) -> BrokerClient:
        now = int(time.time())
        token = jwt.encode({"sub": user, "app_id": APP_ID, "iat": now, "exp": now + 3600}, _USER_SECRET,
                           algorithm="HS256")
        return BrokerClient(self.http_url, token, timeout_s=120)

    @staticmethod
    def directory() -> DirectoryHandle:
        return DirectoryHandle.lookup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def runtime(num_cpus: int = 8, extra_workflows: Sequence[Path] = (), address: str | None = None,
            **overrides: Any) -> Iterator[Runtime]:
    """A fresh local runtime serving the example and benchmark workflows (and any
    ``extra_workflows`` folders), plus the echo baseline. ``address``: on that running cluster (a
    ``ray.cluster_utils.Cluster`` the caller shuts down) instead of a private local Ray."""
    from serve_app.http_edge import proxy_environment
    from serve_app.launch import start_runtime

    scratch = Path(tempfile.mkdtemp(prefix="mozaiks-bench-"))
    workflows = scratch / "workflows"
    for source in (EXAMPLE_WORKFLOWS, BENCH / "workflows"):
        shutil.copytree(source, workflows, dirs_exist_ok=True)
    for folder in extra_workflows:
        shutil.copytree(folder, workflows / folder.name, dirs_exist_ok=True)
    settings = Settings(mode="local", data_dir=scratch / "data", workflows_dir=workflows, port=_free_port(),
                        default_app_id=APP_ID, user_jwt_secret=SecretStr(_USER_SECRET),
                        runtime_token_secret=SecretStr(_RUNTIME_SECRET),
                        # The abuse limits would throttle the load generator itself.
                        session_rate_per_minute=None, ws_rate_per_s=100_000, ws_rate_burst=100_000,
                        **overrides)
    # Started here rather than by start_runtime only to keep the workers' log lines off the tables.
    proxy_environment()
    if address is None:
        ray.init(address="local", namespace=NAMESPACE, num_cpus=num_cpus, include_dashboard=False,
                 configure_logging=False, log_to_driver=False)
    else:
        ray.init(address=address, namespace=NAMESPACE, configure_logging=False, log_to_driver=False)
    info = start_runtime(settings)
    serve.run(echo_app(), name="echo", route_prefix=ECHO_PREFIX, blocking=False)
    try:
        yield Runtime(settings, info.http_url, info.ws_url)
    finally:
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------- statistics
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds."""
    return {"n": len(seconds), "p50_ms": round(percentile(seconds, 50) * 1000, 2),
            "p99_ms": round(percentile(seconds, 99) * 1000, 2),
            "mean_ms": round(sum(seconds) / len(seconds) * 1000, 2)}


# ---------------------------------------------------------------------- CPU per component
_ROLES = (("ray::ChatSession", "session actors"), ("ray::ServeReplica:mozaiks", "ingress replica"),
          ("ray::ServeReplica:echo", "echo replica"), ("ray::ProxyActor", "Serve proxy"),
          ("ray::SessionDirectory", "directory"), ("raylet", "raylet"), ("gcs_server", "GCS"))


def _descendants(root: int) -> list[int]:
    """This process and every process it started, directly or not (the local Ray cluster)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _role(pid: int) -> str:
    if pid == os.getpid():
        return "benchmark client"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    return next((role for marker, role in _ROLES if marker in command), "other Ray processes")


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) used so far by each component of the local cluster, this process
    included. Differences of two readings tell where a measured window's CPU went."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for pid in _descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        role = _role(pid)
        used[role] = used.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_between(before: dict[str, float], after: dict[str, float], per: float) -> dict[str, float]:
    """Milliseconds of CPU per unit of work (``per`` units) by component, largest first."""
    spent = {role: (after.get(role, 0.0) - before.get(role, 0.0)) * 1000 / per for role in after}
    return {role: round(ms, 2) for role, ms in sorted(spent.items(), key=lambda kv: -kv[1]) if ms > 0.005}


# ---------------------------------------------------------------------- reporting
def _machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split("\n")
    total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return {"cpus": os.cpu_count(), "memory_gb": round(total_kb / 1024 / 1024, 1), "python": platform.python_version(),
            "ray": ray.__version__, "platform": platform.platform(),
            # The machine is shared: a high load average means the numbers were squeezed by others.
            "load_average_1m": round(os.getloadavg()[0], 2)}


def report(name: str, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
           results: dict[str, Any], notes: Sequence[str] = ()) -> None:
    """Print the table and write bench/results/<name>.json."""
    cells = [[str(c) for c in columns]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  " + "  ".join(value.rjust(width) if i else value.ljust(width)
                               for i, (value, width) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))
    for note in notes:
        print(f"  {note}")
    RESULTS.mkdir(exist_ok=True)
    payload = {"name": name, "title": title, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": _machine(), "columns": list(columns), "rows": [list(r) for r in rows],
               "results": results, "notes": list(notes)}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)
