"""Declared fan-out / fan-in: a workflow's own `_pack/workflow_graph.json`.

The file sits inside the workflow folder (`<workflow>/_pack/workflow_graph.json`, as in MozaiksAI)
and names *trigger agents*: when such an agent's structured output is accepted, the runtime starts
the child chats it names, the parent waits, and the merged results resume the parent.

Three spellings load into the same model (`FanOutGraph.triggers`):
- v3: `{"version": 3, "mid_flight_journeys": [{"id", "trigger_agent", "fan_out": {…}, "fan_in": {…}}]}`
- v2: `{"journeys": [{"trigger_agent", "spawn_mode", "resume_agent", "merge_mode", …}]}` (flat keys)
- legacy: the same flat entries under `nested_chats`.

What the trigger agent's structured output must contain is `ChildRequest` (see `child_requests`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# A child chat's context names its parent here (set by the runtime; clients cannot).
PARENT_CONTEXT_KEY = "fanout_parent"

SpawnMode = Literal["workflow", "generator_subrun"]
MergeMode = Literal["collect_all", "concatenate", "structured", "deep_merge", "first_success", "majority_vote"]
PartialFailure = Literal["resume_with_available", "fail_all", "prompt_user"]


class FormatModel(BaseModel):
    # The leniency of the other workflow files (workflows.model imports this module, so it
    # cannot share that base): MozaiksAI pack files carry keys this runtime does not use.
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Contract(FormatModel):
    """Keys a context (input) or a child's result (output) must hold. A bare list means `required`."""

    required: list[str] = []
    optional: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, raw: Any) -> Any:
        return {"required": raw} if isinstance(raw, list) else raw


class FanOutSpec(FormatModel):
    spawn_mode: SpawnMode = "workflow"
    # spawn_mode generator_subrun: every child runs this one workflow, with its own task text.
    generator_workflow: str | None = None
    child_initial_agent: str | None = None
    # How many of the children run at once (0: all; the cluster-wide cap applies on top).
    max_children: int = Field(0, ge=0)
    timeout_seconds: float | None = Field(None, gt=0)
    input_contract: Contract = Contract()
    child_context_seed: dict[str, Any] = {}

    @model_validator(mode="after")
    def _generator_named(self) -> FanOutSpec:
        if self.spawn_mode == "generator_subrun" and not self.generator_workflow:
            raise ValueError("spawn_mode generator_subrun needs generator_workflow")
        return self


class FanInSpec(FormatModel):
    resume_agent: str | None = None  # None: the trigger agent's turn ends as it would have
    resume_entry_agent: str | None = None  # MozaiksAI's router in front of resume_agent
    merge_mode: MergeMode = Field("collect_all", validation_alias=AliasChoices("merge_mode", "aggregation_strategy"))
    inject_as: str = "child_results"
    on_partial_failure: PartialFailure = "resume_with_available"
    output_contract: Contract = Contract()

    @property
    def entry_agent(self) -> str | None:
        return self.resume_entry_agent or self.resume_agent


class MidFlightJourney(FormatModel):
    id: str = Field(min_length=1)
    description: str = ""
    trigger_agent: str = Field(min_length=1, validation_alias=AliasChoices("trigger_agent", "decomposition_agent"))
    trigger_on: Literal["structured_output_ready"] = "structured_output_ready"
    requires: list[str] = []  # other journeys of this workflow that must have completed in the chat
    fan_out: FanOutSpec = FanOutSpec()
    fan_in: FanInSpec = FanInSpec()


# v2 / legacy flat keys and where they go in the v3 shape.
_FLAT_FAN_OUT = {"spawn_mode", "generator_workflow", "child_initial_agent", "max_children", "timeout_seconds",
                 "child_context_seed"}
_FLAT_FAN_IN = {"resume_agent", "resume_entry_agent", "merge_mode", "aggregation_strategy", "inject_as",
                "on_partial_failure"}


def _from_flat(entry: Any) -> Any:
    if not isinstance(entry, dict) or "fan_out" in entry or "fan_in" in entry:
        return entry
    out = {k: v for k, v in entry.items() if k in _FLAT_FAN_OUT}
    into = {k: v for k, v in entry.items() if k in _FLAT_FAN_IN}
    if "required_context" in entry:
        out["input_contract"] = {"required": entry["required_context"]}
    if "expected_output_keys" in entry:
        into["output_contract"] = {"required": entry["expected_output_keys"]}
    rest = {k: v for k, v in entry.items() if k not in _FLAT_FAN_OUT | _FLAT_FAN_IN}
    agent = entry.get("trigger_agent") or entry.get("decomposition_agent")
    return {"id": f"trigger_{agent}", **rest, "fan_out": out, "fan_in": into}


class FanOutGraph(FormatModel):
    version: int | None = None
    mid_flight_journeys: list[MidFlightJourney] = []
    journeys: list[MidFlightJourney] = []  # v2: flat trigger entries
    nested_chats: list[MidFlightJourney] = []  # legacy name of the v2 list

    @field_validator("journeys", "nested_chats", mode="before")
    @classmethod
    def _flat(cls, raw: Any) -> Any:
        return [_from_flat(entry) for entry in raw] if isinstance(raw, list) else raw

    @model_validator(mode="after")
    def _distinct(self) -> FanOutGraph:
        ids = [j.id for j in self.triggers]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate mid_flight_journey id(s): {', '.join(duplicates)}")
        agents = [j.trigger_agent for j in self.triggers]
        if len(agents) != len(set(agents)):
            raise ValueError("an agent may trigger only one mid_flight_journey")
        return self

    @property
    def triggers(self) -> list[MidFlightJourney]:
        return [*self.mid_flight_journeys, *self.journeys, *self.nested_chats]

    def triggered_by(self, agent: str) -> MidFlightJourney | None:
        return next((j for j in self.triggers if j.trigger_agent == agent), None)


class ChildRequest(BaseModel):
    """One child a trigger agent (or a tool) asks for."""

    workflow: str = Field(min_length=1)
    message: str | None = None  # the child's seed (its initial message)
    context: dict[str, Any] = {}
    key: str | None = None  # the name of its result in structured/deep merges (default: its index)


# Where a trigger agent's structured output may list its children: our `children`, MozaiksAI's
# `PatternSelection` payload (`{"PatternSelection": {"is_multi_workflow", "workflows": […]}}`, each
# with `name` and `description`/`initial_message`), or generator tasks (`sub_tasks` / `tasks`).
_LIST_KEYS = ("children", "workflows", "sub_tasks", "tasks")


def child_requests(structured: dict[str, Any], journey: MidFlightJourney) -> list[ChildRequest]:
    """The children named by a trigger agent's structured output. Raises ValueError saying why
    the output names none it can start."""
    body = structured.get("PatternSelection", structured)
    if not isinstance(body, dict):
        raise ValueError("PatternSelection must be an object")
    items = next((body[k] for k in _LIST_KEYS if isinstance(body.get(k), list)), None)
    if items is None:
        raise ValueError(f"no child list in the structured output (one of: {', '.join(_LIST_KEYS)})")
    seed = journey.fan_out.child_context_seed
    requests = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"workflow": item} if journey.fan_out.spawn_mode == "workflow" else {"message": item}
        if not isinstance(item, dict):
            raise ValueError(f"child {i}: expected an object or a string")
        workflow = (journey.fan_out.generator_workflow if journey.fan_out.spawn_mode == "generator_subrun"
                    else item.get("workflow") or item.get("workflow_name") or item.get("name"))
        message = item.get("message") or item.get("initial_message") or item.get("task") or item.get("description")
        try:
            requests.append(ChildRequest(workflow=workflow or "", message=message, key=item.get("key") or item.get("id"),
                                         context={**seed, **(item.get("context") or {})}))
        except ValidationError as exc:
            raise ValueError(f"child {i}: {exc.errors()[0]['msg']}") from None
    if not requests:
        raise ValueError("the structured output names no children")
    return requests
