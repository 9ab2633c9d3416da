"""Log lines as the runtime's processes write them (mozaiks/logs.py): JSON or text, the level from
the settings, the chat a line is about, and no secrets. Each case runs in a fresh interpreter, the
way a runtime process configures its logging once at start."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO

SCRIPT = """
import asyncio, logging
from mozaiks import logs

logs.configure({fmt!r}, {level!r})
log = logging.getLogger("mozaiks.session")

async def run(chat_id, agent):
    logs.bind(chat_id=chat_id, app_id="acme", workflow="hello", run_id="run_1")
    logs.bind(agent=agent)
    await asyncio.sleep(0)
    log.warning("model said Bearer sk-live-0123456789abcdef while token=abc123&x=1")
    try:
        raise ValueError("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl")
    except ValueError:
        log.exception("turn failed")

async def main():
    await asyncio.gather(run("chat-a", "Greeter"), run("chat-b", "Farewell"))
    log.info("an info line")
    log.warning("outside any chat")

asyncio.run(main())
"""


def run_logging(fmt: str, level: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT.format(fmt=fmt, level=level))],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return done.stderr.splitlines()


def test_json_lines_carry_their_chat_and_no_secret() -> None:
    lines = [json.loads(line) for line in run_logging("json", "INFO")]
    said = [line for line in lines if line["message"].startswith("model said")]
    assert {(line["chat_id"], line["agent"]) for line in said} == {("chat-a", "Greeter"), ("chat-b", "Farewell")}
    for line in said:
        assert line["app_id"] == "acme" and line["run_id"] == "run_1" and line["workflow"] == "hello"
        assert line["level"] == "WARNING" and line["logger"] == "mozaiks.session" and line["ts"].endswith("+00:00")
        assert "sk-live" not in line["message"] and "abc123" not in line["message"]
    failed = [line for line in lines if line["message"] == "turn failed"]
    assert len(failed) == 2 and all("ValueError" in line["exc"] and "eyJ" not in line["exc"] for line in failed)
    outside = next(line for line in lines if line["message"] == "outside any chat")
    assert "chat_id" not in outside  # a task's context does not leak into another's
    assert any(line["message"] == "an info line" for line in lines)


def test_text_lines_are_readable_and_the_level_filters() -> None:
    lines = run_logging("text", "WARNING")
    said = [line for line in lines if "model said" in line]
    assert len(said) == 2
    assert any("WARNING mozaiks.session: model said Bearer [redacted]" in line
               and line.endswith("[chat_id=chat-a app_id=acme workflow=hello run_id=run_1 agent=Greeter]")
               for line in said)
    assert not any("an info line" in line for line in lines)
    assert not any("eyJ" in line for line in lines)
