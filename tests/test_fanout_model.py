"""Declared fan-out (a workflow's own `_pack/workflow_graph.json`) and the fan-in merge modes."""

import json
from pathlib import Path
from typing import Any

import pytest

from workflows import WorkflowError, load_workflow
from workflows.fanin import ChildOutcome, MergeError, merge
from workflows.fanout import Contract, FanOutGraph, child_requests


def write_parent(root: Path, graph: dict[str, Any]) -> Path:
    folder = root / "WritersRoom"
    (folder / "_pack").mkdir(parents=True)
    files = {
        "orchestrator.json": {"workflow_name": "WritersRoom", "startup_mode": "AgentDriven",
                              "initial_agent": "DecompositionAgent"},
        "agents.json": {"agents": [
            {"name": "DecompositionAgent", "system_message": "Split the work.",
             "model": {"provider": "scripted", "script": []}},
            {"name": "ResumeRouterAgent", "system_message": "Route.", "model": {"provider": "scripted", "script": []}},
            {"name": "WritersHostAgent", "system_message": "Present.", "model": {"provider": "scripted", "script": []}},
        ]},
        "structured_outputs.json": {"models": {"PatternSelection": {"type": "object"}},
                                    "registry": {"DecompositionAgent": "PatternSelection"}},
        "_pack/workflow_graph.json": graph,
    }
    for name, body in files.items():
        (folder / name).write_text(json.dumps(body))
    return folder


# The MozaiksAI v3 shape, field for field (WritersRoom/_pack/workflow_graph.json plus every
# advanced fan_out/fan_in key).
MOZAIKS_V3 = {
    "version": 3,
    "mid_flight_journeys": [{
        "id": "writers_room_cycle",
        "description": "draft the chapters in parallel",
        "trigger_agent": "DecompositionAgent",
        "fan_out": {"spawn_mode": "workflow", "max_children": 4, "timeout_seconds": 300,
                    "input_contract": {"required": ["concept_overview"], "optional": ["style_guide"]},
                    "child_context_seed": {"tone": "warm"}},
        "fan_in": {"resume_agent": "WritersHostAgent", "resume_entry_agent": "ResumeRouterAgent",
                   "aggregation_strategy": "collect_all", "inject_as": "mfj_writers_room_results",
                   "on_partial_failure": "prompt_user",
                   "output_contract": {"required": ["chapter"], "optional": ["notes"]}},
    }],
}


def test_mozaiks_v3_pack_file_loads(tmp_path: Path) -> None:
    workflow = load_workflow(write_parent(tmp_path, MOZAIKS_V3))
    journey = workflow.fan_out.triggered_by("DecompositionAgent")
    assert journey is not None and journey.id == "writers_room_cycle"
    assert journey.fan_out.max_children == 4 and journey.fan_out.timeout_seconds == 300
    assert journey.fan_out.input_contract.required == ["concept_overview"]
    assert journey.fan_out.child_context_seed == {"tone": "warm"}
    assert journey.fan_in.merge_mode == "collect_all"
    assert journey.fan_in.inject_as == "mfj_writers_room_results"
    assert journey.fan_in.entry_agent == "ResumeRouterAgent"
    assert journey.fan_in.on_partial_failure == "prompt_user"
    assert journey.fan_in.output_contract.required == ["chapter"]
    assert workflow.fan_out.triggered_by("WritersHostAgent") is None
    assert workflow.warnings == []


@pytest.mark.parametrize("key", ["journeys", "nested_chats"])
def test_flat_v2_and_legacy_nested_chats_load_as_the_same_journey(tmp_path: Path, key: str) -> None:
    graph = {key: [{"trigger_agent": "DecompositionAgent", "spawn_mode": "generator_subrun",
                    "generator_workflow": "AgentGenerator", "resume_agent": "WritersHostAgent",
                    "merge_mode": "concatenate", "timeout_seconds": 60, "on_partial_failure": "fail_all",
                    "required_context": ["concept_overview"], "expected_output_keys": ["chapter"]}]}
    journey = load_workflow(write_parent(tmp_path, graph)).fan_out.triggers[0]
    assert journey.id == "trigger_DecompositionAgent"
    assert (journey.fan_out.spawn_mode, journey.fan_out.generator_workflow) == ("generator_subrun", "AgentGenerator")
    assert (journey.fan_in.resume_agent, journey.fan_in.merge_mode) == ("WritersHostAgent", "concatenate")
    assert journey.fan_in.on_partial_failure == "fail_all" and journey.fan_out.timeout_seconds == 60
    assert journey.fan_out.input_contract.required == ["concept_overview"]
    assert journey.fan_in.output_contract.required == ["chapter"]


def test_bad_pack_file_is_refused_with_file_and_path(tmp_path: Path) -> None:
    graph = json.loads(json.dumps(MOZAIKS_V3))
    graph["mid_flight_journeys"][0]["fan_in"]["resume_agent"] = "Nobody"
    graph["mid_flight_journeys"][0]["fan_in"]["merge_mode"] = "vibes"
    del graph["mid_flight_journeys"][0]["fan_in"]["aggregation_strategy"]
    with pytest.raises(WorkflowError) as caught:
        load_workflow(write_parent(tmp_path, graph))
    assert "WritersRoom/_pack/workflow_graph.json: mid_flight_journeys[0].fan_in.merge_mode:" in str(caught.value)
    graph["mid_flight_journeys"][0]["fan_in"]["merge_mode"] = "structured"
    (tmp_path / "WritersRoom" / "_pack" / "workflow_graph.json").write_text(json.dumps(graph))
    with pytest.raises(WorkflowError) as caught:
        load_workflow(tmp_path / "WritersRoom")
    assert str(caught.value) == (
        "WritersRoom/_pack/workflow_graph.json: mid_flight_journeys[0].fan_in.resume_agent: unknown agent 'Nobody'")


def test_trigger_agent_needs_a_structured_output(tmp_path: Path) -> None:
    graph = {"version": 3, "mid_flight_journeys": [{"id": "x", "trigger_agent": "WritersHostAgent"}]}
    with pytest.raises(WorkflowError, match=r"mid_flight_journeys\[0\].trigger_agent: agent 'WritersHostAgent' has no"):
        load_workflow(write_parent(tmp_path, graph))


def test_children_from_pattern_selection_and_from_our_children_list() -> None:
    journey = FanOutGraph.model_validate(MOZAIKS_V3).triggers[0]
    selection = {"PatternSelection": {"is_multi_workflow": True, "workflows": [
        {"name": "Research", "description": "find sources"}, {"name": "Drafting", "initial_message": "write"}]}}
    children = child_requests(selection, journey)
    assert [(c.workflow, c.message, c.context) for c in children] == [
        ("Research", "find sources", {"tone": "warm"}), ("Drafting", "write", {"tone": "warm"})]
    ours = child_requests({"children": [{"workflow": "Research", "context": {"tone": "dry"}, "key": "r"}]}, journey)
    assert (ours[0].key, ours[0].context) == ("r", {"tone": "dry"})
    with pytest.raises(ValueError, match="no child list"):
        child_requests({"plan": []}, journey)
    with pytest.raises(ValueError, match="child 0"):
        child_requests({"children": [{"message": "no workflow"}]}, journey)


def test_generator_subrun_children_all_run_the_generator() -> None:
    journey = FanOutGraph.model_validate({"journeys": [{
        "trigger_agent": "Planner", "spawn_mode": "generator_subrun", "generator_workflow": "AgentGenerator"}]}).triggers[0]
    children = child_requests({"sub_tasks": ["agent A", {"task": "agent B"}]}, journey)
    assert [(c.workflow, c.message) for c in children] == [("AgentGenerator", "agent A"), ("AgentGenerator", "agent B")]


def outcomes(*results: Any, failed: int | None = None) -> list[ChildOutcome]:
    return [ChildOutcome(key=str(i), workflow="w", chat_id=f"c{i}", result=r,
                         status="failed" if i == failed else "completed") for i, r in enumerate(results)]


def test_merge_collect_all_keeps_every_outcome() -> None:
    merged = merge("collect_all", outcomes("a", None, failed=1))
    assert [(m["key"], m["status"], m["result"]) for m in merged] == [("0", "completed", "a"), ("1", "failed", None)]


def test_merge_concatenate_joins_completed_results() -> None:
    assert merge("concatenate", outcomes("one", "lost", {"b": 1}, failed=1)) == 'one\n\n{"b": 1}'


def test_merge_structured_validates_against_output_contract() -> None:
    contract = Contract(required=["chapter"])
    assert merge("structured", outcomes({"chapter": 1}, {"chapter": 2}), contract) == {
        "0": {"chapter": 1}, "1": {"chapter": 2}}
    with pytest.raises(MergeError, match="child 1: missing chapter"):
        merge("structured", outcomes({"chapter": 1}, {"notes": "x"}), contract)


def test_merge_deep_merge_combines_objects_and_lists() -> None:
    merged = merge("deep_merge", outcomes({"agents": ["A"], "meta": {"x": 1}}, {"agents": ["B"], "meta": {"y": 2}}))
    assert merged == {"agents": ["A", "B"], "meta": {"x": 1, "y": 2}}
    with pytest.raises(MergeError, match="needs an object"):
        merge("deep_merge", outcomes("text"))


def test_merge_first_success_skips_failures() -> None:
    assert merge("first_success", outcomes("bad", "good", "later", failed=0)) == "good"
    assert merge("first_success", outcomes("bad", failed=0)) is None


def test_merge_majority_vote_counts_equal_answers() -> None:
    assert merge("majority_vote", outcomes({"v": "yes"}, {"v": "no"}, {"v": "yes"})) == {
        "value": {"v": "yes"}, "votes": 2, "of": 3}
    # A tie goes to the answer that finished first.
    assert merge("majority_vote", outcomes("b", "a"))["value"] == "b"
