"""Three directory shards on three raylets (the head, two generator nodes): placement, a shard's
SIGKILL mid-chat, and a worker node's death.

One scenario run (tests/cluster_support/shards_scenario.py, in its own process) serves every test
here: thirty chats of ``slow_turns`` saying three things each; one shard killed while every chat
streams its first reply, generator node 1 killed while every chat streams its second.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster_support.runner import Outcome, run_scenario

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(660)]  # thirty sessions on a loaded two-core machine

CHATS = 30


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return run_scenario(tmp_path_factory.mktemp("shards"), "tests.cluster_support.shards_scenario", 600)


@pytest.fixture(scope="module")
def scenario(outcome: Outcome) -> dict[str, Any]:
    return outcome.result()


def test_thirty_chats_activate_across_nodes_and_shards(scenario):
    placement = scenario["placement"]
    assert sum(placement["per_node"].values()) == CHATS
    assert len(placement["per_node"]) > 1, placement
    assert all(n > 0 for n in placement["resident_per_shard"]), placement  # every shard serves chats


def test_no_shard_lives_on_the_head_while_there_are_other_nodes(scenario):
    head = scenario["nodes"]["head"]
    assert head not in scenario["placement"]["shard_nodes"], scenario["placement"]


def test_a_shard_killed_mid_chat_interrupts_no_chat(scenario):
    for chat in scenario["chats"]:
        # Every socket kept receiving through the shard's death and restart: no reconnect in the
        # phase the shard was killed in, every durable event seen once, in order.
        assert chat["reconnects"][0] == 0, chat
    killed = scenario["shard_kill"]
    assert killed["resident_before"] > 0
    assert killed["crashes_after"] == 0  # no session died with it


def test_the_restarted_shard_knows_its_residents(scenario):
    killed = scenario["shard_kill"]
    assert killed["resident_after"] == killed["resident_before"], killed
    assert killed["adopted"] == killed["resident_before"], killed


def test_every_chat_completes_after_a_shard_and_a_node_died(scenario):
    assert scenario["node_kill"]["sessions_on_gen1"] >= 1, "no session lived on the killed node"
    gen1 = scenario["nodes"]["gen1"]
    assert gen1 not in scenario["node_kill"]["per_node_after"]
    assert gen1 not in scenario["node_kill"]["shard_nodes_after"]  # its shards restarted elsewhere
    for chat in scenario["chats"]:
        # A message resent after a drop is acked as a duplicate: still acked, still once.
        assert len(chat["acks"]) == 3 and set(chat["acks"]) <= {"accepted", "duplicate"}, chat
        assert chat["user_texts"] == ["one", "two", "three"], chat  # each acked message processed once
        assert chat["log_contiguous"] and chat["client_saw_log"], chat
        assert chat["replies"] == [f"Reply {n} to {said}" for n, said in zip(("one", "two", "three"), chat["user_texts"], strict=True)], chat


def test_the_scenario_left_no_process_behind(outcome):
    assert outcome.returncode == 0, outcome.stderr[-4000:]
    assert outcome.leaked == [], f"processes still running after the scenario: {outcome.leaked}"
