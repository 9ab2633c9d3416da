"""A wait's deadline lives in the store from the moment the wait opens: after the whole runtime
stopped and started again, the input request still times out on time, with nobody connected -
whether the chat had passivated or was still resident when the runtime stopped.

Like tests/test_crash_restart.py, the runtime runs in a subprocess (Ray cannot be restarted
inside the test process, which shares one runtime among the tests), once per store (SQLite,
PostgreSQL) for both chats: a restart costs two runtime starts, the suite's dearest step.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from tests import pg_server
from tests.conftest import APP_ID, REPO, RUNTIME_SECRET, USER_SECRET, free_port, user_token
from tests.lifecycle_support import RawSocket, directory, passivated

USER = "deadline-keeper"
STATES = ("passivated", "resident")
# A passivated chat's session lets go as soon as it idles; a resident one stays bound far longer
# than the test runs. The directory applies its idle timeout as it activates a chat.
IDLE_TIMEOUT_S = {"passivated": 0.2, "resident": 600.0}


def _settings(data_dir: Path, workflows_dir: Path, store_url: str) -> Settings:
    # Two pooled processes: the second chat's start waits for no boot while the first one's wait runs.
    return Settings(mode="local", data_dir=data_dir, workflows_dir=workflows_dir, store_url=store_url, port=free_port(),
                    default_app_id=APP_ID, user_jwt_secret=SecretStr(USER_SECRET),
                    runtime_token_secret=SecretStr(RUNTIME_SECRET), warm_pool_size=2)


async def _open_wait(http_url: str, store_url: str, resident: bool) -> dict[str, Any]:
    await directory().configure(idle_timeout_s=IDLE_TIMEOUT_S["resident" if resident else "passivated"])
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


def _run(data_dir: Path, workflows_dir: Path, store_url: str) -> dict[str, Any]:
    import ray

    from serve_app.launch import start_runtime

    settings = _settings(data_dir, workflows_dir, store_url)
    info = start_runtime(settings, num_cpus=2)
    # The passivated chat's wait opens first: the resident one's start then runs inside its 5 s.
    before = {state: asyncio.run(_open_wait(info.http_url, settings.resolved_store_url, state == "resident"))
              for state in STATES}
    ray.shutdown()  # the whole runtime: Serve, the directory, its in-memory wake-ups and the sessions go
    stopped = time.time()
    info = start_runtime(_settings(data_dir, workflows_dir, store_url), num_cpus=2)
    started = time.time()

    async def after() -> list[dict[str, Any]]:
        return await asyncio.gather(*(_timeout_event(info.http_url, before[state]["chat_id"]) for state in STATES))

    return {state: {**before[state], **seen, "stopped": stopped, "started": started}
            for state, seen in zip(STATES, asyncio.run(after()), strict=True)}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    pg_server.unavailable_reason() is not None, reason=f"PostgreSQL: {pg_server.unavailable_reason()}"))])
def restarted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              workflows_dir: Path) -> dict[str, Any]:
    """Both chats' waits, opened before one whole-runtime restart on this store, and what followed."""
    with contextlib.ExitStack() as stack:
        store_url = "" if request.param == "sqlite" else stack.enter_context(
            pg_server.fresh_database(request.getfixturevalue("postgres_server")))
        done = subprocess.run([sys.executable, "-m", "tests.test_wait_deadline_restart",
                               str(tmp_path_factory.mktemp("deadline") / "data"), str(workflows_dir), store_url],
                              cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("state", STATES)
def test_a_wait_times_out_on_time_after_a_whole_runtime_restart(restarted, state):
    result = restarted[state]
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
    print(json.dumps(_run(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])))
