"""Chat-completions provider for OpenAI and OpenAI-compatible servers (vLLM, Ollama, gateways, …).

Every call streams. Retries are ours, not the SDK's: the SDK only retries a failed *request*, while a
stream that breaks half-way must be retried too, and the caller told to discard the partial text.

The SDK carries the request (auth, connection pool, SSE parsing, error types), but the body is
serialised here, once per call, and handed over as bytes: ``chat.completions.create`` would run
its type-directed transform over the whole ``messages`` history on every call, which made a
turn's CPU grow with the length of the chat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletionChunk

from mozaiks.providers.base import (
    DeltaCallback,
    ModelError,
    ModelMessage,
    ModelProvider,
    ModelReply,
    ModelRequest,
    ToolCallRequest,
    ToolDefinition,
    Usage,
)

log = logging.getLogger(__name__)

# A tool call whose arguments are not a JSON object gets ``{INVALID_JSON_KEY: raw}`` so the runtime can
# answer the model with a validation error instead of the whole turn failing.
INVALID_JSON_KEY = "__invalid_json__"

_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")  # what the API accepts in a message's ``name``
_MAX_DELAY_S = 30.0  # cap for both exponential backoff and a server's Retry-After
_RETRYABLE_STATUS = frozenset({408, 409, 429})  # plus every 5xx
# Body keys the provider owns; a per-agent ``params`` entry for one of them is ignored (with a warning).
_RESERVED_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "tools", "response_format"})
_WARM_UP_TIMEOUT_S = 10.0
# What the warm-up stub answers: a one-word streamed completion with its usage, as a server sends it.
_WARM_UP_CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2,
                              "prompt_tokens_details": {"cached_tokens": 0}}},
]
_WARM_UP_BODY = b"".join(
    b"data: " + json.dumps({"id": "warm-up", "object": "chat.completion.chunk", "created": 0, "model": "warm-up",
                            **chunk}).encode() + b"\n\n" for chunk in _WARM_UP_CHUNKS) + b"data: [DONE]\n\n"


class _Retryable(Exception):
    def __init__(self, message: str, *, code: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s


@dataclass
class _ToolCallBuffer:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Attempt:
    """What one streamed attempt produced so far (kept when it fails, to know whether to reset)."""

    model: str
    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallBuffer] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None


class OpenAIProvider(ModelProvider):
    def __init__(
        self,
        base_url: str | None,
        api_key: str,
        default_model: str,
        timeout_s: float,
        max_retries: int,
        backoff_base_s: float = 0.5,
    ) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self._default_model = default_model
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        # One endpoint and key per provider (the registry keeps one per agent endpoint), so one client
        # (one connection pool), created on the first call.
        self._client: openai.AsyncOpenAI | None = None

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def complete(self, request: ModelRequest, on_delta: DeltaCallback | None = None) -> ModelReply:
        """Streams one reply, retrying transient failures; ``duration_ms`` covers all attempts."""
        started = time.monotonic()
        client = self._connect()
        body = self._request_body(request)
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        failure: _Retryable | None = None
        for attempt_no in range(self._max_retries + 1):
            if failure is not None:
                await asyncio.sleep(self._delay_s(attempt_no - 1, failure.retry_after_s))
            attempt = _Attempt(model=body["model"])
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._stream(client, content, attempt, on_delta)
                reply = _reply(attempt, request)
                reply.duration_ms = int((time.monotonic() - started) * 1000)
                return reply
            except _Retryable as exc:
                failure = exc
            except TimeoutError:
                failure = _Retryable(f"no complete reply within {self._timeout_s}s", code="timeout")
            except openai.APIError as exc:
                failure = _classify(exc)  # raises ModelError when retrying cannot help
            if attempt.text and on_delta is not None:
                await on_delta("", True)  # the next attempt streams the message from the start
            log.warning(
                "model call failed agent=%s model=%s attempt=%d/%d code=%s",
                request.agent, body["model"], attempt_no + 1, self._max_retries + 1, failure.code,
            )
        assert failure is not None
        # The attempts are spent, so no retry can still happen: `code` keeps the transient cause.
        raise ModelError(
            f"model call failed after {self._max_retries + 1} attempts: {failure}", retryable=False, code=failure.code
        )

    async def warm(self) -> None:
        """Run one streamed request through this client's whole path (platform probe, connection
        pool, HTTP parser, SSE decoder, chunk models: code the SDK builds or imports on its first
        request, 40-50 ms of CPU, which made a fresh process' first reply 0.1-0.2 s slower at load
        15 and about a second at load 60) against a stub on a loopback port of this process. The model server is never called; the copy that makes
        the request shares the connection pool but not the API key."""
        client = self._connect()
        content = json.dumps(self._request_body(ModelRequest(agent="warm-up", model={}, messages=[])),
                             separators=(",", ":")).encode()
        try:
            async with asyncio.timeout(_WARM_UP_TIMEOUT_S):
                server = await asyncio.start_server(_answer_warm_up, "127.0.0.1", 0)
                async with server:
                    port = server.sockets[0].getsockname()[1]
                    probe = client.with_options(base_url=f"http://127.0.0.1:{port}/v1", api_key="warm-up")
                    await self._stream(probe, content, _Attempt(model="warm-up"), None)
        except Exception as error:  # only the first call's speed is at stake, never a chat
            log.info("openai provider warm-up failed (the first call pays for it): %r", error)

    def _connect(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(base_url=self._base_url, api_key=self._api_key,
                                              timeout=self._timeout_s, max_retries=0)
        return self._client

    def _request_body(self, request: ModelRequest) -> dict[str, Any]:
        cfg = request.model
        body: dict[str, Any] = {
            "model": cfg.get("name") or self._default_model,
            "messages": [_message_dict(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if cfg.get("temperature") is not None:
            body["temperature"] = cfg["temperature"]
        if request.tools:
            body["tools"] = [_tool_dict(t) for t in request.tools]
        if request.response_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.response_schema_name or "output",
                    "schema": request.response_schema,
                    "strict": False,  # strict mode rejects common schemas (optional fields, open objects)
                },
            }
        # Passed through as given: compatible servers accept extras (top_k, repetition_penalty, …).
        params: dict[str, Any] = cfg.get("params") or {}
        if ignored := sorted(_RESERVED_PARAMS.intersection(params)):
            log.warning("agent=%s: model params %s are set by the provider and ignored", request.agent, ignored)
        body.update((k, v) for k, v in params.items() if k not in _RESERVED_PARAMS)
        return body

    async def _stream(
        self, client: openai.AsyncOpenAI, content: bytes, attempt: _Attempt, on_delta: DeltaCallback | None
    ) -> None:
        # The same request create() would make (path, JSON content type, bearer auth), minus its transform.
        stream = await client.post("/chat/completions", cast_to=ChatCompletionChunk, content=content,
                                   stream=True, stream_cls=openai.AsyncStream[ChatCompletionChunk])
        async with stream:
            try:
                async for chunk in stream:
                    await _absorb(chunk, attempt, on_delta)
            except openai.APIConnectionError:
                if attempt.finish_reason is None:
                    raise
                # The answer is complete; only the trailing usage chunk was lost. Retrying would duplicate it.
        if attempt.finish_reason is None:
            raise _Retryable("stream ended without a finish_reason", code="stream_incomplete")

    def _delay_s(self, retry_no: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, _MAX_DELAY_S)
        # Jitter downwards so many sessions hit by the same outage do not retry in lockstep.
        return min(self._backoff_base_s * 2**retry_no, _MAX_DELAY_S) * (1 - 0.25 * random.random())


async def _absorb(chunk: ChatCompletionChunk, attempt: _Attempt, on_delta: DeltaCallback | None) -> None:
    if chunk.model:
        attempt.model = chunk.model
    if chunk.usage is not None:
        details = chunk.usage.prompt_tokens_details
        attempt.usage = Usage(
            prompt_tokens=chunk.usage.prompt_tokens,
            completion_tokens=chunk.usage.completion_tokens,
            total_tokens=chunk.usage.total_tokens,
            cached=bool(details and details.cached_tokens),
        )
    for choice in chunk.choices:
        if choice.index != 0:  # we never ask for n > 1
            continue
        delta = choice.delta
        if delta.content:
            attempt.text.append(delta.content)
            if on_delta is not None:
                await on_delta(delta.content, False)
        for tc in delta.tool_calls or []:
            buf = attempt.tool_calls.setdefault(tc.index, _ToolCallBuffer())
            if tc.id and not buf.id:
                buf.id = tc.id
            if tc.function is not None:
                buf.name += tc.function.name or ""
                buf.arguments += tc.function.arguments or ""
        if choice.finish_reason:
            attempt.finish_reason = choice.finish_reason


async def _answer_warm_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The warm-up's stub server: reads one request, answers ``_WARM_UP_BODY`` and closes."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        await reader.readexactly(int(length[1]) if length else 0)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(_WARM_UP_BODY) + _WARM_UP_BODY)
        await writer.drain()
    finally:
        writer.close()


def _reply(attempt: _Attempt, request: ModelRequest) -> ModelReply:
    text = "".join(attempt.text)
    tool_calls = [
        ToolCallRequest(id=buf.id or f"call_{uuid.uuid4().hex[:24]}", name=buf.name,
                        arguments=_parse_arguments(buf.arguments))
        for _, buf in sorted(attempt.tool_calls.items())
    ]
    structured: dict[str, Any] | None = None
    if request.response_schema is not None and not tool_calls:
        # A reply that is not a JSON object is still a billed call: it goes back as it is, and the
        # engine meters it and sends the agent the reason (never a silent retry in here).
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        structured = parsed if isinstance(parsed, dict) else None
    return ModelReply(
        text=text or None,
        tool_calls=tool_calls,
        structured=structured,
        usage=attempt.usage or _estimate_usage(request, text, attempt),
        model=attempt.model,
    )


def _parse_arguments(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {INVALID_JSON_KEY: raw}
    return value if isinstance(value, dict) else {INVALID_JSON_KEY: raw}


def _estimate_usage(request: ModelRequest, text: str, attempt: _Attempt) -> Usage:
    """Rough count (~4 characters a token) for servers that do not report usage; budgets still move."""
    prompt_chars = sum(len(m.content or "") + sum(len(json.dumps(c.arguments)) for c in m.tool_calls)
                       for m in request.messages)
    completion_chars = len(text) + sum(len(b.name) + len(b.arguments) for b in attempt.tool_calls.values())
    prompt, completion = prompt_chars // 4 + 1, completion_chars // 4 + 1
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _classify(exc: openai.APIError) -> _Retryable:
    """Turn an SDK error into a retryable failure, or raise ModelError when retrying cannot help."""
    if isinstance(exc, openai.APITimeoutError):
        return _Retryable("request timed out", code="timeout")
    if isinstance(exc, openai.APIConnectionError):
        return _Retryable("connection to the model server failed", code="connection_error")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in _RETRYABLE_STATUS or status >= 500:
            code = "rate_limited" if status == 429 else "server_error"
            return _Retryable(f"HTTP {status}: {exc.message}", code=code,
                              retry_after_s=_retry_after_s(exc.response.headers))
        # Auth errors may echo (part of) the key; keep their text out of messages that end up in logs.
        detail = "authentication or permission denied" if status in (401, 403) else exc.message
        raise ModelError(f"HTTP {status}: {detail}", retryable=False, code=f"http_{status}") from exc
    if isinstance(exc, openai.APIResponseValidationError):
        raise ModelError("model server sent a malformed response", retryable=False, code="bad_response") from exc
    # A bare APIError is an ``error`` event inside an otherwise healthy stream: a server-side hiccup.
    return _Retryable(f"error event in stream: {exc.message}", code="stream_error")


def _retry_after_s(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (numeric form only; HTTP dates fall back to backoff)."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def _message_dict(message: ModelMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content or ""}
    out: dict[str, Any] = {"role": message.role}
    if message.name and _NAME_RE.match(message.name):
        out["name"] = message.name
    if message.role == "assistant" and message.tool_calls:
        out["content"] = message.content  # the one case where the API accepts no content
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments_text(c.arguments)}}
            for c in message.tool_calls
        ]
    else:
        out["content"] = message.content or ""
    return out


def _arguments_text(arguments: dict[str, Any]) -> str:
    # Send back exactly what the model produced when it was not valid JSON, so its history stays truthful.
    if set(arguments) == {INVALID_JSON_KEY} and isinstance(arguments[INVALID_JSON_KEY], str):
        return arguments[INVALID_JSON_KEY]
    return json.dumps(arguments)


def _tool_dict(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }
