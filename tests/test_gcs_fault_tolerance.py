"""Head-node fault tolerance with an external Redis: the GCS is killed and restarted mid-chat.

One scenario run (tests/cluster_support/gcs_ft_scenario.py, in its own process: a process joins
only one Ray cluster) serves every test here: a head whose GCS keeps its state in a local
redis-server, a worker node, six chats running on both, and the head's GCS process killed while
the chats stream, then started again once every chat has finished a turn without it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import redis_server
from tests.cluster_support.runner import Outcome, run_scenario

REDIS_UNAVAILABLE = redis_server.unavailable_reason()
pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(REDIS_UNAVAILABLE is not None, reason=f"GCS fault tolerance: {REDIS_UNAVAILABLE}")]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return run_scenario(tmp_path_factory.mktemp("gcs_ft"), "tests.cluster_support.gcs_ft_scenario", 240)


@pytest.fixture(scope="module")
def scenario(outcome: Outcome) -> dict[str, Any]:
    return outcome.result()


def test_chats_on_the_worker_node_and_the_head_run_through_a_gcs_restart(scenario):
    assert scenario["sessions_per_node"].get(scenario["worker_node"], 0) >= 1, scenario["sessions_per_node"]
    assert sum(scenario["sessions_per_node"].values()) == len(scenario["chats"])
    for chat in scenario["chats"]:
        # Each chat finished a whole turn while the GCS was down, and all three in the end.
        assert chat["turns_in_outage"] >= 1, chat
        assert chat["turns_done"] == 3, chat


def test_no_acked_message_is_lost_or_repeated_and_the_log_has_no_gap(scenario):
    for chat in scenario["chats"]:
        assert chat["acks"] == ["accepted"] * 3
        assert chat["user_texts"] == ["turn 0", "turn 1", "turn 2"], chat
        assert chat["assistant_texts"] == 3, chat
        assert chat["log_contiguous"] and chat["client_saw_log"], chat


def test_after_the_restart_new_chats_start_again(scenario):
    fresh = scenario["fresh_chat"]
    assert fresh["turns_done"] == 3 and fresh["log_contiguous"] and fresh["client_saw_log"], fresh


def test_the_scenario_left_no_process_behind(outcome):
    assert outcome.returncode == 0, outcome.stderr[-4000:]
    assert outcome.leaked == [], f"processes still running after the scenario: {outcome.leaked}"
