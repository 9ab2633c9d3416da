"""`mozaiks status`: a second driver joins the runtime's Ray (found through the data dir, as on the
machine that runs `mozaiks run`) and reports the Serve application, sessions, pool and nodes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.cli_support import MOZAIKS, cli_env

RAY_TOKEN = Path.home() / ".ray" / "auth_token"  # what the tests' local Ray authenticates drivers with


def status_env(tmp_path: Path, data_dir: Path) -> dict[str, str]:
    extra = {"RAY_AUTH_TOKEN": RAY_TOKEN.read_text().strip()} if RAY_TOKEN.is_file() else {}
    return cli_env(tmp_path, MOZAIKS_DATA_DIR=str(data_dir), **extra)


async def test_status_reports_the_application_sessions_pool_and_nodes(runtime: Any, settings, broker_for,
                                                                       tmp_path: Path) -> None:
    await (broker_for("status-user")).create_session("hello")  # at least one activation to count
    env = status_env(tmp_path, settings.data_dir)
    done = subprocess.run([MOZAIKS, "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    app = report["application"]
    assert app["name"] == "mozaiks" and app["status"] == "RUNNING"
    assert app["deployments"]["MozaiksIngress"]["status"] == "HEALTHY"
    assert app["deployments"]["MozaiksIngress"]["replicas"] == {"RUNNING": 1}
    assert report["warm_pool_size"] == settings.warm_pool_size
    assert report["counters"]["activations"] >= 1
    nodes = report["nodes"]
    assert len(nodes) == 1 and nodes[0]["alive"] and nodes[0]["cpus"] == 4
    assert report["resident"] == sum(n["resident"] for n in nodes)
    assert report["pool"] == sum(n["pool"] for n in nodes)

    table = subprocess.run([MOZAIKS, "status"], env=env, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert "application mozaiks: RUNNING" in table.stdout and "MozaiksIngress: HEALTHY" in table.stdout
    assert nodes[0]["node_id"][:12] in table.stdout

