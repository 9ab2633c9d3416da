"""MozaiksAI workflow folders, in that runtime's spellings: each loads, or is refused saying why."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflows import WorkflowError, load_workflow
from workflows.json_schema import validate_arguments

FIXTURES = Path(__file__).parent / "mozaiksai"


def test_trip_planner_loads_with_the_meaning_it_had() -> None:
    workflow = load_workflow(FIXTURES / "TripPlanner")
    assert workflow.warnings == []

    name, schema = workflow.output_schema_for("ItineraryAgent") or ("", {})
    assert name == "Itinerary" and workflow.output_schema_for("IntakeAgent") is None
    good = {"title": "Lisbon", "stops": [{"city": "Lisbon", "nights": 3, "kind": "city"}], "budget": "flexible",
            "notes": None}
    assert validate_arguments(schema, good) == []
    assert validate_arguments(schema, {**good, "stops": [{"city": "Lisbon", "nights": 3, "kind": "moon"}]}) == [
        'stops[0].kind: must be one of "city", "beach", "mountains"']
    assert validate_arguments(schema, {**good, "budget": [1]}) == ["budget: does not match any of the allowed types"]
    assert "notes: is required" in validate_arguments(schema, {k: v for k, v in good.items() if k != "notes"})

    defaults = {v.name: (v.default, v.source.type) for v in workflow.context_variables}
    assert defaults == {"destination_known": (False, "state"), "nights": (3, "state"),
                        "booking_confirmed": (False, "state"), "currency": ("EUR", "env")}
    kinds = [(h.source_agent, h.target_agent, h.condition_type) for h in workflow.handoffs]
    assert kinds == [("user", "IntakeAgent", "expression"), ("user", "ConciergeAgent", "expression"),
                     ("user", "ItineraryAgent", "llm"),
                     ("IntakeAgent", "ItineraryAgent", "expression"),
                     ("ItineraryAgent", "ConciergeAgent", "llm"), ("ItineraryAgent", "user", "llm"),
                     ("ConciergeAgent", "terminate", "expression"), ("ConciergeAgent", "user", None)]

    intake = {t.name: t.file for t in workflow.tools_for("IntakeAgent")}
    concierge = {t.name: t.file for t in workflow.tools_for("ConciergeAgent")}
    assert intake == {"note_destination": "intake.py"}
    assert concierge == {"note_destination": "concierge.py", "confirm_booking": "concierge.py"}
    # the chat's context is injected, never offered to the model as an argument
    assert all("context_variables" not in (t.parameters or {}).get("properties", {}) for t in workflow.tools)
    assert workflow.orchestrator.visual_agents == ["IntakeAgent", "ConciergeAgent"]


# Every folder under tests/mozaiksai/ either loads with no warning, or is refused with these lines.
REFUSED_FIXTURES = {
    "LegacyRouter": [
        "LegacyRouter/context_variables.yaml: definitions[0].source.type: source type 'data_reference' is not "
        "supported",
        "LegacyRouter/hooks.yaml: hooks[0]: hook type 'process_message_before_send' is not supported",
        "LegacyRouter/orchestrator.yaml: orchestration_pattern: 'AutoPattern' is not supported",
    ],
}


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_each_fixture_loads_or_is_refused_as_documented(name: str) -> None:
    if name not in REFUSED_FIXTURES:
        assert load_workflow(FIXTURES / name).warnings == []
        return
    with pytest.raises(WorkflowError) as caught:
        load_workflow(FIXTURES / name)
    lines = str(caught.value).splitlines()
    assert len(lines) == len(REFUSED_FIXTURES[name]), lines
    for expected in REFUSED_FIXTURES[name]:
        assert [line for line in lines if line.startswith(expected)], (expected, lines)


def test_news_desk_lifecycle_tools_and_greeting_load() -> None:
    workflow = load_workflow(FIXTURES / "NewsDesk")  # JSON, each file wrapped in a key named like it
    hooks = [(t.trigger, t.agents, t.file, t.function) for t in workflow.lifecycle_tools]
    assert hooks == [("before_chat", [], "desk.py", "open_desk"), ("before_agent", ["Writer"], "desk.py", "brief_writer"),
                     ("before_agent", ["Editor"], "desk.py", "check_wire"), ("after_agent", [], "desk.py", "count_turn"),
                     ("after_chat", [], "desk.py", "archive")]
    assert workflow.lifecycle_tools[0].parameters == {"type": "object", "properties": {}, "additionalProperties": False}
    assert workflow.orchestrator.initial_message_to_user.startswith("Welcome to the news desk")
    scopes = [(h.source_agent, h.target_agent, h.condition_scope) for h in workflow.handoffs if h.condition]
    assert scopes == [("Editor", "Writer", "pre"), ("Editor", "Writer", "post")]
    trigger = workflow.context_variables[-1].source.triggers[0]
    assert trigger.ui_hidden is True and trigger.match == {"equals": "NEXT"}


def _variant(tmp_path: Path, file: str, old: str, new: str) -> Path:
    folder = tmp_path / "TripPlanner"
    shutil.copytree(FIXTURES / "TripPlanner", folder)
    path = folder / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return folder


REFUSED = [
    ("context_variables.yaml", "type: runtime\n    default: 3", "type: data_reference\n    default: 3",
     "context_variables.yaml: definitions[1].source.type: source type 'data_reference' is not supported: "
     "variables are not read from a database here"),
    ("context_variables.yaml", "type: runtime\n    default: 3", "type: computed\n    default: 3",
     "source type 'computed' is not supported: computed variables are not evaluated here"),
    ("hooks.yaml", "hooks: []", "hooks:\n- hook_type: update_agent_state\n  hook_agent: IntakeAgent\n"
     "  filename: h.py\n  function: f\n",
     "TripPlanner/hooks.yaml: hooks[0]: hook type 'update_agent_state' is not supported"),
    ("orchestrator.yaml", "DefaultPattern", "AutoPattern",
     "orchestration_pattern: 'AutoPattern' is not supported: this runtime routes by handoffs.json only"),
    ("tools.yaml", "lifecycle_tools: []", "lifecycle_tools:\n- trigger: before_chat\n  file: intake.py\n"
     "  function: note_destination\n", "tools.yaml: lifecycle_tools[0].function: note_destination needs 'city', "
     "'nights': a lifecycle tool is called with no arguments but context_variables"),
    ("tools.yaml", "lifecycle_tools: []", "lifecycle_tools:\n- trigger: before_chat\n  agent: IntakeAgent\n"
     "  file: intake.py\n  function: note_destination\n",
     "tools.yaml: lifecycle_tools[0]: before_chat runs once per run, for no agent in particular"),
    ("tools.yaml", "lifecycle_tools: []", "lifecycle_tools:\n- trigger: before_agent\n  agent: Nobody\n"
     "  file: concierge.py\n  function: confirm_booking\n", "tools.yaml: lifecycle_tools[0].agents[0]: unknown "
     "agent 'Nobody'"),
    ("tools.yaml", "lifecycle_tools: []", "lifecycle_tools:\n- trigger: on_start\n  file: intake.py\n"
     "  function: note_destination\n", "tools.yaml: lifecycle_tools[0].trigger: Input should be 'before_chat', "
     "'after_chat', 'before_agent' or 'after_agent'"),
    ("structured_outputs.yaml", "items: Stop", "items: Stopp",
     "structured_outputs.yaml: structured_outputs.models.Itinerary.fields.stops.items: unknown type 'Stopp'"),
    ("tools.yaml", "- agent: ConciergeAgent\n  file: tools/concierge.py\n  function: note_destination",
     "- agent: IntakeAgent\n  file: tools/concierge.py\n  function: note_destination",
     "tools.yaml: tools[1].name: duplicate tool name 'note_destination' for agent 'IntakeAgent' (also tools[0])"),
]


@pytest.mark.parametrize(("file", "old", "new", "message"), REFUSED, ids=[r[3].split(":")[0] + str(i)
                                                                          for i, r in enumerate(REFUSED)])
def test_what_this_runtime_cannot_honour_is_refused_at_load(tmp_path: Path, file: str, old: str, new: str,
                                                            message: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(_variant(tmp_path, file, old, new))
    assert message in str(caught.value)


WARNED = [
    ("tools.yaml", "auto_invoke: false", "auto_invoke: true",
     "TripPlanner/tools.yaml: tools[0].auto_invoke: never invoked by itself: none of its agents has a structured"),
    ("ui_config.yaml", "- user\n", "- user\ntheme: dark\n", "TripPlanner/ui_config.yaml: theme: not used"),
]


@pytest.mark.parametrize(("file", "old", "new", "message"), WARNED)
def test_what_loads_with_another_meaning_is_warned(tmp_path: Path, file: str, old: str, new: str,
                                                   message: str) -> None:
    workflow = load_workflow(_variant(tmp_path, file, old, new))
    assert [w for w in workflow.warnings if message in w], workflow.warnings


def test_a_ui_tool_of_an_agent_with_a_structured_output_runs_after_it_unless_told_not_to(tmp_path: Path) -> None:
    folder = _variant(tmp_path, "structured_outputs.yaml", "ConciergeAgent: null", "ConciergeAgent: Itinerary")
    assert load_workflow(folder).auto_tool_for("ConciergeAgent").name == "confirm_booking"  # MozaiksAI's default
    tools = folder / "tools.yaml"
    tools.write_text(tools.read_text().replace("tool_type: UI_Tool", "tool_type: UI_Tool\n  auto_invoke: false"))
    assert load_workflow(folder).auto_tool_for("ConciergeAgent") is None


def _validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mozaiks.cli.main", "validate", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_validate_reports_every_folder_and_fails_if_any_is_refused(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "TripPlanner", tmp_path / "TripPlanner")
    _variant(tmp_path / "bad", "orchestrator.yaml", "DefaultPattern", "AutoPattern")
    (tmp_path / "bad" / "TripPlanner").rename(tmp_path / "Planner2")
    (tmp_path / "Planner2" / "orchestrator.yaml").write_text(
        (tmp_path / "Planner2" / "orchestrator.yaml").read_text().replace("TripPlanner", "Planner2"))
    (tmp_path / "bad").rmdir()
    done = _validate(str(tmp_path))
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "ok TripPlanner: 3 agents, 4 tools" in out
    assert "refused Planner2" in out
    assert "Planner2/orchestrator.yaml: orchestration_pattern: 'AutoPattern' is not supported" in out
    assert "1 of 2 refused" in out


def test_validate_strict_refuses_warnings(tmp_path: Path) -> None:
    folder = _variant(tmp_path, "tools.yaml", "auto_invoke: false", "auto_invoke: true")
    lenient, strict = _validate(str(folder)), _validate("--strict", str(folder))
    assert lenient.returncode == 0 and "warning: TripPlanner/tools.yaml: tools[0].auto_invoke" in lenient.stderr
    assert strict.returncode == 1 and "refused TripPlanner (--strict: warnings are errors)" in strict.stderr
