"""Who speaks after a turn ends (WORKFLOWS.md, handoffs.json evaluation order)."""

from __future__ import annotations

from typing import Any

from workflows.expressions import evaluate
from workflows.model import HandoffRule, Workflow

USER = "user"
TERMINATE = "terminate"


def transfer_tool_name(target: str) -> str:
    return f"transfer_to_{target}"


def llm_targets(workflow: Workflow, agent: str, after_user: bool = False) -> list[tuple[str, str]]:
    """(target, description) of the LLM handoffs offered to ``agent`` as transfer tools: its own
    rules, and ``after_user`` (the user's message is the last thing said) the `user` rules, since the
    model of the agent a user message reaches is the one that can choose where it goes."""
    offered: dict[str, str] = {}
    for rule in workflow.handoffs:
        mine = rule.source_agent == agent or (after_user and rule.source_agent == USER
                                              and rule.target_agent not in (agent, USER))
        if mine and rule.handoff_type == "condition" and rule.condition_type == "llm":
            offered.setdefault(rule.target_agent, rule.condition or f"Hand the conversation to {rule.target_agent}")
    return list(offered.items())


def _holds(rule: HandoffRule, agent: str, context: dict[str, Any]) -> bool:
    return (rule.source_agent == agent and rule.handoff_type == "condition" and rule.condition_type == "expression"
            and rule.condition is not None and evaluate(rule.condition, context))


def pre_route(workflow: Workflow, agent: str, context: dict[str, Any]) -> str | None:
    """Where a `condition_scope: pre` expression sends the turn before ``agent`` speaks (file order)."""
    return next((rule.target_agent for rule in workflow.handoffs
                 if rule.condition_scope == "pre" and _holds(rule, agent, context)), None)


def route(workflow: Workflow, agent: str, context: dict[str, Any], llm_choice: str | None) -> tuple[str, str]:
    """Expression conditions (`post` or unscoped) in file order, then the model's transfer, then
    after-work, then the user."""
    for rule in workflow.handoffs:
        if rule.condition_scope != "pre" and _holds(rule, agent, context):
            return rule.target_agent, "condition"
    if llm_choice:
        return llm_choice, "llm"
    for rule in workflow.handoffs:
        if rule.source_agent == agent and rule.handoff_type == "after_work":
            return rule.target_agent, "after_work"
    return USER, "after_work"


def after_user(workflow: Workflow, context: dict[str, Any]) -> str | None:
    """The agent a user message goes to by the rules whose source is `user` (expressions in file
    order, then after-work), or None for the usual one (the agent that asked, or the first)."""
    rules = [r for r in workflow.handoffs if r.source_agent == USER and r.target_agent not in (USER, TERMINATE)]
    for rule in rules:
        if (rule.handoff_type == "condition" and rule.condition_type == "expression" and rule.condition
                and evaluate(rule.condition, context)):
            return rule.target_agent
    return next((r.target_agent for r in rules if r.handoff_type == "after_work"), None)
