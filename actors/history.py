"""The conversation as a model sees it, folded from the durable event log.

Rebuilding from the log (instead of storing the transcript in the snapshot) is what makes a
re-activated session see exactly what the crashed one saw, assistant messages included.
"""

from __future__ import annotations

import json
from typing import Any

from mozaiks.providers.base import ModelMessage, ToolCallRequest
from mozaiks.store.base import StoredEvent


class History:
    def __init__(self) -> None:
        self.messages: list[ModelMessage] = []
        self.answered_calls: set[str] = set()
        self._last_reply_id: str | None = None

    def apply(self, event: StoredEvent) -> None:
        data = event.data
        if event.type == "chat.text":
            if data.get("role") == "user":
                self.messages.append(ModelMessage(role="user", content=data.get("content", "")))
                self._last_reply_id = None
            elif data.get("role") == "system":  # the runtime's own notes to the agents
                self.messages.append(ModelMessage(role="user", content=f"[runtime] {data.get('content', '')}"))
                self._last_reply_id = None
            else:
                self.messages.append(ModelMessage(role="assistant", name=event.agent,
                                                  content=data.get("content", "")))
                self._last_reply_id = data.get("message_id")
        # A lifecycle tool's call is no model's: skipped, its response is an orphan no model sees.
        elif event.type == "chat.tool_call" and data.get("trigger") is None:
            call = ToolCallRequest(id=data["call_id"], name=data["name"], arguments=data.get("arguments") or {})
            last = self.messages[-1] if self.messages else None
            same_reply = data.get("message_id") is not None and data.get("message_id") == self._last_reply_id
            if last is not None and last.role == "assistant" and same_reply:
                last.tool_calls.append(call)
            else:
                self.messages.append(ModelMessage(role="assistant", name=event.agent, tool_calls=[call]))
                self._last_reply_id = data.get("message_id")
        elif event.type == "chat.tool_response":
            self.answered_calls.add(data["call_id"])
            self.messages.append(ModelMessage(role="tool", tool_call_id=data["call_id"],
                                              content=_tool_content(data)))
            self._last_reply_id = None

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content or ""
        return ""

    def last_text_of(self, agent: str) -> str:
        for message in reversed(self.messages):
            if message.role == "assistant" and message.name == agent and message.content:
                return message.content
        return ""


def _tool_content(data: dict[str, Any]) -> str:
    if data.get("status") == "ok":
        result = data.get("result")
        return result if isinstance(result, str) else json.dumps(result, default=str)
    return json.dumps({"status": data.get("status"), "error": data.get("error")})


def for_agent(messages: list[ModelMessage], agent: str, system_prompt: str,
              initial_message: str | None) -> list[ModelMessage]:
    """The history from ``agent``'s point of view: its own replies are ``assistant``; what other
    agents said reaches it as named ``user`` messages, the way group chats present peers."""
    out = [ModelMessage(role="system", content=system_prompt)] if system_prompt else []
    if initial_message:
        out.append(ModelMessage(role="user", content=initial_message))
    for message in messages:
        if message.role == "assistant" and message.name != agent and not message.tool_calls:
            out.append(ModelMessage(role="user", content=f"[{message.name}] {message.content or ''}"))
        elif message.role == "assistant" and message.name != agent:
            # Another agent's tool exchange: keep its gist as text, the call ids are not this agent's.
            names = ", ".join(c.name for c in message.tool_calls)
            out.append(ModelMessage(role="user", content=f"[{message.name}] {message.content or ''} (called {names})".strip()))
        else:
            out.append(message)
    return _drop_orphan_tool_results(out)


def _drop_orphan_tool_results(messages: list[ModelMessage]) -> list[ModelMessage]:
    known: set[str] = set()
    kept: list[ModelMessage] = []
    for message in messages:
        if message.role == "assistant":
            known.update(c.id for c in message.tool_calls)
        if message.role == "tool" and message.tool_call_id not in known:
            continue
        kept.append(message)
    return kept
