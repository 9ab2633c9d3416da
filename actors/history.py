"""The conversation as a model sees it, folded from the durable event log.

Rebuilding from the log (instead of storing the transcript in the snapshot) is what makes a
re-activated session see exactly what the crashed one saw, assistant messages included.
"""

from __future__ import annotations

import json

from mozaiks.protocol.events import ChatText, EventData, ToolCall, ToolResponse
from mozaiks.providers.base import ModelMessage, ToolCallRequest
from mozaiks.store.base import StoredEvent

# The events the conversation is folded from; the rest of the log does not change what a model sees.
_FOLDED: dict[str, type[EventData]] = {m.TYPE: m for m in (ChatText, ToolCall, ToolResponse)}


class History:
    def __init__(self) -> None:
        self.messages: list[ModelMessage] = []
        self.answered_calls: set[str] = set()
        self._last_reply_id: str | None = None
        # No agent has said or called anything since the user's last message (its llm rules apply).
        self.user_spoke_last = False

    def replay(self, events: list[StoredEvent]) -> None:
        """Fold a chat's log, read back from the store, as it was committed."""
        for event in events:
            if event.type in _FOLDED:
                self.apply(event.agent, _FOLDED[event.type].model_validate(event.data))

    def apply(self, agent: str | None, payload: EventData) -> None:
        """Fold one committed event (``agent`` is its envelope's)."""
        if isinstance(payload, ChatText) or (isinstance(payload, ToolCall) and payload.trigger is None):
            self.user_spoke_last = isinstance(payload, ChatText) and payload.role == "user"
        match payload:
            case ChatText(role="user"):
                self.messages.append(ModelMessage(role="user", content=payload.content))
                self._last_reply_id = None
            case ChatText(role="system"):  # the runtime's own notes to the agents
                self.messages.append(ModelMessage(role="user", content=f"[runtime] {payload.content}"))
                self._last_reply_id = None
            case ChatText():
                self.messages.append(ModelMessage(role="assistant", name=agent, content=payload.content))
                self._last_reply_id = payload.message_id
            case ToolCall(trigger=None):  # a lifecycle tool's call is no model's; its response is an orphan
                self._apply_call(agent, payload)
            case ToolResponse():
                self.answered_calls.add(payload.call_id)
                self.messages.append(ModelMessage(role="tool", tool_call_id=payload.call_id,
                                                  content=_tool_content(payload)))
                self._last_reply_id = None

    def _apply_call(self, agent: str | None, payload: ToolCall) -> None:
        call = ToolCallRequest(id=payload.call_id, name=payload.name, arguments=payload.arguments)
        last = self.messages[-1] if self.messages else None
        same_reply = payload.message_id is not None and payload.message_id == self._last_reply_id
        if last is not None and last.role == "assistant" and same_reply:
            last.tool_calls.append(call)
        else:
            self.messages.append(ModelMessage(role="assistant", name=agent, tool_calls=[call]))
            self._last_reply_id = payload.message_id

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


def _tool_content(response: ToolResponse) -> str:
    if response.status == "ok":
        result = response.result
        return result if isinstance(result, str) else json.dumps(result, default=str)
    return json.dumps({"status": response.status, "error": response.error})


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
