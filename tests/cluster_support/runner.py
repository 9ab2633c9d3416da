"""Running a cluster program (a scenario or the demo script) so that nothing it starts outlives it.

Ray daemonises its processes (raylets, GCS, workers), so they are not children we could wait for.
Every process the program starts inherits a unique tag in its environment; afterwards whatever
still carries the tag is ended by its pid. Processes of other Ray instances on the machine carry
no tag and are never touched. The program also gets a private, short ``RAY_TMPDIR``, so its
cluster's files (and the "current cluster" address Ray remembers) never land in the shared
/tmp/ray, where another process's ``ray.init()`` would find them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAG = "MOZAIKS_CLUSTER_TEST_RUN"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    leaked: list[int]  # tagged processes still alive after the program ended (then ended by us)

    def result(self) -> dict[str, Any]:
        """The JSON object the program printed last on stdout."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    return dict(json.loads(line))
                except json.JSONDecodeError:
                    continue
        raise AssertionError(f"no JSON result (exit {self.returncode}); stderr tail:\n{self.stderr[-4000:]}")


def tagged_pids(run_id: str) -> list[int]:
    needle = f"{TAG}={run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def end_tagged(run_id: str, grace_s: float = 5.0) -> list[int]:
    """SIGTERM every tagged process, SIGKILL what is left after ``grace_s``; returns the pids found."""
    found = tagged_pids(run_id)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in tagged_pids(run_id):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while tagged_pids(run_id) and time.monotonic() < deadline:
            time.sleep(0.2)
    return found


def run_tagged(command: list[str], timeout_s: float, extra_env: dict[str, str] | None = None) -> Outcome:
    """Run ``command`` from the repository root with a private Ray temp dir; end all it started."""
    run_id = uuid.uuid4().hex
    ray_tmp = tempfile.mkdtemp(prefix="mzk-")  # short: Ray's socket paths live under it
    env = {**os.environ, **(extra_env or {}), TAG: run_id, "RAY_TMPDIR": ray_tmp,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        returncode, stdout, stderr = -1, _text(expired.stdout), _text(expired.stderr) + "\n[timed out]"
    seconds = time.monotonic() - started
    # Ray's processes notice their cluster is gone within a few seconds; what remains then leaked.
    deadline = time.monotonic() + 10
    while tagged_pids(run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    leaked = end_tagged(run_id)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return Outcome(returncode, stdout, stderr, seconds, leaked)


def run_scenario(workdir: Path, module: str, timeout_s: float) -> Outcome:
    """``python -m module WORKDIR``, tagged as ``run_tagged`` runs it."""
    return run_tagged([sys.executable, "-m", module, str(workdir)], timeout_s=timeout_s)


def _text(raw: bytes | str | None) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else (raw or "")
