"""The whole runtime (Ray and Serve) stops and starts again on the same store; open chats resume.

Ray cannot be restarted inside the test process (the other tests share one runtime there), so
the test runs this file as a script in a subprocess that starts the runtime, drives two chats
part of the way, stops it abruptly — one chat waiting for input, the other in the middle of a
turn — starts it again on the same store, and finishes both. It runs on SQLite and on
PostgreSQL (the `store_url` fixture).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from mozaiks.client import BrokerClient
from mozaiks.settings import Settings
from tests.conftest import APP_ID, REPO, RUNTIME_SECRET, USER_SECRET, free_port, user_token
from tests.lifecycle_support import FIRST_REPLY, RawSocket, user_message


def _settings(data_dir: Path, workflows_dir: Path, store_url: str) -> Settings:
    return Settings(mode="local", data_dir=data_dir, workflows_dir=workflows_dir, store_url=store_url, port=free_port(),
                    default_app_id=APP_ID, user_jwt_secret=SecretStr(USER_SECRET),
                    runtime_token_secret=SecretStr(RUNTIME_SECRET), warm_pool_size=1)


async def _before_stop(http_url: str) -> dict[str, Any]:
    async with BrokerClient(http_url, user_token("restarter")) as broker:
        waiting = await broker.create_session("waits")
        sock = await RawSocket.open(waiting)
        request = await sock.next("chat.input_request")
        await sock.close()
        busy = await broker.create_session("slow_turns")
        sock = await RawSocket.open(busy)
        ack = await sock.send(user_message("before the restart", message_id="acked-1"))
        await sock.next("chat.text_delta")  # stop in the middle of the reply
        return {"waiting": waiting.chat_id, "request_id": request["data"]["request_id"],
                "busy": busy.chat_id, "ack": ack["status"]}


async def _after_start(http_url: str, before: dict[str, Any]) -> dict[str, Any]:
    async with BrokerClient(http_url, user_token("restarter")) as broker:
        waiting = await broker.create_session("waits", chat_id=before["waiting"])
        sock = await RawSocket.open(waiting)
        pending = (await sock.next("chat_meta"))["data"]["pending"]
        await sock.send(user_message("relaunch", input_request_id=pending["request_id"]))
        ui_call = await sock.next("chat.tool_call")
        await sock.send({"type": "ui_tool_response", "call_id": ui_call["data"]["call_id"],
                         "response": {"decision": "approved"}})
        waiting_done = await sock.next("chat.run_complete")
        await sock.close()
        busy = await broker.create_session("slow_turns", chat_id=before["busy"])
        sock = await RawSocket.open(busy)
        await sock.next("chat.input_request")  # the interrupted turn finished
        duplicate = await sock.send(user_message("before the restart", message_id="acked-1"))
        await sock.close()
        return {"pending": pending, "waiting_status": waiting_done["data"]["status"],
                "duplicate": duplicate["status"],
                "waiting_log": (await broker.events(before["waiting"], limit=1000))["events"],
                "busy_log": (await broker.events(before["busy"], limit=1000))["events"]}


def _run(data_dir: Path, workflows_dir: Path, store_url: str) -> dict[str, Any]:
    import ray

    from serve_app.launch import start_runtime

    info = start_runtime(_settings(data_dir, workflows_dir, store_url), num_cpus=2)
    before = asyncio.run(_before_stop(info.http_url))
    ray.shutdown()  # abruptly, mid-turn: Serve and every actor go down with Ray
    info = start_runtime(_settings(data_dir, workflows_dir, store_url), num_cpus=2)
    after = asyncio.run(_after_start(info.http_url, before))
    return {"before": before, "after": after}  # Ray shuts down when this process exits


def test_an_open_chat_resumes_after_the_runtime_restarts(tmp_path, workflows_dir, store_url):
    done = subprocess.run([sys.executable, "-m", "tests.test_crash_restart", str(tmp_path / "data"), str(workflows_dir),
                           store_url],
                          cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    before, after = result["before"], result["after"]
    assert before["ack"] == "accepted"
    assert after["pending"]["kind"] == "input_request" and after["pending"]["request_id"] == before["request_id"]
    assert after["waiting_status"] == "completed"
    for log in (after["waiting_log"], after["busy_log"]):
        assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    texts = [(e["data"]["role"], e["data"]["content"]) for e in after["busy_log"] if e["type"] == "chat.text"]
    assert texts == [("user", "before the restart"), ("assistant", FIRST_REPLY.format("before the restart"))]
    assert after["duplicate"] == "duplicate"


if __name__ == "__main__":
    print(json.dumps(_run(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])))
