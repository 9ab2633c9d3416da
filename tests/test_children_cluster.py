"""Fan-out on three raylets (head + two workers): children spread over the nodes, and a worker
node killed while they wait loses nothing — every child ends exactly once and the parent completes.

One scenario run (tests/cluster_support/children_scenario.py, in its own process) serves every test.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.cluster_support.runner import Outcome, run_tagged

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    workdir = tmp_path_factory.mktemp("children-cluster")
    return run_tagged([sys.executable, "-m", "tests.cluster_support.children_scenario", str(workdir)], timeout_s=400)


@pytest.fixture(scope="module")
def scenario(outcome: Outcome) -> dict[str, Any]:
    return outcome.result()


def of(log: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["data"] for e in log if e["type"] == type_]


def test_eight_waiting_children_spread_over_the_nodes(scenario):
    placement = scenario["placement"]
    assert sum(placement.values()) == 9, placement  # the parent and its eight children
    workers = {scenario["nodes"]["worker1"], scenario["nodes"]["worker2"]}
    assert len(placement) > 1 and set(placement) & workers, placement


def test_after_a_worker_node_dies_every_child_ends_once_and_the_parent_completes(scenario):
    assert scenario["statuses"] == ["completed"] * 8
    log = scenario["parent_log"]
    assert [r["status"] for r in of(log, "chat.run_complete")] == ["completed"]
    assert len(of(log, "chat.child_started")) == 8
    ended = of(log, "chat.child_completed")
    assert sorted(e["child_chat_id"] for e in ended) == sorted(scenario["child_logs"])
    [merged] = of(log, "chat.children_merged")
    assert (merged["completed"], merged["failed"]) == (8, 0)
    for child_log in scenario["child_logs"].values():
        assert len(of(child_log, "chat.run_start")) == 1 and len(of(child_log, "chat.run_complete")) == 1
        assert [e["seq"] for e in child_log] == list(range(1, len(child_log) + 1))


def test_the_scenario_left_no_process_behind(outcome):
    assert outcome.leaked == []
