"""Models of `_pack/workflow_graph.json`: prerequisites between workflows, and journeys."""

from __future__ import annotations

from typing import NamedTuple

from pydantic import Field, field_validator, model_validator

from workflows.model import FormatModel

# The context key of a chat a journey created: {"id", "instance", "step"}. Reserved: a client
# cannot set it, or it could forge journey membership and skip a step's prerequisites.
JOURNEY_CONTEXT_KEY = "journey"


class JourneyTag(FormatModel):
    """Which journey run a chat belongs to; `instance` is the chat id of the run's first step."""

    id: str
    instance: str
    step: int


class PackWorkflow(FormatModel):
    id: str
    dependencies: list[str] = []


class Journey(FormatModel):
    id: str
    steps: list[str | list[str]] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _distinct(cls, steps: list[str | list[str]]) -> list[str | list[str]]:
        members = [name for step in steps for name in ([step] if isinstance(step, str) else step)]
        if any(isinstance(step, list) and not step for step in steps):
            raise ValueError("a parallel step needs at least one workflow")
        if len(members) != len(set(members)):
            raise ValueError("a workflow may appear only once in a journey")
        return steps

    def step_groups(self) -> list[list[str]]:
        """Every step as a list of workflows that run in parallel (one for a sequential step)."""
        return [[step] if isinstance(step, str) else list(step) for step in self.steps]


class JourneyProgress(NamedTuple):
    journey_id: str
    step_index: int
    step: list[str]  # every workflow of the completed workflow's step: all must finish to advance
    next_step: list[str]  # empty when the journey ends with this step


class PackGraph(FormatModel):
    workflows: list[PackWorkflow] = []
    journeys: list[Journey] = []

    @model_validator(mode="after")
    def _consistent(self) -> PackGraph:
        for kind, ids in (("workflow", [w.id for w in self.workflows]), ("journey", [j.id for j in self.journeys])):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise ValueError(f"duplicate {kind} id(s): {', '.join(duplicates)}")
        if cycle := self._dependency_cycle():
            raise ValueError(f"dependency cycle: {' -> '.join(cycle)}")
        return self

    def _dependency_cycle(self) -> list[str] | None:
        graph = {w.id: w.dependencies for w in self.workflows}
        done: set[str] = set()

        def visit(node: str, trail: list[str]) -> list[str] | None:
            if node in trail:
                return [*trail[trail.index(node):], node]
            if node in done:
                return None
            for dependency in graph.get(node, []):
                if cycle := visit(dependency, [*trail, node]):
                    return cycle
            done.add(node)
            return None

        for node in graph:
            if cycle := visit(node, []):
                return cycle
        return None

    def dependencies_of(self, name: str) -> list[str]:
        return next((list(w.dependencies) for w in self.workflows if w.id == name), [])

    def next_steps(self, completed_workflow: str, journey_id: str | None = None) -> list[JourneyProgress]:
        """Where each journey containing the workflow goes next (only `journey_id` when given)."""
        progress = []
        for journey in self.journeys:
            if journey_id is not None and journey.id != journey_id:
                continue
            groups = journey.step_groups()
            for index, group in enumerate(groups):
                if completed_workflow in group:
                    following = groups[index + 1] if index + 1 < len(groups) else []
                    progress.append(JourneyProgress(journey.id, index, group, following))
        return progress
