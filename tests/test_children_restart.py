"""The whole runtime stops while a parent waits for its children, and starts again on the same store:
the wait goes on, every child ends once, and the parent resumes with their merged result.

As in tests/test_crash_restart.py, Ray cannot restart inside the test process, so this file runs
itself as a script in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from mozaiks.client import BrokerClient
from tests.children_support import (
    ASKING, events_of, fan_out_to_askers, run_ended, sessions, write_children, write_parent,
)
from tests.conftest import REPO, user_token
from tests.test_crash_restart import _settings

async def _before_stop(http_url: str) -> dict[str, Any]:
    async with BrokerClient(http_url, user_token("fo-restarter")) as broker:
        parent, children = await fan_out_to_askers(broker, "fo_parent_restart")
        return {"parent": parent, "children": children, "phase": (await sessions(broker))[parent]["phase"]}


async def _after_start(http_url: str, before: dict[str, Any]) -> dict[str, Any]:
    async with BrokerClient(http_url, user_token("fo-restarter")) as broker:
        for child in before["children"]:
            opened = await broker.create_session("fo_child_ask", chat_id=child)
            async with await broker.connect(opened) as conn:
                request = await conn.wait_for("chat.input_request")
                await conn.say("red", input_request_id=request["data"]["request_id"])
                await conn.wait_for("chat.run_complete")
        return {"parent_log": await run_ended(broker, before["parent"]),
                "child_logs": [await events_of(broker, c) for c in before["children"]]}


def _run(data_dir: Path, workflows_dir: Path) -> dict[str, Any]:
    import ray

    from serve_app.launch import start_runtime

    info = start_runtime(_settings(data_dir, workflows_dir, ""), num_cpus=2)
    before = asyncio.run(_before_stop(info.http_url))
    ray.shutdown()  # every session actor, the directory and Serve go down together
    info = start_runtime(_settings(data_dir, workflows_dir, ""), num_cpus=2)
    after = asyncio.run(_after_start(info.http_url, before))
    return {"before": before, "after": after}


def test_a_waiting_parent_resumes_after_the_runtime_restarts_and_no_child_starts_twice(tmp_path, workflows_dir):
    write_children(workflows_dir)
    write_parent(workflows_dir, "fo_parent_restart", ASKING, {"merge_mode": "collect_all"})
    done = subprocess.run([sys.executable, "-m", "tests.test_children_restart", str(tmp_path / "data"),
                           str(workflows_dir)], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    before, after = result["before"], result["after"]
    assert before["phase"] == "waiting_children"
    log = after["parent_log"]
    assert [e["data"]["status"] for e in log if e["type"] == "chat.run_complete"] == ["completed"]
    assert len([e for e in log if e["type"] == "chat.child_started"]) == 4
    [merged] = [e["data"] for e in log if e["type"] == "chat.children_merged"]
    assert (merged["completed"], merged["failed"]) == (4, 0)
    for child_log in after["child_logs"]:
        assert len([e for e in child_log if e["type"] == "chat.run_start"]) == 1
        assert [e["data"]["content"] for e in child_log if e["type"] == "chat.text"
                and e["data"]["role"] == "user"][1:] == ["red"]  # the seed once, then the answer


if __name__ == "__main__":
    print(json.dumps(_run(Path(sys.argv[1]), Path(sys.argv[2]))))
