"""What the session's orchestration loop asks of a model, and what it gets back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field


class ToolCallRequest(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ModelMessage(BaseModel):
    """One message of the conversation in chat-completions shape."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None  # the speaking agent, for assistant messages of multi-agent chats
    tool_calls: list[ToolCallRequest] = Field(default_factory=list)
    tool_call_id: str | None = None


class ToolDefinition(BaseModel):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached: bool = False


class ModelRequest(BaseModel):
    agent: str
    model: dict[str, Any]  # the agent's model config (provider, name, temperature, script, …)
    messages: list[ModelMessage]
    tools: list[ToolDefinition] = Field(default_factory=list)
    response_schema: dict[str, Any] | None = None  # JSON Schema the reply must satisfy (structured output)
    response_schema_name: str | None = None
    call_index: int = 0  # how many model calls this agent already made in this chat (scripted cursor)
    variables: dict[str, Any] = Field(default_factory=dict)  # context variables, for placeholders
    last_user_message: str = ""


class ModelReply(BaseModel):
    text: str | None = None
    tool_calls: list[ToolCallRequest] = Field(default_factory=list)
    structured: dict[str, Any] | None = None
    handoff: str | None = None  # scripted {"handoff": X}: same as the model calling transfer_to_X
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    duration_ms: int = 0
    exhausted: bool = False  # scripted: no reply left; the agent ends its turn without speaking


class ModelError(Exception):
    def __init__(self, message: str, *, retryable: bool, code: str = "model_error") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


# Called with each streamed text fragment; ``reset=True`` means "discard what was streamed so far"
# (a retried call after a mid-stream failure starts the message again).
DeltaCallback = Callable[[str, bool], Awaitable[None]]


class ModelProvider(ABC):
    @abstractmethod
    async def complete(self, request: ModelRequest, on_delta: DeltaCallback | None = None) -> ModelReply:
        """One model call. Streams text through ``on_delta`` when given. Raises ModelError."""

    async def warm(self) -> None:
        """Build now, off any user's path, what the first call would otherwise build (a client, its
        connection pool, the code its first request runs). Never calls the model."""
