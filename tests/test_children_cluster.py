"""Fan-out on three raylets (head + two workers): children spread over the nodes, and a worker
node killed while they wait loses nothing — every child ends exactly once and the parent completes.

A second cluster (tests/cluster_support/children_waits_scenario.py) runs with the cluster-wide cap
on running children set to 3 and a generator node: the cap holds across two fan-outs, a child's
generator tools land on the generator node, and a parent SIGKILLed while it waits, and one whose
whole cluster is shut down and started again on the same store, resume with no child started twice.

Each scenario runs once, in its own process, and serves its tests.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster_support.runner import Outcome, run_scenario

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return run_scenario(tmp_path_factory.mktemp("children-cluster"), "tests.cluster_support.children_scenario", 400)


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


# ------------------------------------------------------------------ waiting parents, cap 3
# tests/cluster_support/children_waits_scenario.py: max_running_children 3, a generator node, a
# SIGKILLed waiting parent and a whole-cluster restart while a parent waits.
@pytest.fixture(scope="module")
def waits_outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return run_scenario(tmp_path_factory.mktemp("children-waits"), "tests.cluster_support.children_waits_scenario",
                        600)


@pytest.fixture(scope="module")
def waits(waits_outcome: Outcome) -> dict[str, Any]:
    return waits_outcome.result()


def most_at_once(intervals: list[list[str]]) -> int:
    """The most intervals (ISO timestamps) open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same moment
    most = open_ = 0
    for _, step in edges:
        open_ += step
        most = max(most, open_)
    return most


def run_interval(child_log: list[dict[str, Any]]) -> list[str]:
    [start] = [e["timestamp"] for e in child_log if e["type"] == "chat.run_start"]
    [end] = [e["timestamp"] for e in child_log if e["type"] == "chat.run_complete"]
    return [start, end]


def started_once(parent_log: list[dict[str, Any]], child_logs: dict[str, list[dict[str, Any]]], count: int) -> None:
    """The parent announced ``count`` children, each ran once from one seed, and the parent completed."""
    assert [r["status"] for r in of(parent_log, "chat.run_complete")] == ["completed"]
    assert sorted(e["child_chat_id"] for e in of(parent_log, "chat.child_started")) == sorted(child_logs)
    assert len(child_logs) == count
    [merged] = of(parent_log, "chat.children_merged")
    assert (merged["completed"], merged["failed"]) == (count, 0)
    for child_log in child_logs.values():
        assert len(of(child_log, "chat.run_start")) == 1 and len(of(child_log, "chat.run_complete")) == 1
        assert len([t for t in of(child_log, "chat.text") if t["role"] == "user"]) == 2  # the seed, the answer


def test_the_cluster_wide_cap_bounds_all_fan_outs_together_and_max_children_each(waits):
    cap = waits["cap"]
    capped, uncapped = cap["parents"]
    logs = dict(zip(cap["parents"], cap["parent_logs"], strict=True))
    children_of = {p: [d["child_chat_id"] for d in of(log, "chat.child_started")] for p, log in logs.items()}
    for parent in cap["parents"]:
        started_once(logs[parent], {c: cap["child_logs"][c] for c in children_of[parent]}, 4)
    intervals = {c: run_interval(log) for c, log in cap["child_logs"].items()}
    # Eight children wanted to run at once; never more than three did, and never more than two of
    # the parent whose max_children is 2.
    assert cap["most_running"] == 3
    assert most_at_once(list(intervals.values())) <= 3
    assert most_at_once([intervals[c] for c in children_of[capped]]) <= 2


def test_a_childs_generator_tools_run_on_the_generator_node(waits):
    gen = waits["generator"]
    assert [r["status"] for r in of(gen["parent_log"], "chat.run_complete")] == ["completed"]
    results = [child["result"] for child in gen["merged"]]
    assert results == [f"built on {waits['nodes']['generator']}"] * 2


def test_a_sigkilled_waiting_parent_resumes_on_the_cluster_and_starts_no_child_twice(waits):
    killed = waits["sigkill"]
    assert killed["new_pid"] != killed["old_pid"]
    [log] = killed["parent_logs"]
    started_once(log, killed["child_logs"], 4)
    assert killed["most_running"] == 3  # the fourth child started only when a slot freed


def test_a_whole_cluster_restart_while_a_parent_waits_loses_nothing_and_starts_no_child_twice(waits):
    restart = waits["restart"]
    assert restart["phase"] == "waiting_children"
    [log] = restart["parent_logs"]
    started_once(log, restart["child_logs"], 4)


def test_the_waits_scenario_left_no_process_behind(waits_outcome):
    assert waits_outcome.leaked == []
