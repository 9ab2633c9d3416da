"""The terminal client against the running runtime: `mozaiks chat` in a pseudo-terminal as a person
would type into it, then `sessions`, `events` and `cancel` with --json as a script would."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.cli_support import MOZAIKS, cli_env
from tests.conftest import user_token


def _env(runtime: Any, tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, MOZAIKS_URL=runtime.http_url, MOZAIKS_TOKEN=user_token("cli-user"))


def _read_until(master: int, pattern: str, seen: list[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = "".join(seen)
        if re.search(pattern, text):
            return text
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                seen.append(os.read(master, 4096).decode(errors="replace"))
            except OSError:  # the child closed the terminal
                break
    raise AssertionError(f"{pattern!r} not seen in:\n{''.join(seen)}")


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([MOZAIKS, *args, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_chat_hello_in_a_terminal_then_sessions_events_cancel(runtime: Any, tmp_path: Path):
    env = _env(runtime, tmp_path)
    master, slave = os.openpty()
    chat = subprocess.Popen([MOZAIKS, "chat", "hello"], env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    seen: list[str] = []
    try:
        _read_until(master, r"What's your name\?", seen)
        _read_until(master, r"> $", seen)
        os.write(master, b"ada\r")
        text = _read_until(master, r"run completed", seen)
        assert chat.wait(30) == 0, text
    finally:
        if chat.poll() is None:
            chat.kill()
        os.close(master)
    assert "make_greeting" in text and "Greeter hands off to Farewell" in text
    assert "Goodbye, Ada! Come back soon." in text
    shown = re.search(r"chat (\S+) \(hello\)", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text))
    assert shown, text
    chat_id = shown.group(1)

    listed = json.loads(_cli(env, "sessions"))
    row = next(s for s in listed["sessions"] if s["chat_id"] == chat_id)
    assert row["status"] == "completed"

    events = [json.loads(line) for line in _cli(env, "events", chat_id).splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "chat.run_complete" and events[-1]["data"]["status"] == "completed"

    cancelled = json.loads(_cli(env, "cancel", chat_id))
    assert cancelled["chat_id"] == chat_id and cancelled["mode"] == "immediate"


def test_client_commands_fail_clearly_without_access(runtime: Any, tmp_path: Path):
    env = {**_env(runtime, tmp_path), "MOZAIKS_TOKEN": "not-a-jwt"}
    done = subprocess.run([MOZAIKS, "sessions", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "401" in done.stderr and "Traceback" not in done.stderr
