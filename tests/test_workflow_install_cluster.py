"""An installed workflow on a real two-node cluster (ray.cluster_utils.Cluster): installed over HTTP
while the runtime runs, its chats start with no restart, and its tool, placed on the worker node
(which has a temp directory of its own), runs from a folder written on that node."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.cluster_support.runner import run_tagged

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("install-cluster")
    outcome = run_tagged([sys.executable, "-m", "tests.cluster_support.install_scenario", str(workdir)], timeout_s=240)
    return outcome.result()


def test_an_install_is_startable_on_the_cluster_and_its_tool_runs_on_a_node_that_never_saw_it(scenario):
    assert scenario["install_status"] == 201
    assert [run["status"] for run in scenario["runs"]] == ["completed"] * 4
    for run in scenario["runs"]:
        [response] = run["tool"]
        assert response["status"] == "ok", response
        result = response["result"]
        assert result["node_id"] == scenario["nodes"]["worker"]
        # Imported from the worker node's own copy, under its own temp directory.
        assert result["tmp"] == scenario["worker_tmp"]
        assert result["file"].startswith(scenario["worker_tmp"]) and scenario["version"] in result["file"]
