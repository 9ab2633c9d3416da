"""Pydantic models of the workflow format (WORKFLOWS.md).

Field names are the canonical spelling; MozaiksAI's spellings are accepted as validation aliases,
and dumps always use the canonical names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import (
    AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator,
)

from workflows.expressions import ExpressionError, parse
from workflows.fanout import FanOutGraph

USER = "user"
TERMINATE = "terminate"

# Agents become `transfer_to_<name>` tools and tools become OpenAI functions, whose names must
# match ^[A-Za-z0-9_-]{1,64}$; context variables are referenced as ${name} in conditions.
_AGENT_NAME = r"^[A-Za-z][A-Za-z0-9_-]*$"
_AGENT_NAME_MAX = 64 - len("transfer_to_")
_TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"
_VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class FormatModel(BaseModel):
    # MozaiksAI files carry many keys this runtime has no use for (transition_target,
    # auto_invoke, orchestration_pattern, …): ignore them instead of refusing those workflows.
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class _Strict(BaseModel):
    # The scripted provider is this runtime's own format, with no legacy spellings to tolerate,
    # so a misspelt key in a test script is an error rather than a silently empty reply.
    model_config = ConfigDict(extra="forbid")


class ScriptToolCall(_Strict):
    name: str
    arguments: dict[str, Any] = {}


class ScriptReply(_Strict):
    text: str | None = None
    tool_calls: list[ScriptToolCall] = []
    handoff: str | None = None
    structured: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ScriptReply:
        if self.text is None and not self.tool_calls and self.handoff is None and self.structured is None:
            raise ValueError("a scripted reply needs text, tool_calls, handoff or structured")
        return self


_MODEL_KEYS = {"provider", "name", "model", "temperature", "base_url", "api_key_env", "script", "params", "fallback"}


class ModelConfig(FormatModel):
    provider: Literal["openai", "scripted"] = "openai"
    name: str | None = Field(None, validation_alias=AliasChoices("name", "model"))
    temperature: float | None = None
    base_url: str | None = None
    api_key_env: str | None = None  # name of the environment variable holding the API key
    script: list[ScriptReply] = []
    params: dict[str, Any] = {}  # any other OpenAI parameter (max_tokens, top_p, …), passed through
    # Answers instead while no endpoint is configured (no base URL, no key): an agent meant for a
    # real model that still says something useful offline, like the built-in `ask` assistant.
    fallback: ModelConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _collect_params(cls, data: Any) -> Any:
        if isinstance(data, str):  # `"model": "gpt-4o-mini"` shorthand
            return {"name": data}
        if not isinstance(data, dict) or not isinstance(data.get("params", {}), dict):
            return data
        extra = {k: v for k, v in data.items() if k not in _MODEL_KEYS}
        known = {k: v for k, v in data.items() if k in _MODEL_KEYS}
        return {**known, "params": {**extra, **known.get("params", {})}} if extra else data

    @field_validator("provider", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _script_present(self) -> ModelConfig:
        if self.provider == "scripted" and "script" not in self.model_fields_set:
            raise ValueError("the scripted provider needs a 'script' list (may be empty)")
        return self


class PromptSection(FormatModel):
    heading: str
    content: str


class AgentConfig(FormatModel):
    name: str = Field(pattern=_AGENT_NAME, max_length=_AGENT_NAME_MAX)
    display_name: str | None = None
    description: str = ""
    system_message: str | None = None
    prompt_sections: list[PromptSection] = []
    model: ModelConfig | None = None
    tools: list[str] = []
    structured_output: str | None = None
    max_consecutive_turns: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("max_consecutive_turns", "max_consecutive_auto_reply")
    )

    def system_prompt(self) -> str:
        if self.system_message is not None:
            return self.system_message
        return "\n\n".join(f"## {s.heading}\n{s.content}" for s in self.prompt_sections)


class OrchestratorConfig(FormatModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)  # YAML reads `version: 1.0` as a float

    name: str = Field(validation_alias=AliasChoices("name", "workflow_name"))
    display_name: str | None = None
    description: str = ""
    version: str = "1"
    startup_mode: Literal["AgentDriven", "UserDriven"] = "AgentDriven"
    initial_agent: str | None = Field(None, validation_alias=AliasChoices("initial_agent", "recipient"))
    initial_message: str | None = None
    initial_message_to_user: str | None = None  # MozaiksAI's greeting shown to the user: reported, not shown
    orchestration_pattern: str | None = None  # only MozaiksAI's DefaultPattern means what this runtime does
    max_turns: int = Field(50, ge=1)
    human_in_the_loop: bool = True
    concurrency: Literal["enqueue", "reject", "interrupt"] = "enqueue"
    input_timeout_s: float | None = Field(None, gt=0)
    # What an unanswered input request does when input_timeout_s passes: end the run as failed,
    # end it as completed, or let the agent continue without the answer.
    on_input_timeout: Literal["fail", "complete", "continue"] = "fail"
    visual_agents: list[str] | None = None
    model: ModelConfig | None = None  # the workflow's default for agents that name none


# MozaiksAI (AG2) spellings of the two condition kinds.
_CONDITION_TYPES = {
    "expression": "expression", "context": "expression", "expressioncontextcondition": "expression",
    "context_expression": "expression", "llm": "llm", "string_llm": "llm", "stringllmcondition": "llm",
}


class HandoffRule(FormatModel):
    source_agent: str
    target_agent: str
    handoff_type: Literal["after_work", "condition"] = Field(
        "after_work", validation_alias=AliasChoices("handoff_type", "transition_type")
    )
    condition_type: Literal["expression", "llm"] | None = Field(None, validate_default=True)
    condition: str | None = Field(None, validate_default=True)
    # When an expression is checked: `post` (after the source's turn) is what this runtime does;
    # `pre` is accepted and reported by the loader (see docs/workflows.md).
    condition_scope: Literal["pre", "post"] | None = None

    @field_validator("condition_type", mode="before")
    @classmethod
    def _condition_spelling(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return _CONDITION_TYPES.get(value.lower(), value)

    @field_validator("condition", mode="before")
    @classmethod
    def _boolean_condition(cls, value: Any) -> Any:
        # YAML reads `condition: true` as a boolean; as an expression it is the literal.
        return ("true" if value else "false") if isinstance(value, bool) else value

    @field_validator("source_agent", "target_agent")
    @classmethod
    def _normalize_special(cls, value: str) -> str:
        # MozaiksAI writes TERMINATE / User; agents cannot use these names, so this is unambiguous.
        return value.lower() if value.lower() in (USER, TERMINATE) else value

    @field_validator("condition_type")
    @classmethod
    def _condition_type_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("handoff_type") == "condition":
            raise ValueError("condition handoffs need condition_type: expression | llm")
        return value

    @field_validator("condition")
    @classmethod
    def _condition_valid(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("handoff_type") != "condition":
            return value
        if not value:
            raise ValueError("condition handoffs need a condition")
        if info.data.get("condition_type") == "expression":
            try:
                parse(value)
            except ExpressionError as exc:
                raise ValueError(f"invalid expression: {exc}") from None
        return value


class ExecutionOptions(FormatModel):
    num_cpus: float = Field(0.1, ge=0)
    resources: dict[str, float] = {}
    timeout_s: float = Field(60, gt=0)
    max_retries: int = Field(0, ge=0)
    idempotent: bool = False


class UiSpec(FormatModel):
    component: str
    display: Literal["inline", "artifact"] = Field("inline", validation_alias=AliasChoices("display", "mode"))


class ToolSpec(FormatModel):
    name: str = Field(pattern=_TOOL_NAME)
    description: str = ""
    kind: Literal["agent_tool", "ui_tool"] = Field("agent_tool", validation_alias=AliasChoices("kind", "tool_type"))
    file: str | None = Field(None, validate_default=True)  # relative to the workflow's tools/
    function: str  # defaults to name (and name to function: MozaiksAI tools only name the function)
    agents: list[str] = Field([], validation_alias=AliasChoices("agents", "agent"))
    parameters: dict[str, Any] | None = None  # JSON Schema; the loader infers it when absent
    ui: UiSpec | None = Field(None, validate_default=True)
    execution: ExecutionOptions = Field(default_factory=ExecutionOptions)
    timeout_s: float | None = Field(None, gt=0)  # how long a UI tool waits for the user
    # Called by the runtime with the agent's structured output as arguments, after each valid one.
    auto_invoke: bool | None = Field(None, validation_alias=AliasChoices("auto_invoke", "auto_tool_call"))

    @field_validator("file", mode="before")
    @classmethod
    def _tools_prefix(cls, value: Any) -> Any:
        # MozaiksAI writes both `greet.py` and `tools/greet.py`: the folder is always tools/.
        return value.removeprefix("./").removeprefix("tools/") if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _name_and_function(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("name") is None and data.get("function") is not None:
            return {**data, "name": data["function"]}
        if data.get("function") is None and data.get("name") is not None:
            return {**data, "function": data["name"]}
        return data

    @field_validator("kind", mode="before")
    @classmethod
    def _lower_kind(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("agents", mode="before")
    @classmethod
    def _one_agent(cls, value: Any) -> Any:
        if value is None:  # MozaiksAI's `agent: null`: no agent named
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("ui", mode="before")
    @classmethod
    def _empty_ui(cls, value: Any) -> Any:
        # MozaiksAI writes `ui: {component: null, mode: null}` on agent tools.
        return None if isinstance(value, dict) and value.get("component") is None else value

    @field_validator("file")
    @classmethod
    def _file_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("kind") == "agent_tool":
            raise ValueError("an agent_tool needs a file (in tools/)")
        return value

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "object") != "object":
            raise ValueError('parameters must be a JSON Schema of type "object"')
        return value

    @field_validator("ui")
    @classmethod
    def _ui_needed(cls, value: UiSpec | None, info: ValidationInfo) -> UiSpec | None:
        if value is None and info.data.get("kind") == "ui_tool":
            raise ValueError("a ui_tool needs ui: {component, display}")
        return value


LifecyclePoint = Literal["before_chat", "after_chat", "before_agent", "after_agent"]
_CHAT_POINTS = ("before_chat", "after_chat")


class LifecycleTool(ToolSpec):
    """MozaiksAI's `lifecycle_tools` entry: a tool the runtime itself calls at a point of the run,
    with no arguments but the chat's context (`actors/lifecycle_hooks.py` runs it)."""

    trigger: LifecyclePoint

    @field_validator("kind")
    @classmethod
    def _not_ui(cls, value: str) -> str:
        if value != "agent_tool":
            raise ValueError("a lifecycle tool runs without a user to answer it: it cannot be a UI_Tool")
        return value

    @model_validator(mode="after")
    def _chat_points_have_no_agent(self) -> LifecycleTool:
        if self.trigger in _CHAT_POINTS and self.agents:
            raise ValueError(f"{self.trigger} runs once per run, for no agent in particular: remove agent, "
                             "or use before_agent / after_agent")
        return self

    def runs_for(self, point: LifecyclePoint, agent: str | None) -> bool:
        """At `point`; an agent point runs the tools naming that agent, or naming none."""
        return self.trigger == point and (not self.agents or agent in self.agents)


class ContextTrigger(FormatModel):
    type: Literal["agent_text", "ui_response"]
    agent: str | None = None  # agent_text: None matches every agent
    match: dict[Literal["equals", "contains", "regex"], str] | None = Field(None, validate_default=True)
    value: Any = None
    tool: str | None = Field(None, validate_default=True)
    response_key: str | None = None
    ui_hidden: bool = False  # MozaiksAI: the matching agent text is trace only, not shown to the user

    @field_validator("match")
    @classmethod
    def _match_valid(cls, value: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        if info.data.get("type") != "agent_text":
            return value
        if not value or len(value) != 1:
            raise ValueError("agent_text triggers need exactly one of equals, contains, regex")
        if "regex" in value:
            try:
                re.compile(value["regex"])
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from None
        return value

    @field_validator("tool")
    @classmethod
    def _tool_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("type") == "ui_response":
            raise ValueError("ui_response triggers need a tool")
        return value


# MozaiksAI source types this runtime has no equivalent for, and what to write instead.
_REFUSED_SOURCES = {
    "computed": "computed variables are not evaluated here; compute the value in a tool and store it with "
                "ctx.set_context (source type: state)",
    "data_reference": "variables are not read from a database here; read it in a tool and store it with "
                      "ctx.set_context (source type: state), or pass it in the session's context",
    "data_entity": "variables are not persisted to a database here; write it from a tool, and keep the "
                   "chat's copy with ctx.set_context (source type: state)",
    "external": "variables are not fetched from external services here; fetch it in a tool and store it with "
                "ctx.set_context (source type: state)",
    "file": "variables are not read from files here; use source type static with the value, or read the "
            "file in a tool",
}
# Same meaning, other name: `runtime` values change while the chat runs, `config` reads the environment.
_SOURCE_SPELLINGS = {"runtime": "state", "config": "env", "environment": "env"}


class ContextSource(FormatModel):
    type: Literal["static", "env", "state"] = "static"
    value: Any = None
    env_var: str | None = None
    triggers: list[ContextTrigger] = []

    @field_validator("type", mode="before")
    @classmethod
    def _source_type(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.lower() in _REFUSED_SOURCES:
            raise ValueError(f"source type {value!r} is not supported: {_REFUSED_SOURCES[value.lower()]}")
        return _SOURCE_SPELLINGS.get(value.lower(), value.lower())

    @model_validator(mode="before")
    @classmethod
    def _triggers_mean_state(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("triggers") and "type" not in data:
            return {**data, "type": "state"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ContextSource:
        if self.type == "env" and not self.env_var:
            raise ValueError("env sources need env_var")
        if self.triggers and self.type != "state":
            raise ValueError("triggers need a state source")
        return self


class ContextVariable(FormatModel):
    name: str = Field(pattern=_VARIABLE_NAME)
    type: str = "string"
    description: str = ""
    default: Any = Field(None, validation_alias=AliasChoices("default", "default_value"))
    source: ContextSource = ContextSource()

    @model_validator(mode="before")
    @classmethod
    def _lift_source_default(cls, data: Any) -> Any:
        """MozaiksAI writes the default under the source: `source: {type: runtime, default: false}`."""
        if not isinstance(data, dict) or not isinstance(data.get("source"), dict):
            return data
        source = data["source"]
        if "default" not in source:
            return data
        if "default" in data or "default_value" in data:
            raise ValueError("default given both on the variable and under source")
        rest = {k: v for k, v in source.items() if k != "default"}
        return {**data, "default": source["default"], "source": rest}

    @model_validator(mode="before")
    @classmethod
    def _lift_triggers(cls, data: Any) -> Any:
        """Triggers may sit on the variable itself; they belong to its source."""
        if not isinstance(data, dict) or "triggers" not in data:
            return data
        source = data.get("source") or {}
        if not isinstance(source, dict):
            return data
        if "triggers" in source:
            raise ValueError("triggers given both on the variable and under source")
        rest = {k: v for k, v in data.items() if k != "triggers"}
        return {**rest, "source": {**source, "triggers": data["triggers"]}}


class StructuredOutputs(FormatModel):
    models: dict[str, dict[str, Any]] = {}  # name -> JSON Schema (the loader translates the model form)
    # agent name -> model name; MozaiksAI writes `Agent: null` for "no structured output".
    registry: dict[str, str | None] = {}

    @field_validator("registry", mode="before")
    @classmethod
    def _registry_list(cls, value: Any) -> Any:
        """The list form: `[{agent: A, model: M}]` (or one-entry mappings `[{A: M}]`)."""
        if not isinstance(value, list):
            return value
        merged: dict[str, Any] = {}
        for i, entry in enumerate(value):
            if isinstance(entry, dict) and "agent" in entry:
                merged[entry["agent"]] = entry.get("model", entry.get("structured_output"))
            elif isinstance(entry, dict) and len(entry) == 1:
                merged.update(entry)
            else:
                raise ValueError(f"registry[{i}]: expected {{agent: <name>, model: <model or null>}}")
        return merged


Section = Literal["orchestrator", "agents", "handoffs", "tools", "lifecycle_tools", "context_variables",
                  "structured_outputs"]


class ReferenceIssue(NamedTuple):
    """A broken cross reference. For list sections loc starts with the item's index."""

    section: Section
    loc: tuple[str | int, ...]
    message: str


class Workflow(FormatModel):
    name: str
    path: Path
    orchestrator: OrchestratorConfig
    agents: list[AgentConfig] = Field(min_length=1)
    handoffs: list[HandoffRule] = []
    tools: list[ToolSpec] = []
    lifecycle_tools: list[LifecycleTool] = []
    context_variables: list[ContextVariable] = []
    structured_outputs: StructuredOutputs = StructuredOutputs()
    # `file: path: message` lines for what loaded but does not mean here what it meant in MozaiksAI.
    warnings: list[str] = []
    fan_out: FanOutGraph = FanOutGraph()  # the folder's own _pack/workflow_graph.json

    @model_validator(mode="after")
    def _references(self) -> Workflow:
        issues = self.reference_issues()
        if issues:
            raise ValueError("; ".join(f"{i.section} {'.'.join(map(str, i.loc))}: {i.message}" for i in issues))
        return self

    def agent(self, name: str) -> AgentConfig:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)

    @property
    def agent_names(self) -> list[str]:
        return [agent.name for agent in self.agents]

    @property
    def initial_agent_name(self) -> str:
        return self.orchestrator.initial_agent or self.agents[0].name

    def tool(self, name: str) -> ToolSpec:
        for tool in self.tools:
            if tool.name == name:
                return tool
        raise KeyError(name)

    def tools_for(self, agent_name: str) -> list[ToolSpec]:
        """One spec per name: the one bound to this agent, else the first whose name it lists.

        MozaiksAI binds the same tool name to different agents from different files.
        """
        listed = self.agent(agent_name).tools
        chosen: dict[str, ToolSpec] = {}
        for tool in self.tools:
            if agent_name in tool.agents:
                chosen[tool.name] = tool
        for tool in self.tools:
            if tool.name in listed and tool.name not in chosen:
                chosen[tool.name] = tool
        return [t for t in self.tools if chosen.get(t.name) is t]

    def auto_tool_for(self, agent_name: str) -> ToolSpec | None:
        """The tool the runtime calls with this agent's structured output (`auto_invoke`)."""
        return next((t for t in self.tools_for(agent_name) if t.auto_invoke), None)

    def model_for(self, agent_name: str) -> ModelConfig | None:
        """The agent's model, else the workflow default; None means the runtime's global default."""
        return self.agent(agent_name).model or self.orchestrator.model

    def output_schema_for(self, agent_name: str) -> tuple[str, dict[str, Any]] | None:
        name = self.agent(agent_name).structured_output or self.structured_outputs.registry.get(agent_name)
        return (name, self.structured_outputs.models[name]) if name else None

    def public_info(self) -> dict[str, Any]:
        """What may be shown to end users: never prompts, models or tool code."""
        return {
            "name": self.name,
            "display_name": self.orchestrator.display_name or self.name,
            "description": self.orchestrator.description,
        }

    def reference_issues(self) -> list[ReferenceIssue]:
        """Every name that points nowhere, duplicated or reserved, in file order."""
        issues = list(self._agent_issues())
        if issues:  # the checks below look agents up by name: they need unique names first
            return issues
        agents = set(self.agent_names)
        for section in (self._script_issues(agents), self._orchestrator_issues(agents),
                        self._handoff_issues(agents), self._tool_issues(agents), self._lifecycle_issues(agents),
                        self._context_issues(agents), self._structured_output_issues(agents)):
            issues.extend(section)
        return issues

    def _agent_issues(self) -> Iterator[ReferenceIssue]:
        tools = {t.name for t in self.tools}
        seen: set[str] = set()
        for i, agent in enumerate(self.agents):
            if agent.name.lower() in (USER, TERMINATE):
                yield ReferenceIssue("agents", (i, "name"), f"{agent.name!r} is reserved")
            elif agent.name in seen:
                yield ReferenceIssue("agents", (i, "name"), f"duplicate agent name {agent.name!r}")
            seen.add(agent.name)
            for j, tool_name in enumerate(agent.tools):
                if tool_name not in tools:
                    yield ReferenceIssue("agents", (i, "tools", j), _unknown("tool", tool_name))
            if agent.structured_output and agent.structured_output not in self.structured_outputs.models:
                yield ReferenceIssue("agents", (i, "structured_output"),
                                     _unknown("structured output model", agent.structured_output))

    def _script_issues(self, agents: set[str]) -> Iterator[ReferenceIssue]:
        for i, agent in enumerate(self.agents):
            callable_tools = {t.name for t in self.tools_for(agent.name)}
            for j, reply in enumerate(agent.model.script if agent.model else []):
                loc = (i, "model", "script", j)
                if reply.handoff and reply.handoff.lower() not in (USER, TERMINATE) and reply.handoff not in agents:
                    yield ReferenceIssue("agents", (*loc, "handoff"), _unknown("agent", reply.handoff))
                for k, call in enumerate(reply.tool_calls):
                    if call.name not in callable_tools:
                        yield ReferenceIssue("agents", (*loc, "tool_calls", k, "name"),
                                             f"{agent.name} cannot call tool {call.name!r}")

    def _orchestrator_issues(self, agents: set[str]) -> Iterator[ReferenceIssue]:
        orchestrator = self.orchestrator
        if orchestrator.initial_agent is not None and orchestrator.initial_agent not in agents:
            yield ReferenceIssue("orchestrator", ("initial_agent",), _unknown("agent", orchestrator.initial_agent))
        for j, name in enumerate(orchestrator.visual_agents or []):
            if name not in agents:
                yield ReferenceIssue("orchestrator", ("visual_agents", j), _unknown("agent", name))

    def _handoff_issues(self, agents: set[str]) -> Iterator[ReferenceIssue]:
        for i, rule in enumerate(self.handoffs):
            if rule.source_agent != USER and rule.source_agent not in agents:
                yield ReferenceIssue("handoffs", (i, "source_agent"), _unknown("agent", rule.source_agent))
            if rule.target_agent not in (USER, TERMINATE) and rule.target_agent not in agents:
                yield ReferenceIssue("handoffs", (i, "target_agent"), _unknown("agent", rule.target_agent))

    def _tool_issues(self, agents: set[str]) -> Iterator[ReferenceIssue]:
        bound: dict[tuple[str, str | None], int] = {}  # (name, agent) -> first entry; None: no agent named
        for i, tool in enumerate(self.tools):
            for agent_name in tool.agents or [None]:
                clash = bound.get((tool.name, agent_name))
                if clash is None and agent_name is not None:
                    clash = bound.get((tool.name, None))
                if clash is None and agent_name is None:
                    clash = next((j for (n, _), j in bound.items() if n == tool.name), None)
                if clash is not None:
                    whom = f" for agent {agent_name!r}" if agent_name else ""
                    yield ReferenceIssue("tools", (i, "name"), f"duplicate tool name {tool.name!r}{whom} "
                                         f"(also tools[{clash}])")
                    break
                bound[(tool.name, agent_name)] = i
            for j, name in enumerate(tool.agents):
                if name not in agents:
                    yield ReferenceIssue("tools", (i, "agents", j), _unknown("agent", name))

    def _lifecycle_issues(self, agents: set[str]) -> Iterator[ReferenceIssue]:
        for i, hook in enumerate(self.lifecycle_tools):
            for j, name in enumerate(hook.agents):
                if name not in agents:
                    yield ReferenceIssue("lifecycle_tools", (i, "agents", j), _unknown("agent", name))

    def _context_issues(self, agents: set[str]) -> Iterator[ReferenceIssue]:
        tools = {t.name for t in self.tools}
        seen: set[str] = set()
        for i, variable in enumerate(self.context_variables):
            if variable.name in seen:
                yield ReferenceIssue("context_variables", (i, "name"), f"duplicate variable {variable.name!r}")
            seen.add(variable.name)
            for j, trigger in enumerate(variable.source.triggers):
                loc = (i, "source", "triggers", j)
                if trigger.agent is not None and trigger.agent not in agents:
                    yield ReferenceIssue("context_variables", (*loc, "agent"), _unknown("agent", trigger.agent))
                if trigger.tool is not None and trigger.tool not in tools:
                    yield ReferenceIssue("context_variables", (*loc, "tool"), _unknown("tool", trigger.tool))

    def _structured_output_issues(self, agents: set[str]) -> Iterator[ReferenceIssue]:
        models = self.structured_outputs.models
        for agent_name, model_name in self.structured_outputs.registry.items():
            if agent_name not in agents:
                yield ReferenceIssue("structured_outputs", ("registry", agent_name), _unknown("agent", agent_name))
            elif model_name is not None and model_name not in models:
                yield ReferenceIssue("structured_outputs", ("registry", agent_name),
                                     _unknown("structured output model", model_name))


def _unknown(kind: str, name: str) -> str:
    return f"unknown {kind} {name!r}"
