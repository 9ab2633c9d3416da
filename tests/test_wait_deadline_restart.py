"""A wait's deadline lives in the store from the moment the wait opens: after the whole runtime
stopped and started again, the input request still times out on time, with nobody connected -
whether the chat had passivated or was still resident when the runtime stopped.

Like tests/test_crash_restart.py, the runtime runs in a subprocess (Ray cannot be restarted
inside the test process, which shares one runtime among the tests). On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mozaiks.client import BrokerClient
from mozaiks.settings import Settings
from mozaiks.store import open_store
from actors.chat_session import RESIDENT_MARK
from tests.conftest import APP_ID, REPO, RUNTIME_SECRET, USER_SECRET, free_port, user_token
from tests.lifecycle_support import RawSocket, directory, passivated

USER = "deadline-keeper"


def _settings(data_dir: Path, workflows_dir: Path, store_url: str, resident: bool) -> Settings:
    # Resident: an idle chat stays bound to its session far longer than the test runs.
    return Settings(mode="local", data_dir=data_dir, workflows_dir=workflows_dir, store_url=store_url, port=free_port(),
                    default_app_id=APP_ID, user_jwt_secret=SecretStr(USER_SECRET),
                    runtime_token_secret=SecretStr(RUNTIME_SECRET), warm_pool_size=1,
                    idle_timeout_s=600 if resident else 0.2)


async def _open_wait(http_url: str, store_url: str, resident: bool) -> dict[str, Any]:
    async with BrokerClient(http_url, user_token(USER)) as broker:
        session = await broker.create_session("timeout_restart")
        sock = await RawSocket.open(session)
        request = await sock.next("chat.input_request")
        await sock.close()
        if resident:
            assert await directory().peek(session.chat_id) is not None, "the chat passivated: nothing to show"
        else:
            await passivated(session.chat_id)
    store = open_store(store_url)
    chat = await store.get_chat(APP_ID, USER, session.chat_id)
    wakeups = {w.chat_id: w.wake_at for w in await store.list_wakeups()}
    await store.close()
    assert chat is not None
    deadline = chat.snapshot["pending_input"]["timeout_at"]
    # Stored before the runtime stops: a passivated chat's wait deadline; a resident chat's mark,
    # due at once, so the restarted directory re-activates it and its session re-arms the deadline.
    assert wakeups.get(session.chat_id) == (RESIDENT_MARK if resident else deadline)
    return {"chat_id": session.chat_id, "request_id": request["data"]["request_id"], "deadline": deadline}


async def _timeout_event(http_url: str, chat_id: str) -> dict[str, Any]:
    """Watches the log from outside (no socket: a connection would activate the chat itself)."""
    async with BrokerClient(http_url, user_token(USER)) as broker:
        async with asyncio.timeout(60):
            while True:
                events = (await broker.events(chat_id, limit=1000))["events"]
                found = [e for e in events if e["type"] == "chat.input_timeout"]
                if found:
                    return {"timeout": found[0], "types": [e["type"] for e in events]}
                await asyncio.sleep(0.1)


def _run(data_dir: Path, workflows_dir: Path, store_url: str, resident: bool) -> dict[str, Any]:
    import ray

    from serve_app.launch import start_runtime

    settings = _settings(data_dir, workflows_dir, store_url, resident)
    info = start_runtime(settings, num_cpus=2)
    before = asyncio.run(_open_wait(info.http_url, settings.resolved_store_url, resident))
    ray.shutdown()  # the whole runtime: Serve, the directory, its in-memory wake-ups and the sessions go
    stopped = time.time()
    info = start_runtime(_settings(data_dir, workflows_dir, store_url, resident), num_cpus=2)
    started = time.time()
    after = asyncio.run(_timeout_event(info.http_url, before["chat_id"]))
    return {**before, **after, "stopped": stopped, "started": started}


@pytest.mark.parametrize("state", ["passivated", "resident"])
def test_a_wait_times_out_on_time_after_a_whole_runtime_restart(tmp_path, workflows_dir, store_url, state):
    done = subprocess.run([sys.executable, "-m", "tests.test_wait_deadline_restart", str(tmp_path / "data"),
                           str(workflows_dir), store_url, state], cwd=REPO, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["stopped"] < result["deadline"], "the runtime stopped after the deadline: nothing to show"
    assert result["timeout"]["data"]["request_id"] == result["request_id"]
    fired = datetime.fromisoformat(result["timeout"]["timestamp"]).timestamp()
    deadline, started = result["deadline"], result["started"]
    assert fired >= deadline
    if started < deadline:
        assert fired <= deadline + 1.0, f"fired {fired - deadline:.2f} s after its deadline"
    else:
        # A loaded machine took longer to restart than the wait had left: nothing runs while the
        # runtime is down, so the timeout fires as the runtime comes back (before it serves HTTP).
        assert fired <= started + 1.0, f"fired {fired - started:.2f} s after the restart"
    assert result["types"][-1] == "chat.run_complete"


if __name__ == "__main__":
    print(json.dumps(_run(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "resident")))
