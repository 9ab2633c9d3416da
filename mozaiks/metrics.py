"""The runtime's metrics, recorded through Ray's metrics API (``ray.util.metrics``).

Ray exports them from every node's metrics agent for Prometheus, named ``ray_<name>`` (see
docs/operations.md for what each means and deploy/grafana/mozaiks.json for a dashboard). Every
metric is declared here once, as a module-level object; the Ray metric behind it is created
lazily, once per process, on first use, so importing this module costs nothing and a process
without Ray (a unit test of the engine) records nothing. Call sites are one line each.

Counters end in ``_total`` so that Prometheus sees the same name Ray was given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol, TypeVar

import ray
from ray.util import metrics as ray_metrics

from mozaiks.protocol.errors import ApiError
from mozaiks.providers.base import DeltaCallback, ModelError, ModelProvider, ModelReply, ModelRequest

T = TypeVar("T")
PREFIX = "ray_"  # what Ray puts before every application metric it exports

# Seconds: from a fast store commit (milliseconds) to a slow model call (minutes).
LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]
DEFINED: dict[str, "_Metric"] = {}  # every metric of the runtime, by name


class _Metric:
    kind = ""

    def __init__(self, name: str, description: str, tags: tuple[str, ...] = ()) -> None:
        self.name, self.description, self.tags = name, description, tags
        self._ray: Any = None
        DEFINED[name] = self

    def _record(self, value: float, tags: Mapping[str, object]) -> None:
        if self._ray is None:
            if not ray.is_initialized():
                return
            self._ray = self._make()
        self._ray_record(value, {key: str(tags.get(key, "")) for key in self.tags})

    def _make(self) -> Any:
        raise NotImplementedError

    def _ray_record(self, value: float, tags: dict[str, str]) -> None:
        raise NotImplementedError

    def exported(self) -> list[str]:
        """The series names Prometheus sees for this metric."""
        return [PREFIX + self.name]


class Counter(_Metric):
    kind = "counter"

    def _make(self) -> Any:
        return ray_metrics.Counter(self.name, self.description, self.tags)

    def _ray_record(self, value: float, tags: dict[str, str]) -> None:
        self._ray.inc(value, tags)

    def inc(self, value: float = 1.0, **tags: object) -> None:
        if value > 0:  # Ray refuses 0 (a scripted model's call uses no tokens); it adds nothing anyway
            self._record(value, tags)


class Gauge(_Metric):
    kind = "gauge"

    def _make(self) -> Any:
        return ray_metrics.Gauge(self.name, self.description, self.tags)

    def _ray_record(self, value: float, tags: dict[str, str]) -> None:
        self._ray.set(value, tags)

    def set(self, value: float, **tags: object) -> None:
        self._record(value, tags)


class Histogram(_Metric):
    kind = "histogram"

    def _make(self) -> Any:
        return ray_metrics.Histogram(self.name, self.description, LATENCY_BUCKETS, self.tags)

    def _ray_record(self, value: float, tags: dict[str, str]) -> None:
        self._ray.observe(value, tags)

    def observe(self, value: float, **tags: object) -> None:
        self._record(value, tags)

    def exported(self) -> list[str]:
        return [PREFIX + self.name + suffix for suffix in ("_bucket", "_sum", "_count")]


CHAT = ("app_id", "workflow")

# Sessions (the SessionDirectory)
# Set by each directory shard for its own chats and pool: sum over ``shard`` for a node's figure.
SESSIONS_RESIDENT = Gauge("mozaiks_sessions_resident", "Chats bound to a session actor, per node and directory "
                          "shard", ("node_id", "shard"))
WARM_POOL = Gauge("mozaiks_warm_pool_size", "Blank session actors ready for the next activation, per node and "
                  "directory shard", ("node_id", "shard"))
ACTIVATIONS = Counter("mozaiks_activations_total", "Chats bound to a session actor; kind=warm reused a "
                      "prepared process, kind=cold started one", ("app_id", "kind"))
PASSIVATIONS = Counter("mozaiks_passivations_total", "Idle chats released from their session actor", ("app_id",))
EVICTIONS = Counter("mozaiks_evictions_total", "Idle chats passivated early to make room on a node at its cap")
CRASHES = Counter("mozaiks_session_crashes_total", "Session actors that died while serving a chat", ("app_id",))
CRASH_REACTIVATIONS = Counter("mozaiks_crash_reactivations_total",
                              "Chats re-activated from their log after their session died", ("app_id",))
FENCING_REFUSALS = Counter("mozaiks_fencing_refusals_total",
                           "Store writes refused because a newer session owns the chat", ("app_id",))
STORE_COMMIT_SECONDS = Histogram("mozaiks_store_commit_seconds", "One durable commit of a session's events "
                                 "and snapshot", ("status",))

# Runs and agent turns
RUNS = Counter("mozaiks_runs_total", "Runs ended, by status", (*CHAT, "status"))
TURNS = Counter("mozaiks_turns_total", "Orchestration steps of a run (an agent turn or a tool phase)",
                (*CHAT, "agent", "status"))
TURN_SECONDS = Histogram("mozaiks_turn_seconds", "One orchestration step, model call and commits included",
                         (*CHAT, "agent"))

# Models
MODEL_CALLS = Counter("mozaiks_model_calls_total", "Model calls, by status (ok|error)",
                      (*CHAT, "agent", "model", "status"))
MODEL_ERRORS = Counter("mozaiks_model_errors_total", "Failed model calls, by error code", (*CHAT, "model", "code"))
MODEL_SECONDS = Histogram("mozaiks_model_call_seconds", "One model call, retries included", (*CHAT, "model"))
MODEL_TTFT_SECONDS = Histogram("mozaiks_model_ttft_seconds", "From a model call's start to its first streamed "
                               "text", (*CHAT, "model"))
MODEL_TOKENS = Counter("mozaiks_model_tokens_total", "Tokens of model calls, kind=prompt|completion",
                       (*CHAT, "agent", "model", "kind"))

# Tools
TOOL_CALLS = Counter("mozaiks_tool_calls_total", "Tool calls run, by tool and status", (*CHAT, "tool", "status"))
TOOL_SECONDS = Histogram("mozaiks_tool_call_seconds", "One tool call as a Ray task", (*CHAT, "tool"))

# The WebSocket edge and the HTTP API (the Serve ingress replicas)
WS_OPEN = Gauge("mozaiks_ws_connections_open", "WebSocket connections open on one ingress replica")
WS_MESSAGES = Counter("mozaiks_ws_messages_total", "WebSocket frames, direction=in|out", ("direction",))
WS_CLOSES = Counter("mozaiks_ws_closes_total", "WebSocket closes by close code; by=server|client", ("code", "by"))
HTTP_REQUESTS = Counter("mozaiks_http_requests_total", "Broker and runtime API requests by route and status code",
                        ("method", "route", "status_code"))
HTTP_SECONDS = Histogram("mozaiks_http_request_seconds", "One broker or runtime API request", ("method", "route"))
GATE_REFUSALS = Counter("mozaiks_gate_refusals_total", "Session starts refused by the capability gate, by "
                        "reason (not_entitled, rate_limited, usage_limit_exceeded, unknown_workflow)", ("reason",))


# ---------------------------------------------------------------------- helpers for call sites
def chat_tags(chat: Any) -> dict[str, str]:
    """The tags every metric about one chat carries (a ``ChatRecord``)."""
    return {"app_id": chat.app_id, "workflow": chat.workflow_name}


async def timed_turn(step: Awaitable[T], chat: Any, agent: str | None) -> T:
    """Run one orchestration step, counting it and its duration."""
    tags = {**chat_tags(chat), "agent": agent or ""}
    started, status = time.perf_counter(), "error"
    try:
        result = await step
        status = "ok"
        return result
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    finally:
        TURNS.inc(**tags, status=status)
        TURN_SECONDS.observe(time.perf_counter() - started, **tags)


async def model_call(provider: ModelProvider, request: ModelRequest, on_delta: DeltaCallback, chat: Any,
                     model: str) -> ModelReply:
    """``provider.complete``, measured: latency, time to first text, tokens, errors."""
    tags = {**chat_tags(chat), "model": model}
    started = time.perf_counter()
    first: list[float] = []

    async def delta(text: str, reset: bool = False) -> None:
        if text and not first:
            first.append(time.perf_counter() - started)
        await on_delta(text, reset)

    try:
        reply = await provider.complete(request, delta)
    except ModelError as exc:
        MODEL_CALLS.inc(**tags, agent=request.agent, status="error")
        MODEL_ERRORS.inc(**tags, code=exc.code)
        raise
    finally:
        MODEL_SECONDS.observe(time.perf_counter() - started, **tags)
    MODEL_CALLS.inc(**tags, agent=request.agent, status="ok")
    if first:
        MODEL_TTFT_SECONDS.observe(first[0], **tags)
    MODEL_TOKENS.inc(reply.usage.prompt_tokens, **tags, agent=request.agent, kind="prompt")
    MODEL_TOKENS.inc(reply.usage.completion_tokens, **tags, agent=request.agent, kind="completion")
    return reply


class _ToolOutcome(Protocol):
    status: str
    started_at: float
    ended_at: float


Outcome = TypeVar("Outcome", bound=_ToolOutcome)


def tool_call(chat: Any, tool: str, outcome: Outcome) -> Outcome:
    """Count a finished tool call (an ``actors.tool_tasks.ToolOutcome``) and pass it on."""
    TOOL_CALLS.inc(**chat_tags(chat), tool=tool, status=outcome.status)
    TOOL_SECONDS.observe(outcome.ended_at - outcome.started_at, **chat_tags(chat), tool=tool)
    return outcome


async def gated(check: Awaitable[T]) -> T:
    """Await the capability gate's check, counting a refusal by its error code."""
    try:
        return await check
    except ApiError as exc:
        GATE_REFUSALS.inc(reason=exc.code)
        raise


async def store_commit(write: Awaitable[T]) -> T:
    started, status = time.perf_counter(), "error"
    try:
        result = await write
        status = "ok"
        return result
    finally:
        STORE_COMMIT_SECONDS.observe(time.perf_counter() - started, status=status)


def residency(shard: int, resident_per_node: Mapping[str, int], pool_nodes: list[str], known: set[str]) -> None:
    """Set one shard's per-node gauges; ``known`` collects every node reported so far, so a node
    whose count fell to zero reports zero instead of its last value."""
    known.update(resident_per_node, pool_nodes)
    for node in known:
        SESSIONS_RESIDENT.set(resident_per_node.get(node, 0), node_id=node, shard=shard)
        WARM_POOL.set(pool_nodes.count(node), node_id=node, shard=shard)


class _OpenSockets:
    """The ingress replica's count of open WebSocket connections, mirrored into its gauge."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, change: int) -> None:
        self.count += change
        WS_OPEN.set(self.count)


ws_open = _OpenSockets()


class HttpMetrics:
    """ASGI middleware counting HTTP requests by route template (never the raw path, which holds
    chat ids) and status code."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.inc(method=scope["method"], route=route, status_code=status[0])
            HTTP_SECONDS.observe(time.perf_counter() - started, method=scope["method"], route=route)
