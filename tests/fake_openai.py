"""A real local HTTP server speaking the OpenAI chat-completions protocol, scripted by tests.

It runs its own asyncio loop in a daemon thread, so it serves the code under test whatever loop (or
thread, or Ray worker) that code uses. Raw HTTP/1.1 rather than a web framework because tests need
control below what frameworks expose: cutting a chunked stream off mid-body, exact timing.

    with FakeOpenAI() as fake:                       # or the ``fake_openai`` fixture
        fake.enqueue(FakeResponse(text="Hello there", chunks=3))
        client = AsyncOpenAI(base_url=fake.base_url, api_key="test")
        ...
        assert fake.requests[0].body["model"] == "gpt-test"

Fixtures ``fake_openai`` (one server) and ``fake_openai_factory`` (more, e.g. a second endpoint): register
them with ``pytest_plugins = ["tests.fake_openai"]`` in tests/conftest.py, or import them into a test module.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class FakeToolCall:
    name: str
    arguments: str | dict[str, Any]  # a str is sent verbatim (lets tests send invalid JSON)
    id: str | None = None  # default: call_<n>
    pieces: int = 3  # how many stream chunks the arguments string is split into


@dataclass
class FakeUsage:
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cached_tokens: int = 0


@dataclass
class FakeResponse:
    """One scripted answer. Defaults give a successful streamed text reply."""

    text: str = ""
    chunks: int = 3  # how many content deltas ``text`` is split into
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    usage: FakeUsage | None = field(default_factory=FakeUsage)  # None: no usage chunk / field
    model: str | None = None  # reported model; default: echo the requested one
    finish_reason: str | None = "auto"  # "auto": tool_calls or stop; None: never send one
    status: int = 200  # non-200: an OpenAI-style error body instead of a completion
    error_message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers (e.g. Retry-After)
    delay_s: float = 0.0  # before the response starts
    chunk_delay_s: float = 0.0  # between stream events
    disconnect_after: int | None = None  # abort the connection after this many stream events (no [DONE])

    @classmethod
    def http_error(
        cls, status: int, *, retry_after_s: float | None = None, message: str = "scripted error"
    ) -> FakeResponse:
        headers = {"Retry-After": f"{retry_after_s:g}"} if retry_after_s is not None else {}
        return cls(status=status, headers=headers, error_message=message)

    @classmethod
    def json_text(cls, value: Any, chunks: int = 3) -> FakeResponse:
        """A structured-output reply: ``value`` as JSON text."""
        return cls(text=json.dumps(value), chunks=chunks)


# A queued item is a fixed response or a function of the request body (for echo-style integration tests).
Responder = FakeResponse | Callable[[dict[str, Any]], FakeResponse]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    received_at: float  # time.monotonic() when the body had been read


class FakeOpenAI:
    def __init__(self, default: Responder | None = None) -> None:
        """``default`` answers when the queue is empty; without one an empty queue is a 400 error."""
        self._default = default
        self._queue: deque[Responder] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._counter = 0
        self.port = 0

    # -- control (any thread) -------------------------------------------------------------------

    def start(self) -> str:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self.base_url

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *responses: Responder) -> None:
        with self._lock:
            self._queue.extend(responses)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Scripted responses not consumed yet."""
        with self._lock:
            return len(self._queue)

    # -- server (its own thread and loop) -------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        loop.run_until_complete(self._shutdown(server))
        loop.close()

    async def _shutdown(self, server: asyncio.Server) -> None:
        # Cut slow or streaming handlers short so stop() never waits on a script.
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away (e.g. its timeout fired); nothing to answer
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = await reader.readline()
        if not request_line:
            return
        method, path, _ = request_line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        body = json.loads(raw) if raw else {}
        path = path.split("?")[0]
        routed = method == "POST" and path.endswith("/chat/completions")
        with self._lock:
            self._requests.append(RecordedRequest(method, path, headers, body, time.monotonic()))
            # A stray request must not eat a response scripted for a chat completion.
            responder = (self._queue.popleft() if self._queue else self._default) if routed else None
            self._counter += 1
            n = self._counter

        if not routed:
            await _send_json(writer, 404, _error_body(f"no route {method} {path}", 404))
            return
        if responder is None:
            await _send_json(writer, 400, _error_body("fake_openai: no scripted response queued", 400))
            return
        response = responder(body) if callable(responder) else responder
        if response.delay_s:
            await asyncio.sleep(response.delay_s)
        if response.status != 200:
            await _send_json(writer, response.status, _error_body(response.error_message, response.status),
                             response.headers)
        elif body.get("stream"):
            await _send_stream(writer, response, body, n)
        elif response.disconnect_after is not None:
            writer.transport.abort()
        else:
            await _send_json(writer, 200, _completion(response, body, n), response.headers)


# -- wire formats ----------------------------------------------------------------------------------


def _error_body(message: str, status: int) -> dict[str, Any]:
    kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _split(text: str, parts: int) -> list[str]:
    if not text:
        return []
    size = -(-len(text) // max(parts, 1))  # ceil, so there are at most ``parts`` pieces
    return [text[i : i + size] for i in range(0, len(text), size)]


def _arguments(call: FakeToolCall) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


def _finish_reason(response: FakeResponse) -> str | None:
    if response.finish_reason == "auto":
        return "tool_calls" if response.tool_calls else "stop"
    return response.finish_reason


def _usage(usage: FakeUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _completion(response: FakeResponse, request: dict[str, Any], n: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None}
    if response.tool_calls:
        message["tool_calls"] = [
            {"id": c.id or f"call_{i}", "type": "function", "function": {"name": c.name, "arguments": _arguments(c)}}
            for i, c in enumerate(response.tool_calls)
        ]
    out: dict[str, Any] = {
        "id": f"chatcmpl-fake-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": response.model or request.get("model", "fake-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(response)}],
    }
    if response.usage is not None:
        out["usage"] = _usage(response.usage)
    return out


def _stream_events(response: FakeResponse, request: dict[str, Any], n: int) -> list[dict[str, Any]]:
    base = {
        "id": f"chatcmpl-fake-{n}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": response.model or request.get("model", "fake-model"),
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    deltas: list[dict[str, Any]] = [{"content": piece} for piece in _split(response.text, response.chunks)]
    for i, call in enumerate(response.tool_calls):
        head = {"index": i, "id": call.id or f"call_{i}", "type": "function",
                "function": {"name": call.name, "arguments": ""}}
        deltas.append({"tool_calls": [head]})
        deltas += [{"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                   for piece in _split(_arguments(call), call.pieces)]
    if deltas:
        deltas[0] = {"role": "assistant", **deltas[0]}
    events = [chunk(d) for d in deltas]
    finish = _finish_reason(response)
    if finish is not None:
        events.append(chunk({}, finish))
    include_usage = (request.get("stream_options") or {}).get("include_usage")
    if include_usage and response.usage is not None:
        events.append({**base, "choices": [], "usage": _usage(response.usage)})
    return events


async def _send_json(writer: asyncio.StreamWriter, status: int, payload: dict[str, Any],
                     headers: dict[str, str] | None = None) -> None:
    data = json.dumps(payload).encode()
    head = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}
    writer.write(_head(status, head) + data)
    await writer.drain()


async def _send_stream(writer: asyncio.StreamWriter, response: FakeResponse, request: dict[str, Any], n: int) -> None:
    # Chunked encoding, so an abort mid-body is a protocol error for the client, as with a real dropped stream.
    head = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked", **response.headers}
    writer.write(_head(200, head))
    for sent, event in enumerate(_stream_events(response, request, n)):
        if sent == response.disconnect_after:
            writer.transport.abort()
            return
        writer.write(_chunk(f"data: {json.dumps(event)}\n\n"))
        await writer.drain()
        if response.chunk_delay_s:
            await asyncio.sleep(response.chunk_delay_s)
    if response.disconnect_after is not None:  # asked to cut after more events than there are: still no [DONE]
        writer.transport.abort()
        return
    writer.write(_chunk("data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", *(f"{k}: {v}" for k, v in headers.items()),
             "Connection: close"]  # one request per connection keeps the server trivially correct
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(text: str) -> bytes:
    data = text.encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@pytest.fixture
def fake_openai_factory() -> Iterator[Callable[..., FakeOpenAI]]:
    """Starts servers on demand (``factory(default=...)``); all are stopped after the test."""
    servers: list[FakeOpenAI] = []

    def start(default: Responder | None = None) -> FakeOpenAI:
        server = FakeOpenAI(default)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def fake_openai(fake_openai_factory: Callable[..., FakeOpenAI]) -> FakeOpenAI:
    """A started server for one test."""
    return fake_openai_factory()
