"""Reads workflow folders into validated Workflow objects.

A workflow is refused whole or loaded whole: every problem becomes a WorkflowError naming the
file and the JSON path inside it, and several problems are reported together.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from workflows.model import (
    AgentConfig, ContextVariable, HandoffRule, LifecycleTool, OrchestratorConfig, ReferenceIssue,
    StructuredOutputs, ToolSpec, Workflow,
)
from workflows.fanout import FanOutGraph
from workflows.pack import PackGraph
from workflows.structured_models import translate_models
from workflows.tool_ast import UnsupportedAnnotation, find_function, infer_parameters

__all__ = ["Issue", "WorkflowError", "load_workflow", "load_workflows", "load_pack"]

SUFFIXES = (".json", ".yaml", ".yml")  # first found wins: JSON over YAML for the same stem
M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", bound=ToolSpec)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Issue:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"


class WorkflowError(Exception):
    """`file: path: message`, one line per problem; file/path/message describe the first."""

    def __init__(self, file: str, path: str, message: str, more: Sequence[Issue] = ()) -> None:
        self.file = file
        self.path = path
        self.message = message
        self.issues = [Issue(file, path, message), *more]
        super().__init__("\n".join(map(str, self.issues)))

    def __reduce__(self) -> tuple[Any, ...]:  # keeps the error intact across Ray/pickle
        return type(self), (self.file, self.path, self.message, tuple(self.issues[1:]))

    @classmethod
    def of(cls, issues: Sequence[Issue]) -> WorkflowError:
        first, *rest = issues
        return cls(first.file, first.path, first.message, rest)


@dataclass(frozen=True)
class _Doc:
    file: str  # as shown in errors
    data: Any


@dataclass(frozen=True)
class _Items:
    """The entries of a list section, each with its JSON path in the file it came from."""

    file: str
    paths: list[str]
    raw: list[Any]


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _show(path: str) -> str:
    return path or "$"


def _display(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)


def _find(folder: Path, stem: str) -> Path | None:
    return next((p for s in SUFFIXES if (p := folder / f"{stem}{s}").is_file()), None)


def _read(folder: Path, stem: str, base: Path) -> _Doc | None:
    path = _find(folder, stem)
    if path is None:
        return None
    file = _display(path, base)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WorkflowError(file, "$", f"not UTF-8 text: {exc.reason}") from None
    if path.suffix == ".json":
        try:
            return _Doc(file, json.loads(text))
        except json.JSONDecodeError as exc:
            raise WorkflowError(file, "$", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    try:
        return _Doc(file, yaml.safe_load(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise WorkflowError(file, "$", f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None


def _unwrap(data: Any, stem: str) -> tuple[Any, str]:
    """MozaiksAI wraps a file's content in a key named like the file: {"handoffs": {…}}."""
    if isinstance(data, dict) and len(data) == 1 and stem in data:
        return data[stem], stem
    return data, ""


class _Collector:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, file: str, path: str, message: str) -> None:
        self.issues.append(Issue(file, _show(path), message))

    def validate(self, model: type[M], raw: Any, file: str, path: str) -> M | None:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                where = path
                for key in error["loc"]:
                    where = _join(where, key)
                self.add(file, where, error["msg"].removeprefix("Value error, "))
            return None

    def raise_if_any(self) -> None:
        if self.issues:
            raise WorkflowError.of(self.issues)

    def items(self, doc: _Doc | None, stem: str, keys: tuple[str, ...], named: bool) -> _Items:
        """A list section: `[…]`, `{key: […]}`, or (named) a mapping of name to definition."""
        if doc is None:
            return _Items("", [], [])
        data, path = _unwrap(doc.data, stem)
        if isinstance(data, dict) and (key := next((k for k in keys if k in data), None)):
            data, path = data[key], _join(path, key)
        if data is None:
            return _Items(doc.file, [], [])
        if isinstance(data, list):
            return _Items(doc.file, [_join(path, i) for i in range(len(data))], data)
        if named and isinstance(data, dict):
            raw = [{**v, "name": name} if isinstance(v, dict) else v for name, v in data.items()]
            return _Items(doc.file, [_join(path, str(name)) for name in data], raw)
        shape = f"a list under {keys[0]!r}" + (" or a mapping of name to definition" if named else "")
        self.add(doc.file, path, f"expected {shape}")
        return _Items(doc.file, [], [])

    def validate_all(self, model: type[M], items: _Items) -> list[M]:
        validated = [self.validate(model, raw, items.file, path) for path, raw in zip(items.paths, items.raw)]
        return [v for v in validated if v is not None]


def load_workflow(folder: Path) -> Workflow:
    """Load one workflow folder; errors name files relative to the folder's parent."""
    folder = Path(folder).resolve()
    return _load(folder, folder.parent)


def load_workflows(root: Path) -> dict[str, Workflow]:
    """Every sub-folder not starting with `_` or `.`, keyed by workflow (= folder) name."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise WorkflowError(str(root), "$", "workflows directory not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    return {folder.name: _load(folder, root) for folder in folders}


def _load(folder: Path, base: Path) -> Workflow:
    docs = _read_docs(folder, base)
    collect = _Collector()
    orchestrator_doc = docs["orchestrator"]
    assert orchestrator_doc is not None
    orchestrator, orchestrator_path = _load_orchestrator(folder, orchestrator_doc, collect)
    sections = _sections(docs, collect)
    agents = collect.validate_all(AgentConfig, sections["agents"])
    handoffs = collect.validate_all(HandoffRule, sections["handoffs"])
    tools = collect.validate_all(ToolSpec, sections["tools"])
    lifecycle_tools = collect.validate_all(LifecycleTool, sections["lifecycle_tools"])
    variables = collect.validate_all(ContextVariable, sections["context_variables"])
    outputs_doc = docs["structured_outputs"]
    outputs, outputs_path = _load_outputs(outputs_doc, collect)
    if not agents and not collect.issues:
        collect.add(sections["agents"].file, "agents", "a workflow needs at least one agent")
    warnings: list[Issue] = []
    if orchestrator is not None:
        orchestrator = _mozaiks_files(folder, base, orchestrator, collect, warnings)
        _mozaiks_orchestrator(orchestrator, orchestrator_doc.file, orchestrator_path, collect, warnings)
    tools = _mozaiks_sections(sections, tools, agents, outputs, warnings)
    collect.raise_if_any()
    assert orchestrator is not None and outputs is not None
    # Past this point every item validated, so list positions match the `sections` paths.

    parts: dict[str, Any] = dict(
        name=orchestrator.name, path=folder, orchestrator=orchestrator, agents=agents, handoffs=handoffs,
        tools=tools, lifecycle_tools=lifecycle_tools, context_variables=variables, structured_outputs=outputs, warnings=list(map(str, warnings)),
    )
    for issue in Workflow.model_construct(**parts).reference_issues():
        file, path = _locate(issue, sections, orchestrator_doc.file, orchestrator_path, outputs_doc, outputs_path)
        collect.add(file, path, issue.message)
    collect.raise_if_any()

    parts["fan_out"] = _load_fan_out(folder, base, parts["agents"], outputs)
    parts["tools"], parts["lifecycle_tools"] = _check_tool_files(folder, sections, tools, lifecycle_tools, collect)
    collect.raise_if_any()
    for warning in warnings:
        log.warning("workflow %s: %s", folder.name, warning)
    return Workflow(**parts)


def _read_docs(folder: Path, base: Path) -> dict[str, _Doc | None]:
    docs = {
        stem: _read(folder, stem, base)
        for stem in ("orchestrator", "agents", "handoffs", "tools", "context_variables", "structured_outputs")
    }
    for stem in ("orchestrator", "agents"):
        if docs[stem] is None:
            raise WorkflowError(_display(folder / f"{stem}.json", base), "$", f"missing: a workflow needs {stem}.json (or .yaml)")
    return docs


def _load_orchestrator(folder: Path, doc: _Doc, collect: _Collector) -> tuple[OrchestratorConfig | None, str]:
    raw, path = _unwrap(doc.data, "orchestrator")
    raw = {} if raw is None else raw  # an empty YAML file: every setting at its default
    if isinstance(raw, dict) and "name" not in raw and "workflow_name" not in raw:
        raw = {**raw, "name": folder.name}
    orchestrator = collect.validate(OrchestratorConfig, raw, doc.file, path)
    if orchestrator is not None and orchestrator.name != folder.name:
        # Workflows are looked up by folder (catalog, broker requests, pack graph): one name only.
        key = "workflow_name" if "workflow_name" in raw and "name" not in raw else "name"
        collect.add(doc.file, _join(path, key), f"must be the folder name {folder.name!r}")
    return orchestrator, path


def _sections(docs: dict[str, _Doc | None], collect: _Collector) -> dict[str, _Items]:
    return {
        "agents": collect.items(docs["agents"], "agents", ("agents",), named=True),
        "handoffs": collect.items(docs["handoffs"], "handoffs", ("handoff_rules",), named=False),
        "tools": collect.items(docs["tools"], "tools", ("tools",), named=False),
        # MozaiksAI keeps them next to `tools` in tools.json: only that mapping form can have them.
        "lifecycle_tools": collect.items(docs["tools"] if _has_key(docs["tools"], "tools", "lifecycle_tools")
                                         else None, "tools", ("lifecycle_tools",), named=False),
        "context_variables": collect.items(
            docs["context_variables"], "context_variables", ("definitions", "variables"), named=True
        ),
    }


def _load_outputs(doc: _Doc | None, collect: _Collector) -> tuple[StructuredOutputs | None, str]:
    raw, path = _unwrap(doc.data, "structured_outputs") if doc else ({}, "")
    raw = {} if raw is None else raw
    if doc is not None and isinstance(raw, dict) and isinstance(raw.get("models"), dict):
        translated, model_errors = translate_models(raw["models"])
        for name, error in model_errors.items():
            where = _join(_join(path, "models"), name)
            collect.add(doc.file, _join(where, error.path) if error.path else where, str(error))
        raw = {**raw, "models": translated}
    return collect.validate(StructuredOutputs, raw, doc.file if doc else "", path), path


def _check_tool_files(folder: Path, sections: dict[str, _Items], tools: list[ToolSpec],
                      lifecycle_tools: list[LifecycleTool], collect: _Collector) -> tuple[list[ToolSpec], list[LifecycleTool]]:
    """Each tool's file and function, parsed once per file."""
    trees: dict[Path, ast.Module | str] = {}
    checked_tools = [_check_tool_file(folder, tool, sections["tools"].file, path, trees, collect)
                     for tool, path in zip(tools, sections["tools"].paths)]
    checked_hooks = [_check_lifecycle_tool(folder, hook, sections["lifecycle_tools"].file, path, trees, collect)
                     for hook, path in zip(lifecycle_tools, sections["lifecycle_tools"].paths)]
    return checked_tools, checked_hooks


# MozaiksAI hook types: AG2 message hooks that rewrite an agent's messages or state in place.
_HOOK_TYPES = ("update_agent_state", "process_message_before_send", "process_last_received_message",
               "process_all_messages_before_reply")


def _mozaiks_files(folder: Path, base: Path, orchestrator: OrchestratorConfig, collect: _Collector,
                   warnings: list[Issue]) -> OrchestratorConfig:
    """ui_config and hooks: MozaiksAI's extra files, read or refused, never skipped silently."""
    ui = _read(folder, "ui_config", base)
    if ui is not None:
        data, path = _unwrap(ui.data, "ui_config")
        data = {} if data is None else data
        if not isinstance(data, dict):
            collect.add(ui.file, path, "expected a mapping")
        else:
            for key, value in data.items():
                if key != "visual_agents":
                    warnings.append(Issue(ui.file, _join(path, key), "not used by this runtime"))
                elif not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    collect.add(ui.file, _join(path, key), "expected a list of agent names")
                elif orchestrator.visual_agents is not None:
                    collect.add(ui.file, _join(path, key), "visual_agents given both here and in the orchestrator")
                else:
                    # `user` is always visible here: the list names the agents whose text is shown.
                    visible = [v for v in value if v.lower() != "user"]
                    orchestrator = orchestrator.model_copy(update={"visual_agents": visible})
    hooks = _read(folder, "hooks", base)
    if hooks is not None:
        data, path = _unwrap(hooks.data, "hooks")
        for i, hook in enumerate(data or []):
            kind = hook.get("hook_type") if isinstance(hook, dict) else None
            known = f"hook type {kind!r}" if kind in _HOOK_TYPES else f"unknown hook type {kind!r}"
            collect.add(hooks.file, _join(path, i), f"{known} is not supported: this runtime does not rewrite "
                        "agents' messages in place; use a tool with ctx.set_context, or context triggers")
    return orchestrator


def _mozaiks_orchestrator(orchestrator: OrchestratorConfig, file: str, path: str, collect: _Collector,
                          warnings: list[Issue]) -> None:
    pattern = orchestrator.orchestration_pattern
    if pattern not in (None, "DefaultPattern"):
        collect.add(file, _join(path, "orchestration_pattern"), f"{pattern!r} is not supported: this runtime "
                    "routes by handoffs.json only (DefaultPattern); write the speaking order as handoff rules")


def _mozaiks_sections(sections: dict[str, _Items], tools: list[ToolSpec], agents: list[AgentConfig],
                      outputs: StructuredOutputs | None, warnings: list[Issue]) -> list[ToolSpec]:
    """The tools with MozaiksAI's auto-invocation default applied."""
    if len(tools) != len(sections["tools"].raw):
        return tools  # positions line up only when every item validated; the errors come first
    registry = outputs.registry if outputs is not None else {}
    applied = []
    for tool, where, raw in zip(tools, sections["tools"].paths, sections["tools"].raw):
        takes_output = any((a.structured_output or registry.get(a.name))
                           and (a.name in tool.agents or tool.name in a.tools) for a in agents)
        if tool.auto_invoke is None and tool.kind == "ui_tool" and takes_output and "tool_type" in raw:
            # MozaiksAI (its spelling, tool_type) ran such a UI tool after each structured output.
            tool = tool.model_copy(update={"auto_invoke": True})
        elif tool.auto_invoke and not takes_output:
            warnings.append(Issue(sections["tools"].file, _join(where, "auto_invoke"), "never invoked by itself: "
                                  "none of its agents has a structured output"))
        applied.append(tool)
    return applied


def _has_key(doc: _Doc | None, stem: str, key: str) -> bool:
    data = _unwrap(doc.data, stem)[0] if doc is not None else None
    return isinstance(data, dict) and key in data


def _locate(
    issue: ReferenceIssue, sections: dict[str, _Items], orchestrator_file: str, orchestrator_path: str,
    outputs_doc: _Doc | None, outputs_path: str,
) -> tuple[str, str]:
    if issue.section == "orchestrator":
        file, path, rest = orchestrator_file, orchestrator_path, issue.loc
    elif issue.section == "structured_outputs":
        file, path, rest = (outputs_doc.file if outputs_doc else ""), outputs_path, issue.loc
    else:
        items = sections[issue.section]
        index = issue.loc[0]
        assert isinstance(index, int)
        file, path, rest = items.file, items.paths[index], issue.loc[1:]
    for key in rest:
        path = _join(path, key)
    return file, path


_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def _check_tool_file(
    folder: Path, tool: S, file: str, path: str, trees: dict[Path, ast.Module | str], collect: _Collector,
) -> S:
    """Check the tool's file and function exist and fill in inferred parameters."""
    if tool.file is None:  # a UI tool without a props function
        return tool if tool.parameters is not None else tool.model_copy(update={"parameters": _EMPTY_PARAMETERS})
    tools_dir = (folder / "tools").resolve()
    source = (tools_dir / tool.file).resolve()
    if not source.is_relative_to(tools_dir):
        collect.add(file, _join(path, "file"), "must name a file inside tools/")
        return tool
    if not source.is_file():
        collect.add(file, _join(path, "file"), f"tools/{tool.file} not found")
        return tool
    if source not in trees:
        trees[source] = _parse_python(source)
    tree = trees[source]
    if isinstance(tree, str):
        collect.add(file, _join(path, "file"), f"tools/{tool.file}: {tree}")
        return tool
    function = find_function(tree, tool.function)
    if function is None:
        collect.add(file, _join(path, "function"), f"no function {tool.function!r} in tools/{tool.file}")
        return tool
    if tool.parameters is not None:
        return tool
    try:
        return tool.model_copy(update={"parameters": infer_parameters(function)})
    except UnsupportedAnnotation as exc:
        collect.add(file, _join(path, "parameters"), f"cannot infer from tools/{tool.file}: {exc}; declare parameters")
        return tool


def _check_lifecycle_tool(folder: Path, hook: LifecycleTool, file: str, path: str,
                          trees: dict[Path, ast.Module | str], collect: _Collector) -> LifecycleTool:
    """A lifecycle tool is a tool whose only input is the chat's context: nobody passes it arguments."""
    checked = _check_tool_file(folder, hook, file, path, trees, collect)
    required = (checked.parameters or {}).get("required", [])
    if required:
        collect.add(file, _join(path, "function"), f"{hook.function} needs {', '.join(map(repr, required))}: a "
                    "lifecycle tool is called with no arguments but context_variables; give them defaults")
    return checked


def _load_fan_out(folder: Path, base: Path, agents: list[AgentConfig], outputs: StructuredOutputs) -> FanOutGraph:
    """The workflow's own `_pack/workflow_graph.json`: its fan-out triggers (workflows/fanout.py)."""
    doc = _read(folder / "_pack", "workflow_graph", base)
    if doc is None:
        return FanOutGraph()
    collect = _Collector()
    data, prefix = _unwrap(doc.data, "workflow_graph")
    graph = collect.validate(FanOutGraph, {} if data is None else data, doc.file, prefix)
    collect.raise_if_any()
    assert graph is not None
    names = {a.name for a in agents}
    keyed = [(key, i, j) for key in ("mid_flight_journeys", "journeys", "nested_chats")
             for i, j in enumerate(getattr(graph, key))]
    for key, i, journey in keyed:
        path = _join(_join(prefix, key), i)
        flat = key != "mid_flight_journeys"  # v2 entries carry fan_in's keys at their top level
        refs = [(_join(path, "trigger_agent"), journey.trigger_agent)]
        for field in ("resume_agent", "resume_entry_agent"):
            if (agent := getattr(journey.fan_in, field)) is not None:
                refs.append((_join(path if flat else _join(path, "fan_in"), field), agent))
        for where, agent in refs:
            if agent not in names:
                collect.add(doc.file, where, f"unknown agent {agent!r}")
        agent = next((a for a in agents if a.name == journey.trigger_agent), None)
        if agent is not None and not (agent.structured_output or outputs.registry.get(agent.name)):
            collect.add(doc.file, _join(path, "trigger_agent"),
                        f"agent {agent.name!r} has no structured output to name the children")
        known = {j.id for j in graph.triggers}
        for r, required in enumerate(journey.requires):
            if required not in known:
                collect.add(doc.file, _join(_join(path, "requires"), r), f"unknown mid_flight_journey {required!r}")
    collect.raise_if_any()
    return graph


def _parse_python(source: Path) -> ast.Module | str:
    """The file's syntax tree, or why it has none."""
    try:
        return ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    except SyntaxError as exc:
        return f"syntax error at line {exc.lineno}: {exc.msg}"
    except (UnicodeDecodeError, ValueError) as exc:  # not UTF-8, or NUL bytes
        return f"not Python source: {exc}"


def load_pack(root: Path, known: Iterable[str] | None = None) -> PackGraph | None:
    """`_pack/workflow_graph.json` (or .yaml), or None. With `known`, every id must be one of them."""
    root = Path(root).resolve()
    doc = _read(root / "_pack", "workflow_graph", root)
    if doc is None:
        return None
    collect = _Collector()
    data, prefix = _unwrap(doc.data, "workflow_graph")
    graph = collect.validate(PackGraph, {} if data is None else data, doc.file, prefix)
    collect.raise_if_any()
    assert graph is not None
    if known is not None:
        names = set(known)
        refs: list[tuple[str, str]] = []
        for i, workflow in enumerate(graph.workflows):
            path = _join(_join(prefix, "workflows"), i)
            refs.append((_join(path, "id"), workflow.id))
            refs += [(_join(_join(path, "dependencies"), j), d) for j, d in enumerate(workflow.dependencies)]
        for i, journey in enumerate(graph.journeys):
            steps = _join(_join(_join(prefix, "journeys"), i), "steps")
            for j, step in enumerate(journey.steps):
                if isinstance(step, str):
                    refs.append((_join(steps, j), step))
                else:
                    refs += [(_join(_join(steps, j), k), name) for k, name in enumerate(step)]
        for path, name in refs:
            if name not in names:
                collect.add(doc.file, path, f"unknown workflow {name!r}")
        collect.raise_if_any()
    return graph
