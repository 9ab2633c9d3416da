"""The scripted provider: deterministic replies for offline demos and tests (WORKFLOWS.md).

The reply for a call is ``script[call_index]``; the session keeps ``call_index`` per agent in its
snapshot, so a re-activated session continues the script where the crashed one stopped.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from mozaiks.providers.base import (
    DeltaCallback, ModelProvider, ModelReply, ModelRequest, ToolCallRequest, Usage,
)

_PLACEHOLDER = re.compile(r"\{(last_user_message|context\.[A-Za-z0-9_.]+)\}")


def estimate_tokens(text: str) -> int:
    # Roughly four characters a token, as OpenAI's tokenizers average on English text.
    return max(1, (len(text) + 3) // 4) if text else 0


def _lookup(variables: dict[str, Any], dotted: str) -> Any:
    value: Any = variables
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return ""
        value = value[part]
    return value


def fill_placeholders(value: Any, request: ModelRequest) -> Any:
    """Replace ``{last_user_message}`` and ``{context.name}`` in every string inside ``value``."""
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            key = match.group(1)
            if key == "last_user_message":
                return request.last_user_message
            found = _lookup(request.variables, key.removeprefix("context."))
            return found if isinstance(found, str) else json.dumps(found)
        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, dict):
        return {k: fill_placeholders(v, request) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_placeholders(v, request) for v in value]
    return value


class ScriptedProvider(ModelProvider):
    async def complete(self, request: ModelRequest, on_delta: DeltaCallback | None = None) -> ModelReply:
        started = time.perf_counter()
        script: list[dict[str, Any]] = request.model.get("script") or []
        params: dict[str, Any] = request.model.get("params") or {}
        prompt_tokens = sum(estimate_tokens(m.content or "") for m in request.messages)
        index = request.call_index
        if index >= len(script) and script and params.get("repeat_last"):
            index = len(script) - 1  # a stand-in that answers every call, e.g. an offline fallback
        if index >= len(script):
            return ModelReply(exhausted=True, model="scripted",
                              usage=Usage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens))
        item = fill_placeholders(script[index], request)
        text: str | None = item.get("text")
        if text and on_delta is not None:
            await _stream(text, on_delta, int(params.get("stream_chunk_chars", 0)),
                          float(params.get("stream_delay_s", 0.0)))
        structured = item.get("structured")
        completion_text = (text or "") + (json.dumps(structured) if structured is not None else "")
        # Unique in the chat: call_index counts per agent, and answered calls are found by id.
        calls = [ToolCallRequest(id=f"call_{request.agent}_{request.call_index}_{i}", name=c["name"],
                                 arguments=c.get("arguments") or {})
                 for i, c in enumerate(item.get("tool_calls") or [])]
        completion_tokens = estimate_tokens(completion_text) + sum(
            estimate_tokens(json.dumps(c.arguments)) for c in calls)
        return ModelReply(
            text=text, tool_calls=calls, structured=structured, handoff=item.get("handoff"),
            model="scripted",
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens),
            duration_ms=int((time.perf_counter() - started) * 1000),
        )


async def _stream(text: str, on_delta: DeltaCallback, chunk_chars: int, delay_s: float) -> None:
    if chunk_chars <= 0:
        await on_delta(text, False)
        return
    for start in range(0, len(text), chunk_chars):
        await on_delta(text[start:start + chunk_chars], False)
        if delay_s:
            await asyncio.sleep(delay_s)
        else:
            await asyncio.sleep(0)  # let cancellation and other chats in
