"""Context variables: their initial values, and the triggers that set them from agent text and
UI responses. Each change is returned as a ``context_update`` event for the same commit."""

from __future__ import annotations

import os
import re
from typing import Any

from actors.commits import EventSpec
from mozaiks.protocol.events import ContextUpdate
from mozaiks.store.base import ChatRecord
from workflows.model import Workflow


class ContextTriggers:
    def __init__(self, workflow: Workflow, context: dict[str, Any]) -> None:
        self.workflow = workflow
        self.context = context  # the snapshot's own dict: changes land in the next commit

    def initial(self, chat: ChatRecord) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for var in self.workflow.context_variables:
            source = var.source
            if source.type == "env" and source.env_var:
                values[var.name] = os.environ.get(source.env_var, var.default)
            elif source.type == "static" and source.value is not None:
                values[var.name] = source.value
            else:
                values[var.name] = var.default
        values.update(app_id=chat.app_id, user_id=chat.user_id, chat_id=chat.chat_id,
                      workflow_name=chat.workflow_name, context=chat.context)
        return values

    def set(self, name: str, value: Any) -> EventSpec:
        self.context[name] = value
        return (None, ContextUpdate(variable=name, value=value))

    def on_text(self, agent: str, text: str) -> list[EventSpec]:
        return [self.set(var.name, trig.value)
                for var in self.workflow.context_variables for trig in var.source.triggers
                if trig.type == "agent_text" and trig.agent in (None, agent) and matches(trig.match, text)]

    def hides(self, agent: str, text: str) -> bool:
        """A matching `ui_hidden` trigger makes the text trace only (MozaiksAI's control tokens)."""
        return any(trig.ui_hidden and trig.type == "agent_text" and trig.agent in (None, agent)
                   and matches(trig.match, text)
                   for var in self.workflow.context_variables for trig in var.source.triggers)

    def on_ui_response(self, tool: str, response: Any) -> list[EventSpec]:
        events = []
        for var in self.workflow.context_variables:
            for trig in var.source.triggers:
                if trig.type == "ui_response" and trig.tool == tool:
                    keyed = isinstance(response, dict) and trig.response_key
                    events.append(self.set(var.name, response.get(trig.response_key) if keyed else response))
        return events


def matches(match: dict[str, str] | None, text: str) -> bool:
    if not match:
        return False
    if "equals" in match:
        return text.strip() == match["equals"]
    if "contains" in match:
        return match["contains"] in text
    if "regex" in match:
        return re.search(match["regex"], text) is not None
    return False
