"""The README's cluster section, followed on this machine by scripts/cluster_demo.sh: a head and a
second "machine" (network namespaces with their own addresses) sharing one PostgreSQL server over
the network, `serve deploy` of deploy/serve_config.yaml, then chats end to end through the deployed
runtime."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest

from tests import pg_server
from tests.cluster_support.runner import run_tagged

pytestmark = pytest.mark.cluster


def _namespaces_unavailable() -> str | None:
    """Why this machine cannot give the demo its own network namespaces, or None if it can."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"mozaiks-probe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", probe], check=False, capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


def test_the_cluster_section_of_the_readme_runs_on_this_machine():
    reason = _namespaces_unavailable()
    if reason:
        pytest.skip(f"scripts/cluster_demo.sh needs network namespaces: {reason}")
    if reason := pg_server.unavailable_reason():
        pytest.skip(f"scripts/cluster_demo.sh needs a PostgreSQL server: {reason}")
    outcome = run_tagged(["bash", "scripts/cluster_demo.sh"], timeout_s=300, extra_env={"PYTHON": sys.executable})
    assert outcome.returncode == 0, outcome.stdout[-3000:] + outcome.stderr[-3000:]
    summary = outcome.result()
    assert summary["completed"] == summary["chats"] == 4
    # The chats are in the one database both machines use: the second machine counted them there.
    assert re.search(r"^store: 4 chats in PostgreSQL at 10\.10\.0\.1:5432$", outcome.stdout, re.MULTILINE), \
        outcome.stdout[-3000:]
    active = re.search(r"^Active:\n((?: \d+ node_\w+\n)+)", outcome.stdout, re.MULTILINE)
    assert active, outcome.stdout
    nodes = set(re.findall(r"node_(\w+)", active.group(1)))
    assert len(nodes) == 2  # the head and the machine that joined it
    # Tool tasks spread: the joined machine ran some of the chats' tools.
    assert set(summary["tool_nodes"]) == nodes
    assert outcome.leaked == []
    ours = re.search(r"two machines: (\S+) \(.*\) and (\S+) \(", outcome.stdout)
    assert ours, outcome.stdout
    existing = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
    assert not {ours.group(1), ours.group(2)} & set(re.findall(r"^(\S+)", existing, re.MULTILINE))
