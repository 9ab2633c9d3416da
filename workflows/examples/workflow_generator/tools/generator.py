"""The workflow generator's tools. Each call runs as a Ray task. `write_agents` fans out one child
chat of `workflow_agent_writer` per agent of the draft (a generator workload: the agents are
written in parallel, each a chat of its own, on whichever node the cluster picks); when they have
all ended, the Builder resumes with their definitions in the context and `write_workflow`
assembles the workflow and installs it for this chat's app through `ctx.install_workflow`
(allowed because the operator lists this workflow in `generator_workflows`), so a new chat of it
starts at once.

The generated workflow chains its agents with after-work handoffs. Each agent uses the runtime's
configured model, and a scripted fallback when none is configured, so it runs offline too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

RESERVED = {"user", "terminate"}
WRITER = "workflow_agent_writer"  # the child workflow that writes one agent


class AgentDraft(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=40)
    role: str = Field(min_length=1)


class WorkflowDraft(BaseModel):
    """What the user reviews in the WorkflowDraft artifact, and may edit before approving."""

    workflow_name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    description: str
    agents: list[AgentDraft] = Field(min_length=1, max_length=12)


def remember(key: Literal["purpose", "agent_names"], value: str, ctx: Any) -> dict[str, str]:
    ctx.set_context(key, value.strip())
    return {"saved": key}


def review_draft(ctx: Any) -> dict[str, Any]:
    """The artifact's props: the draft built from the interview."""
    return draft_from(ctx.context).model_dump()


def write_agents(ctx: Any) -> dict[str, Any]:
    """Start one agent-writer child chat per agent of the approved draft; the Builder goes on
    once they all ended, with their definitions under ``agent_definitions`` (keyed by agent name)."""
    draft = approved_draft(ctx.context)
    ctx.set_context("final_draft", draft.model_dump())
    ctx.start_children([{"workflow": WRITER, "key": agent.name, "message": f"Write the agent {agent.name}.",
                         "context": {"name": agent.name, "role": agent.role, "purpose": draft.description}}
                        for agent in draft.agents],
                       merge_mode="structured", inject_as="agent_definitions", on_partial_failure="fail_all",
                       output_contract=["name", "description", "prompt_sections"])
    return {"writing": [agent.name for agent in draft.agents]}


def write_workflow(ctx: Any) -> dict[str, Any]:
    draft = WorkflowDraft.model_validate(ctx.context["final_draft"])
    written = ctx.context["agent_definitions"]
    names = [agent.name for agent in draft.agents]
    files = {
        "orchestrator.json": {"name": draft.workflow_name, "display_name": draft.description[:60],
                              "description": draft.description, "startup_mode": "AgentDriven",
                              "initial_agent": names[0], "max_turns": len(names) + 2},
        "agents.json": {"agents": [agent_definition(written[name]) for name in names]},
        "handoffs.json": {"handoff_rules": [
            {"source_agent": source, "target_agent": target_agent, "handoff_type": "after_work"}
            for source, target_agent in zip(names, [*names[1:], "terminate"])]},
    }
    # The runtime's loader checks it; an InstallRefused fails the tool, and the Builder hears why.
    installed = ctx.install_workflow(draft.workflow_name, {
        file: json.dumps(content, indent=2) + "\n" for file, content in files.items()})
    ctx.set_context("generated_name", installed["name"])
    ctx.set_context("generated_version", installed["version"])
    return {"workflow_name": installed["name"], "version": installed["version"], "agents": names}


def approved_draft(context: Mapping[str, Any]) -> WorkflowDraft:
    review = context.get("draft_review")
    edited = review.get("draft") if isinstance(review, Mapping) else None
    return WorkflowDraft.model_validate(edited) if edited else draft_from(context)


def agent_definition(written: Mapping[str, Any]) -> dict[str, Any]:
    """A child's written agent, with the model every generated agent uses."""
    name = str(written["name"])
    return {"name": name, "display_name": name, "description": written["description"],
            "prompt_sections": written["prompt_sections"],
            "model": {"provider": "openai", "fallback": {"provider": "scripted", "repeat_last": True, "script": [
                {"text": f"{name} here. My part: {written['description']}"}]}}}


def draft_from(context: Mapping[str, Any]) -> WorkflowDraft:
    purpose = str(context.get("purpose") or "").strip() or "A generated workflow"
    words = re.findall(r"[a-z0-9]+", purpose.lower())[:5]
    workflow_name = "_".join(words) if words and words[0][0].isalpha() else "_".join(["generated", *words])
    listed = re.split(r",|\band\b", str(context.get("agent_names") or ""))
    names = list(dict.fromkeys(name for name in map(agent_name, listed) if name)) or ["Assistant"]
    return WorkflowDraft(workflow_name=workflow_name[:64], description=purpose,
                         agents=[AgentDraft(name=name, role=_role(i, len(names))) for i, name in enumerate(names)])


def agent_name(raw: str) -> str:
    """'research lead' -> 'ResearchLead': a name the workflow format accepts, or '' for none."""
    name = "".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", raw))[:40]
    if name and not name[0].isalpha():
        name = f"Agent{name}"[:40]
    return f"{name}Agent" if name.lower() in RESERVED else name


def _role(index: int, count: int) -> str:
    if count == 1:
        return "Does the whole job and tells the user the result."
    if index == 0:
        return "Starts the work and hands it to the next agent."
    if index == count - 1:
        return "Finishes the work and tells the user the result."
    return "Builds on the previous agent's work and hands it on."

