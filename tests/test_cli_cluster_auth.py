"""Joining a `ray start` cluster that has token authentication on (Ray turns it on once a local
ray.init() left ~/.ray/auth_token): it works with the machine's token, and a wrong token fails in
one clear line."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from mozaiks.client import BrokerClient
from tests.cli_support import MOZAIKS, cli_env, kill_session, mozaiks_run
from tests.conftest import free_port
from tests.helpers import collect_until


def _start_head(env: dict[str, str], temp_dir: Path, port: int, heads: list[subprocess.Popen[str]]) -> str:
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             f"--port={port}",
                             # Ray's fixed default ports would collide with any other Ray here.
                             f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}",
                             f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
                             "--num-cpus=3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    up = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert head.stdout is not None
        for line in head.stdout:
            lines.append(line)
            if "block forever" in line:
                up.set()
        up.set()

    threading.Thread(target=read, daemon=True).start()
    assert up.wait(90) and head.poll() is None, "".join(lines)
    heads.append(head)
    found = re.search(r"ray start --address='([0-9.]+:[0-9]+)'", "".join(lines))
    assert found, "".join(lines)
    return found.group(1)


async def test_run_joins_a_token_auth_cluster_and_refuses_a_wrong_token(tmp_path: Path):
    env = cli_env(tmp_path)
    # What the test suite or scripts/run.sh leave behind on a developer machine.
    subprocess.run([sys.executable, "-c", "import ray; ray.init(address='local', include_dashboard=False); "
                    "ray.shutdown()"], env=env, check=True, capture_output=True, timeout=120)
    assert (tmp_path / ".ray" / "auth_token").is_file()
    gcs_port = free_port()
    # Short: Ray's socket paths under it must fit AF_UNIX's 107 bytes.
    ray_temp = Path(tempfile.mkdtemp(prefix="mzray-"))
    heads: list[subprocess.Popen[str]] = []
    try:
        # `auto` picks the newest cluster from RAY_ADDRESS, /tmp/ray or any GCS process on this
        # machine, which other Rays share; RAY_ADDRESS keeps the test on its own cluster.
        address = _start_head(env, ray_temp, gcs_port, heads)
        port = free_port()
        run_env = {**env, "RAY_ADDRESS": address, "MOZAIKS_PORT": str(port)}
        with mozaiks_run(run_env, "--address", "auto") as running:
            assert running.ready.is_set() and running.proc.poll() is None, running.output
            assert "InvalidAuthToken" not in running.output
            token = subprocess.run([MOZAIKS, "dev-token"], env=run_env, capture_output=True, text=True,
                                   check=True, timeout=60).stdout.strip()
            async with BrokerClient(f"http://127.0.0.1:{port}", token) as broker:
                session = await broker.create_session("hello")
                async with await broker.connect(session) as conn:
                    request = (await collect_until(conn, "chat.input_request"))[-1]
                    await conn.say("ada", input_request_id=request["data"]["request_id"])
                    done = (await collect_until(conn, "chat.run_complete"))[-1]
            assert done["data"]["status"] == "completed"
            running.proc.send_signal(signal.SIGTERM)
            assert running.proc.wait(15) == 0, running.output

        # Fewer connection retries than Ray's 20 only to keep the test short.
        wrong = {**run_env, "RAY_AUTH_TOKEN": "0" * 32, "RAY_NUM_REDIS_GET_RETRIES": "3"}
        failed = subprocess.run([MOZAIKS, "run", "--address", "auto"], env=wrong, capture_output=True,
                                text=True, timeout=120)
        assert failed.returncode != 0
        lines = [line for line in (failed.stdout + failed.stderr).splitlines() if line.strip()]
        assert lines[0].startswith("mozaiks starting")
        assert len(lines) == 2, lines
        assert "refused this machine's auth token" in lines[1] and "RAY_AUTH_TOKEN" in lines[1]
    finally:
        for head in heads:
            kill_session(head)
        shutil.rmtree(ray_temp, ignore_errors=True)
