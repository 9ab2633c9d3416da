"""Running the `mozaiks` command as a user would: its own process group, a temporary HOME."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MOZAIKS = str(Path(sys.executable).with_name("mozaiks"))


def session_processes(sid: int) -> list[int]:
    """Every live process of a Unix session (what a supervisor's kill of the unit would reach)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOZAIKS_", "RAY_"))}
    env.update(HOME=str(home), MOZAIKS_DATA_DIR=str(home / "data"), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


class Running:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Ctrl-C to stop" in line:
                self.ready.set()
        self.ready.set()  # exited: whoever waits looks at returncode

    @property
    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def mozaiks_run(env: dict[str, str], *args: str, startup_s: float = 120) -> Iterator[Running]:
    """`mozaiks run ARGS` in a new session; yields once it listens. Always gone afterwards."""
    proc = subprocess.Popen([MOZAIKS, "run", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    running = Running(proc)
    try:
        running.ready.wait(startup_s)
        yield running
    finally:
        kill_session(proc)


def kill_session(proc: subprocess.Popen[str]) -> None:
    """Whatever the process and its descendants left running, gone."""
    for pid in session_processes(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)
