"""One agent's model turn, as data: the request it sends, and what its reply means.

Pure functions over the workflow, the history and the snapshot — the engine does the I/O.
"""

from __future__ import annotations

import json
from typing import Any

from actors.commits import EventSpec
from actors.history import History, for_agent
from actors.routing import llm_targets, transfer_tool_name
from actors.run_steps import new_id
from actors.snapshot import SessionSnapshot
from actors.triggers import ContextTriggers
from mozaiks.protocol.events import ChatText
from mozaiks.providers.base import ModelReply, ModelRequest, ToolCallRequest, ToolDefinition
from mozaiks.settings import Settings
from workflows.model import ModelConfig, Workflow
from workflows.tool_loading import validate_arguments


def resolve_model(workflow: Workflow, agent_name: str, settings: Settings) -> ModelConfig:
    """The agent's model, else the workflow's default, else the runtime's configured model."""
    configured = workflow.model_for(agent_name)
    if configured is None or (settings.model_override == "openai" and configured.provider == "scripted"):
        return ModelConfig(provider="openai", name=settings.default_model)
    return configured


def build_request(workflow: Workflow, agent_name: str, model: ModelConfig, history: History,
                  state: SessionSnapshot) -> ModelRequest:
    agent = workflow.agent(agent_name)
    schema = workflow.output_schema_for(agent_name)
    tools = [ToolDefinition(name=t.name, description=t.description, parameters=t.parameters or {})
             for t in workflow.tools_for(agent_name)]
    tools += [ToolDefinition(name=transfer_tool_name(target), description=desc)
              for target, desc in llm_targets(workflow, agent_name, history.user_spoke_last)]
    return ModelRequest(
        agent=agent_name, model=model.model_dump(), tools=tools,
        messages=for_agent(history.messages, agent_name, agent.system_prompt(), workflow.orchestrator.initial_message),
        response_schema=schema[1] if schema else None, response_schema_name=schema[0] if schema else None,
        call_index=state.call_index.get(agent_name, 0), variables=state.context,
        last_user_message=state.last_user_message or history.last_user_text())


def shown_to_user(workflow: Workflow, agent_name: str) -> bool:
    """Whether the user sees this agent's text (``visual_agents``); hidden text is trace only."""
    visual = workflow.orchestrator.visual_agents
    return not visual or agent_name in visual


def text_events(workflow: Workflow, triggers: ContextTriggers, agent_name: str, message_id: str,
                reply: ModelReply, partial: bool = False) -> list[EventSpec]:
    content = reply.text if reply.text is not None else json.dumps(reply.structured)
    shown = shown_to_user(workflow, agent_name) and not triggers.hides(agent_name, content)
    text = ChatText(message_id=message_id, agent=agent_name, role="assistant", content=content,
                    visibility="user" if shown else "trace")
    if partial:
        text.partial = True
    if reply.structured is not None:
        text.structured_output = reply.structured
    return [(agent_name, text)] + triggers.on_text(agent_name, content)


def split_transfers(workflow: Workflow, agent_name: str, reply: ModelReply,
                    after_user: bool) -> tuple[str | None, list[ToolCallRequest]]:
    """A reply's handoff (a transfer tool call or the provider's own) and its real tool calls."""
    names = {transfer_tool_name(t): t for t, _ in llm_targets(workflow, agent_name, after_user)}
    transfer = reply.handoff
    calls: list[ToolCallRequest] = []
    for call in reply.tool_calls:
        if call.name in names:
            transfer = names[call.name]
        else:
            calls.append(call)
    return transfer, calls


def auto_call(workflow: Workflow, agent_name: str, reply: ModelReply) -> ToolCallRequest | None:
    """The runtime's own call of the agent's `auto_invoke` tool with its structured output: the
    fields the tool takes, matched by name whatever the case or underscores (as MozaiksAI did)."""
    tool = workflow.auto_tool_for(agent_name)
    if tool is None or reply.structured is None:
        return None
    taken = {_plain(name): name for name in (tool.parameters or {}).get("properties", {})}
    arguments = {taken[_plain(k)]: v for k, v in reply.structured.items() if _plain(k) in taken}
    return ToolCallRequest(id=new_id("call"), name=tool.name, arguments=arguments)


def _plain(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def structured_problem(schema: dict[str, Any], reply: ModelReply) -> str | None:
    if reply.structured is None:
        return "the reply is not a JSON object" if reply.text else "no structured output in the reply"
    errors = validate_arguments(schema, reply.structured)
    return "; ".join(errors) if errors else None


def runtime_note(message_id: str, content: str) -> EventSpec:
    """The runtime's own message to the agents (the model sees it; the user's view hides it)."""
    return ("runtime", ChatText(message_id=message_id, agent="runtime", role="system", content=content,
                                visibility="trace"))
