"""`mozaiks run` as a process supervisor sees it: SIGTERM stops it cleanly and quickly, and nothing
of the runtime (its private Ray included) is left running."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from mozaiks.client import BrokerClient
from tests.cli_support import MOZAIKS, cli_env, mozaiks_run, session_processes
from tests.conftest import free_port
from tests.helpers import collect_until


async def test_sigterm_stops_run_and_its_ray_within_seconds(tmp_path: Path):
    port = free_port()
    env = cli_env(tmp_path, MOZAIKS_PORT=str(port))
    with mozaiks_run(env) as running:
        assert running.ready.is_set() and running.proc.poll() is None, running.output
        token = subprocess.run([MOZAIKS, "dev-token", "--user", "alice"], env=env, capture_output=True,
                               text=True, check=True, timeout=60).stdout.strip()
        # A chat socket open and waiting on the user: the case that used to hold shutdown for Serve's
        # whole graceful-drain period.
        async with BrokerClient(f"http://127.0.0.1:{port}", token) as broker:
            session = await broker.create_session("hello")
            conn = await broker.connect(session)
            await collect_until(conn, "chat.input_request")
            before = session_processes(running.proc.pid)
            assert len(before) > 3  # the CLI, gcs_server, raylet, workers: the test sees the real tree
            started = time.monotonic()
            running.proc.send_signal(signal.SIGTERM)
            code = running.proc.wait(10)
            took = time.monotonic() - started
            await conn.close()
        assert code == 0, running.output
        assert took < 10
        deadline = time.monotonic() + 5
        while session_processes(running.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)  # Ray's processes exit on their own once the raylet told them to
        assert session_processes(running.proc.pid) == []
        assert "stopping" in running.output
