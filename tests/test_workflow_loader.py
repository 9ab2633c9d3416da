import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflows import WorkflowError, load_pack, load_workflow, load_workflows
from workflows.loader import Issue

TOOL_SOURCE = '''
from typing import Literal, Optional

async def lookup(q: str, limit: int = 5, ctx: "ToolContext" = None) -> dict:
    return {"q": q}

def campaign_props(title: str, mode: Literal["a", "b"] | None = None) -> dict:
    return {"title": title}
'''


def canonical() -> dict[str, Any]:
    return {
        "orchestrator": {
            "name": "Greeter", "display_name": "Greeter", "description": "Says hello", "version": "2",
            "startup_mode": "UserDriven", "initial_agent": "Host", "initial_message": "Begin.",
            "max_turns": 12, "human_in_the_loop": False, "concurrency": "reject", "input_timeout_s": 30,
            "visual_agents": ["Host"], "model": {"provider": "openai", "name": "gpt-4o-mini"},
        },
        "agents": {"agents": [
            {"name": "Host", "display_name": "Host", "description": "greets",
             "prompt_sections": [{"heading": "Role", "content": "Greet."}, {"heading": "Style", "content": "Brief."}],
             "model": {"provider": "scripted", "script": [
                 {"text": "Hi {context.user_name}"},
                 {"tool_calls": [{"name": "lookup", "arguments": {"q": "{last_user_message}"}}]},
                 {"handoff": "Reviewer"},
             ]},
             "tools": ["lookup"], "max_consecutive_turns": 3},
            {"name": "Reviewer", "system_message": "Review.", "structured_output": "Verdict",
             "model": {"provider": "openai", "name": "gpt-4o", "temperature": 0.2, "max_tokens": 100}},
        ]},
        "handoffs": {"handoff_rules": [
            {"source_agent": "Host", "target_agent": "Reviewer", "handoff_type": "condition",
             "condition_type": "expression", "condition": "${greeted} == true and ${score} > 3"},
            {"source_agent": "Reviewer", "target_agent": "Host", "handoff_type": "condition",
             "condition_type": "llm", "condition": "When the user wants more"},
            {"source_agent": "Reviewer", "target_agent": "terminate"},
        ]},
        "tools": {"tools": [
            {"name": "lookup", "description": "Look up", "file": "lookup.py", "function": "lookup",
             "kind": "agent_tool", "execution": {"num_cpus": 0.25, "resources": {"generator": 1}, "timeout_s": 30}},
            {"name": "campaign", "file": "lookup.py", "function": "campaign_props", "agents": ["Reviewer"],
             "kind": "ui_tool", "ui": {"component": "CampaignBoard", "display": "artifact"}, "timeout_s": 600},
        ]},
        "context_variables": {"definitions": [
            {"name": "greeted", "type": "boolean", "default": False, "source": {"type": "state", "triggers": [
                {"type": "agent_text", "agent": "Host", "match": {"contains": "hello"}, "value": True}]}},
            {"name": "api_base", "source": {"type": "env", "env_var": "API_BASE"}},
        ]},
        "structured_outputs": {"models": {"Verdict": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
                               "registry": {"Reviewer": "Verdict"}},
    }


def mozaiks_yaml() -> dict[str, Any]:
    """The same workflow in MozaiksAI's spellings and shapes."""
    files = canonical()
    orchestrator = dict(files["orchestrator"])
    orchestrator["workflow_name"] = orchestrator.pop("name")
    orchestrator["recipient"] = orchestrator.pop("initial_agent")
    host, reviewer = (dict(a) for a in files["agents"]["agents"])
    host["max_consecutive_auto_reply"] = host.pop("max_consecutive_turns")
    host["human_input_mode"] = "NEVER"  # unknown MozaiksAI keys are ignored
    lookup, campaign = (dict(t) for t in files["tools"]["tools"])
    lookup["tool_type"] = "Agent_Tool"
    del lookup["kind"], lookup["name"]  # MozaiksAI tools are named by their function
    lookup["function"] = "lookup"
    lookup["ui"] = {"component": None, "mode": None}
    campaign["tool_type"] = "UI_Tool"
    del campaign["kind"]
    campaign["agent"] = campaign.pop("agents")[0]
    campaign["ui"] = {"component": "CampaignBoard", "mode": "artifact"}
    greeted, api_base = (dict(v) for v in files["context_variables"]["definitions"])
    greeted["default_value"] = greeted.pop("default")
    greeted["triggers"] = greeted["source"].pop("triggers")
    del greeted["source"]
    return {
        "orchestrator": orchestrator,
        "agents": {"agents": {a.pop("name"): a for a in (host, reviewer)}},
        "handoffs": {"handoffs": files["handoffs"]},
        "tools": {"tools": [lookup, campaign]},
        "context_variables": {"context_variables": {v.pop("name"): v for v in (greeted, api_base)}},
        "structured_outputs": {"structured_outputs": files["structured_outputs"]},
    }


def write(folder: Path, files: dict[str, Any], fmt: str = "json", tool_source: str = TOOL_SOURCE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, content in files.items():
        text = json.dumps(content) if fmt == "json" else yaml.safe_dump(content, sort_keys=False)
        (folder / f"{stem}.{fmt}").write_text(text)
    (folder / "tools").mkdir(exist_ok=True)
    (folder / "tools" / "lookup.py").write_text(tool_source)
    return folder


def error_of(folder: Path) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        load_workflow(folder)
    return info.value


def test_valid_json_workflow_loads_every_field(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path / "Greeter", canonical()))

    assert wf.name == "Greeter" and wf.path == (tmp_path / "Greeter").resolve()
    o = wf.orchestrator
    assert (o.startup_mode, o.initial_message, o.max_turns, o.human_in_the_loop) == ("UserDriven", "Begin.", 12, False)
    assert (o.concurrency, o.input_timeout_s, o.visual_agents, o.version) == ("reject", 30, ["Host"], "2")
    assert wf.agent_names == ["Host", "Reviewer"] and wf.initial_agent_name == "Host"

    host = wf.agent("Host")
    assert host.system_prompt() == "## Role\nGreet.\n\n## Style\nBrief."
    assert host.max_consecutive_turns == 3 and host.model is not None
    assert [r.handoff for r in host.model.script] == [None, None, "Reviewer"]
    assert host.model.script[1].tool_calls[0].arguments == {"q": "{last_user_message}"}
    reviewer = wf.agent("Reviewer")
    assert reviewer.system_prompt() == "Review."
    assert reviewer.model is not None and reviewer.model.params == {"max_tokens": 100}
    assert wf.model_for("Host") is host.model
    with pytest.raises(KeyError):
        wf.agent("Nobody")

    assert [h.condition_type for h in wf.handoffs] == ["expression", "llm", None]
    assert wf.handoffs[2].handoff_type == "after_work"

    assert [t.name for t in wf.tools_for("Host")] == ["lookup"]
    assert [t.name for t in wf.tools_for("Reviewer")] == ["campaign"]
    lookup, campaign = wf.tool("lookup"), wf.tool("campaign")
    assert lookup.execution.resources == {"generator": 1} and lookup.execution.num_cpus == 0.25
    assert lookup.parameters == {
        "type": "object", "properties": {"q": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["q"], "additionalProperties": False,
    }
    assert campaign.kind == "ui_tool" and campaign.ui is not None and campaign.ui.display == "artifact"
    assert campaign.timeout_s == 600
    assert campaign.parameters is not None
    assert campaign.parameters["properties"]["mode"] == {"type": ["string", "null"], "enum": ["a", "b", None]}

    greeted = wf.context_variables[0]
    assert greeted.source.type == "state" and greeted.source.triggers[0].match == {"contains": "hello"}
    assert wf.context_variables[1].source.env_var == "API_BASE"
    assert wf.output_schema_for("Reviewer") == ("Verdict", canonical()["structured_outputs"]["models"]["Verdict"])
    assert wf.output_schema_for("Host") is None
    assert wf.public_info() == {"name": "Greeter", "display_name": "Greeter", "description": "Says hello"}


def test_mozaiks_yaml_spellings_load_equal(tmp_path: Path) -> None:
    from_json = load_workflow(write(tmp_path / "json" / "Greeter", canonical()))
    from_yaml = load_workflow(write(tmp_path / "yaml" / "Greeter", mozaiks_yaml(), fmt="yaml"))
    # in MozaiksAI's spelling a UI_Tool of an agent with a structured output runs after each one
    assert from_yaml.tool("campaign").auto_invoke is True and from_json.tool("campaign").auto_invoke is None
    as_yaml = from_yaml.model_dump(exclude={"path"})
    as_yaml["tools"][1]["auto_invoke"] = None
    assert as_yaml == from_json.model_dump(exclude={"path"})


def test_json_wins_over_yaml_for_the_same_stem(tmp_path: Path) -> None:
    folder = write(tmp_path / "Greeter", canonical())
    (folder / "orchestrator.yaml").write_text("workflow_name: Other\n")
    assert load_workflow(folder).name == "Greeter"


def test_optional_files_and_name_default(tmp_path: Path) -> None:
    folder = tmp_path / "Tiny"
    folder.mkdir()
    (folder / "orchestrator.yaml").write_text("max_turns: 3\n")
    (folder / "agents.yaml").write_text("- name: Solo\n  system_message: hi\n")
    wf = load_workflow(folder)
    assert wf.name == "Tiny" and wf.agent_names == ["Solo"] and wf.tools == [] and wf.handoffs == []


def test_ui_tool_without_file_gets_an_open_schema(tmp_path: Path) -> None:
    files = canonical()
    del files["tools"]["tools"][1]["file"]
    wf = load_workflow(write(tmp_path / "Greeter", files))
    assert wf.tool("campaign").parameters == {"type": "object", "properties": {}}


def _mutate(files: dict[str, Any], change: str) -> None:
    agents = files["agents"]["agents"]
    rules = files["handoffs"]["handoff_rules"]
    tools = files["tools"]["tools"]
    match change:
        case "unknown_target":
            rules[2]["target_agent"] = "Ghost"
        case "missing_tool_file":
            tools[0]["file"] = "nope.py"
        case "missing_function":
            tools[0]["function"] = "nope"
        case "ui_without_ui":
            del tools[1]["ui"]
        case "bad_expression":
            rules[0]["condition"] = "${greeted} == true and len(${x})"
        case "duplicate_agent":
            agents.append({"name": "Host"})
        case "condition_without_type":
            del rules[1]["condition_type"]
        case "bad_script":
            agents[0]["model"]["script"][0] = {"txt": "typo"}
        case "unknown_agent_tool":
            agents[1]["tools"] = ["lookup", "nope"]
        case "scripted_without_script":
            del agents[0]["model"]["script"]
        case "unknown_output_model":
            agents[1]["structured_output"] = "Nope"


@pytest.mark.parametrize(("change", "file", "path"), [
    ("unknown_target", "Greeter/handoffs.json", "handoff_rules[2].target_agent"),
    ("missing_tool_file", "Greeter/tools.json", "tools[0].file"),
    ("missing_function", "Greeter/tools.json", "tools[0].function"),
    ("ui_without_ui", "Greeter/tools.json", "tools[1].ui"),
    ("bad_expression", "Greeter/handoffs.json", "handoff_rules[0].condition"),
    ("duplicate_agent", "Greeter/agents.json", "agents[2].name"),
    ("condition_without_type", "Greeter/handoffs.json", "handoff_rules[1].condition_type"),
    ("bad_script", "Greeter/agents.json", "agents[0].model.script[0].txt"),
    ("unknown_agent_tool", "Greeter/agents.json", "agents[1].tools[1]"),
    ("scripted_without_script", "Greeter/agents.json", "agents[0].model"),
    ("unknown_output_model", "Greeter/agents.json", "agents[1].structured_output"),
])
def test_invalid_input_names_file_and_path(tmp_path: Path, change: str, file: str, path: str) -> None:
    files = canonical()
    _mutate(files, change)
    error = error_of(write(tmp_path / "Greeter", files))
    assert (error.file, error.path) == (file, path)
    assert str(error).startswith(f"{file}: {path}: ")


def test_bad_expression_message_says_where(tmp_path: Path) -> None:
    files = canonical()
    _mutate(files, "bad_expression")
    assert "unknown name 'len'" in error_of(write(tmp_path / "Greeter", files)).message


def test_bad_json_reports_line(tmp_path: Path) -> None:
    folder = write(tmp_path / "Greeter", canonical())
    (folder / "agents.json").write_text('{\n  "agents": [\n    {"name": "Host",}\n  ]\n}\n')
    error = error_of(folder)
    assert (error.file, error.path) == ("Greeter/agents.json", "$")
    assert "line 3" in error.message


def test_bad_yaml_reports_line(tmp_path: Path) -> None:
    folder = write(tmp_path / "Greeter", mozaiks_yaml(), fmt="yaml")
    (folder / "handoffs.yaml").write_text("handoff_rules:\n  - source_agent: Host\n   target_agent: [\n")
    error = error_of(folder)
    assert (error.file, error.path) == ("Greeter/handoffs.yaml", "$") and "line 3" in error.message


def test_yaml_paths_follow_the_file_shape(tmp_path: Path) -> None:
    files = mozaiks_yaml()
    files["agents"]["agents"]["Reviewer"]["model"]["temperature"] = "hot"
    error = error_of(write(tmp_path / "Greeter", files, fmt="yaml"))
    assert (error.file, error.path) == ("Greeter/agents.yaml", "agents.Reviewer.model.temperature")


def test_workflow_name_must_be_the_folder_name(tmp_path: Path) -> None:
    error = error_of(write(tmp_path / "Other", canonical()))
    assert (error.file, error.path) == ("Other/orchestrator.json", "name")
    error = error_of(write(tmp_path / "Yaml", mozaiks_yaml(), fmt="yaml"))
    assert (error.file, error.path) == ("Yaml/orchestrator.yaml", "workflow_name")


def test_missing_orchestrator(tmp_path: Path) -> None:
    folder = write(tmp_path / "Greeter", canonical())
    (folder / "orchestrator.json").unlink()
    error = error_of(folder)
    assert (error.file, error.path) == ("Greeter/orchestrator.json", "$")


def test_several_errors_are_listed_one_per_line(tmp_path: Path) -> None:
    files = canonical()
    files["orchestrator"]["max_turns"] = 0
    files["handoffs"]["handoff_rules"][0]["condition"] = "${a} =="
    error = error_of(write(tmp_path / "Greeter", files))
    lines = str(error).splitlines()
    assert lines[0].startswith("Greeter/orchestrator.json: max_turns: ")
    assert lines[1].startswith("Greeter/handoffs.json: handoff_rules[0].condition: ")
    assert error.issues[1] == Issue("Greeter/handoffs.json", "handoff_rules[0].condition", error.issues[1].message)


def test_unsupported_hint_asks_for_explicit_parameters(tmp_path: Path) -> None:
    source = TOOL_SOURCE + "\ndef odd(x: tuple[int, int]) -> None: ...\n"
    files = canonical()
    files["tools"]["tools"][0]["function"] = "odd"
    error = error_of(write(tmp_path / "Greeter", files, tool_source=source))
    assert (error.file, error.path) == ("Greeter/tools.json", "tools[0].parameters")
    assert "'x'" in error.message


def test_tool_file_must_stay_inside_tools(tmp_path: Path) -> None:
    files = canonical()
    files["tools"]["tools"][0]["file"] = "../agents.json"
    error = error_of(write(tmp_path / "Greeter", files))
    assert (error.path, error.message) == ("tools[0].file", "must name a file inside tools/")


def test_load_workflows_skips_private_folders_and_names_the_bad_one(tmp_path: Path) -> None:
    write(tmp_path / "Greeter", canonical())
    (tmp_path / "_pack").mkdir()
    (tmp_path / ".cache").mkdir()
    assert list(load_workflows(tmp_path)) == ["Greeter"]

    bad = canonical()
    bad["orchestrator"]["name"] = "Broken"
    bad["handoffs"]["handoff_rules"][0]["target_agent"] = "Ghost"
    write(tmp_path / "Broken", bad)
    with pytest.raises(WorkflowError) as info:
        load_workflows(tmp_path)
    assert info.value.file == "Broken/handoffs.json"


def test_pack_graph(tmp_path: Path) -> None:
    assert load_pack(tmp_path) is None
    (tmp_path / "_pack").mkdir()
    graph_file = tmp_path / "_pack" / "workflow_graph.json"
    graph_file.write_text(json.dumps({
        "workflows": [{"id": "B", "dependencies": ["A"]}, {"id": "D", "dependencies": ["B", "C"]}],
        "journeys": [{"id": "main", "steps": ["A", ["B", "C"], "D"]}],
    }))
    graph = load_pack(tmp_path, known=["A", "B", "C", "D"])
    assert graph is not None
    assert graph.dependencies_of("D") == ["B", "C"] and graph.dependencies_of("A") == []
    [after_a] = graph.next_steps("A")
    assert (after_a.journey_id, after_a.step_index, after_a.step, after_a.next_step) == ("main", 0, ["A"], ["B", "C"])
    [after_c] = graph.next_steps("C", journey_id="main")
    assert (after_c.step, after_c.next_step) == (["B", "C"], ["D"])
    assert graph.next_steps("D")[0].next_step == []
    assert graph.next_steps("A", journey_id="other") == []

    with pytest.raises(WorkflowError) as info:
        load_pack(tmp_path, known=["A", "B", "D"])
    assert (info.value.file, info.value.path) == ("_pack/workflow_graph.json", "workflows[1].dependencies[1]")

    graph_file.write_text(json.dumps({"workflows": [{"id": "A", "dependencies": ["B"]}, {"id": "B", "dependencies": ["A"]}]}))
    with pytest.raises(WorkflowError, match="dependency cycle: A -> B -> A"):
        load_pack(tmp_path)


def test_workflow_error_pickles() -> None:
    import pickle

    error = WorkflowError("a.json", "x", "bad", [Issue("b.json", "y", "worse")])
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error) == "a.json: x: bad\nb.json: y: worse"


def test_tool_files_are_parsed_not_imported(tmp_path: Path) -> None:
    source = "raise RuntimeError('imported at load time')\n" + TOOL_SOURCE
    assert load_workflow(write(tmp_path / "Greeter", canonical(), tool_source=source)).tool("lookup")

    error = error_of(write(tmp_path / "broken" / "Greeter", canonical(), tool_source="def lookup(:\n"))
    assert (error.file, error.path) == ("Greeter/tools.json", "tools[0].file")
    assert error.message.startswith("tools/lookup.py: syntax error at line 1")
