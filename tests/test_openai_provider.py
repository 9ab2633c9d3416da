"""OpenAIProvider against a real local HTTP server (tests/fake_openai.py); the SDK is not patched."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest
from pydantic import SecretStr

from mozaiks.providers.base import ModelError, ModelMessage, ModelReply, ModelRequest, ToolCallRequest, ToolDefinition
from mozaiks.providers.openai_provider import INVALID_JSON_KEY, OpenAIProvider
from mozaiks.providers.registry import ProviderRegistry
from mozaiks.settings import Settings
from tests.fake_openai import FakeOpenAI, FakeResponse, FakeToolCall, FakeUsage
from tests.fake_openai import fake_openai, fake_openai_factory  # noqa: F401  (fixtures)
from workflows.model import ModelConfig

MAX_RETRIES = 2


class Deltas:
    """Records what the provider streams, the way a chat UI would apply it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    async def __call__(self, fragment: str, reset: bool) -> None:
        self.calls.append((fragment, reset))

    @property
    def fragments(self) -> list[str]:
        return [f for f, reset in self.calls if not reset]

    @property
    def resets(self) -> int:
        return sum(reset for _, reset in self.calls)

    @property
    def shown(self) -> str:
        text = ""
        for fragment, reset in self.calls:
            text = "" if reset else text + fragment
        return text


@pytest.fixture
async def provider(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(base_url=fake_openai.base_url, api_key="sk-test", default_model="gpt-default",
                       timeout_s=5.0, max_retries=MAX_RETRIES, backoff_base_s=0.001)
    yield p
    await p.aclose()


def request(**overrides: Any) -> ModelRequest:
    fields: dict[str, Any] = {"agent": "writer", "model": {}, "messages": [ModelMessage(role="user", content="Hi")]}
    return ModelRequest(**(fields | overrides))


async def complete(provider: OpenAIProvider, req: ModelRequest, deltas: Deltas | None = None) -> ModelReply:
    # Guard: a provider bug must fail the test, not hang it.
    return await asyncio.wait_for(provider.complete(req, deltas), timeout=10)


async def test_text_streams_as_deltas(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse(text="Hello there, world!", chunks=4, usage=FakeUsage(12, 7)))
    deltas = Deltas()

    reply = await complete(provider, request(), deltas)

    assert len(deltas.fragments) == 4 and deltas.resets == 0
    assert reply.text == "".join(deltas.fragments) == "Hello there, world!"
    assert reply.usage.model_dump() == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
                                        "cached": False}
    assert reply.model == "gpt-default"
    assert reply.tool_calls == [] and reply.structured is None
    body = fake_openai.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "tools" not in body and "response_format" not in body


async def test_cached_usage_and_server_model(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse(text="ok", usage=FakeUsage(100, 2, cached_tokens=64), model="gpt-served-2"))

    reply = await complete(provider, request())

    assert reply.usage.cached is True
    assert reply.model == "gpt-served-2"


async def test_missing_usage_is_estimated(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse(text="x" * 40, usage=None))

    reply = await complete(provider, request())

    assert reply.usage.completion_tokens >= 10
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


async def test_two_tool_calls_with_streamed_arguments(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse(tool_calls=[
        FakeToolCall("get_weather", {"city": "Paris", "unit": "celsius"}, id="call_a", pieces=4),
        FakeToolCall("search", {"query": "ray serve", "limit": 3}, id="call_b", pieces=5),
    ]))
    tools = [
        ToolDefinition(name="get_weather", description="Weather for a city",
                       parameters={"type": "object", "properties": {"city": {"type": "string"}}}),
        ToolDefinition(name="search"),
    ]

    reply = await complete(provider, request(tools=tools))

    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("call_a", "get_weather", {"city": "Paris", "unit": "celsius"}),
        ("call_b", "search", {"query": "ray serve", "limit": 3}),
    ]
    assert reply.text is None
    assert fake_openai.requests[0].body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                          "parameters": {"type": "object",
                                                         "properties": {"city": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "search", "description": "",
                                          "parameters": {"type": "object", "properties": {}}}},
    ]


async def test_invalid_tool_arguments_are_flagged_not_fatal(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse(tool_calls=[FakeToolCall("search", '{"query": "unterminated')]))

    reply = await complete(provider, request(tools=[ToolDefinition(name="search")]))

    assert reply.tool_calls[0].arguments == {INVALID_JSON_KEY: '{"query": "unterminated'}


async def test_structured_output(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "score": {"type": "number"}}}
    fake_openai.enqueue(FakeResponse.json_text({"title": "Plan", "score": 0.9}, chunks=5))

    reply = await complete(provider, request(response_schema=schema, response_schema_name="Review"))

    assert reply.structured == {"title": "Plan", "score": 0.9}
    assert fake_openai.requests[0].body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "Review", "schema": schema, "strict": False},
    }


async def test_a_reply_that_is_not_a_json_object_comes_back_unparsed(provider: OpenAIProvider,
                                                                   fake_openai: FakeOpenAI) -> None:
    # One billed call, one reply: the engine meters it and tells the agent (no retry in here).
    fake_openai.enqueue(FakeResponse(text="Sure! Here it is", usage=FakeUsage(prompt_tokens=9, completion_tokens=4)),
                        FakeResponse.json_text({"ok": True}))

    reply = await complete(provider, request(response_schema={"type": "object"}))

    assert reply.structured is None and reply.text == "Sure! Here it is"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (9, 4)
    assert len(fake_openai.requests) == 1
    assert fake_openai.requests[0].body["response_format"]["json_schema"]["name"] == "output"


async def test_429_honours_retry_after(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse.http_error(429, retry_after_s=0.2), FakeResponse(text="done"))

    reply = await complete(provider, request())

    assert reply.text == "done"
    first, second = fake_openai.requests
    assert second.received_at - first.received_at >= 0.2  # backoff_base_s is 1 ms: the header set the wait


async def test_500_twice_then_success(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse.http_error(500), FakeResponse.http_error(503), FakeResponse(text="finally"))

    reply = await complete(provider, request())

    assert reply.text == "finally"
    assert len(fake_openai.requests) == 3


async def test_mid_stream_disconnect_resets_and_retries(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse(text="The first try breaks", chunks=4, disconnect_after=2),
                        FakeResponse(text="The second try works", chunks=4))
    deltas = Deltas()

    reply = await complete(provider, request(), deltas)

    assert deltas.calls[:3] == [("The f", False), ("irst ", False), ("", True)]
    assert reply.text == deltas.shown == "The second try works"
    assert len(fake_openai.requests) == 2


async def test_stream_without_finish_reason_is_retried(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse(text="cut short", finish_reason=None), FakeResponse(text="complete"))
    deltas = Deltas()

    reply = await complete(provider, request(), deltas)

    assert reply.text == deltas.shown == "complete"
    assert deltas.resets == 1


async def test_disconnect_after_finish_keeps_the_answer(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    # Events: 2 content chunks, the finish chunk, then the usage chunk, which never arrives.
    fake_openai.enqueue(FakeResponse(text="all here", chunks=2, disconnect_after=3))

    reply = await complete(provider, request())

    assert reply.text == "all here"
    assert len(fake_openai.requests) == 1
    assert reply.usage.total_tokens > 0  # estimated


async def test_retries_exhausted(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(*[FakeResponse.http_error(500) for _ in range(MAX_RETRIES + 1)])

    with pytest.raises(ModelError) as err:
        await complete(provider, request())

    assert err.value.retryable is False and err.value.code == "server_error"  # no attempt is left
    assert len(fake_openai.requests) == MAX_RETRIES + 1


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_client_errors_are_not_retried(provider: OpenAIProvider, fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.enqueue(FakeResponse.http_error(status, message="Incorrect API key provided: sk-te**st"))

    with pytest.raises(ModelError) as err:
        await complete(provider, request())

    assert err.value.retryable is False and err.value.code == f"http_{status}"
    assert len(fake_openai.requests) == 1
    if status == 401:
        assert "sk-" not in str(err.value)


async def test_per_attempt_timeout_on_slow_server(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse(text="too slow to matter", chunks=6, chunk_delay_s=1.0),
                        FakeResponse(text="never", delay_s=2.0))
    slow = OpenAIProvider(base_url=fake_openai.base_url, api_key="sk-test", default_model="gpt-default",
                          timeout_s=0.3, max_retries=1, backoff_base_s=0.001)
    deltas = Deltas()
    try:
        with pytest.raises(ModelError) as err:
            await asyncio.wait_for(slow.complete(request(), deltas), timeout=5)
    finally:
        await slow.aclose()

    assert err.value.retryable is False and err.value.code == "timeout"
    assert len(fake_openai.requests) == 2
    assert deltas.resets == 1  # the first attempt had streamed a fragment before it timed out


async def test_per_agent_overrides_are_sent(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse(text="ok"))
    model = {"provider": "openai", "name": "gpt-agent", "temperature": 0.2,
             "params": {"max_tokens": 64, "top_p": 0.5, "stream": False}}

    reply = await complete(provider, request(model=model))

    body = fake_openai.requests[0].body
    assert (body["model"], body["temperature"], body["max_tokens"], body["top_p"]) == ("gpt-agent", 0.2, 64, 0.5)
    assert body["stream"] is True  # params cannot switch off what the provider relies on
    assert reply.model == "gpt-agent"


async def test_per_agent_endpoint_and_key(fake_openai: FakeOpenAI, fake_openai_factory: Callable[[], FakeOpenAI],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRITER_LLM_KEY", "sk-writer")
    other = fake_openai_factory()
    other.enqueue(FakeResponse(text="from the other endpoint"))
    registry = ProviderRegistry(Settings(openai_base_url=fake_openai.base_url, openai_api_key=SecretStr("sk-test")))
    model = ModelConfig(provider="openai", name="gpt-writer", base_url=other.base_url, api_key_env="WRITER_LLM_KEY")

    provider = registry.get(model)
    try:
        reply = await complete(provider, request(model=model.model_dump()))  # type: ignore[arg-type]
    finally:
        await provider.aclose()  # type: ignore[attr-defined]

    assert reply.text == "from the other endpoint"
    assert other.requests[0].headers["authorization"] == "Bearer sk-writer"
    assert fake_openai.requests == []


async def test_preload_warms_the_request_path_without_calling_the_model(
        fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    """What a pooled session does in prepare: the SDK's first-request code runs against a loopback
    stub, so nothing is billed and the API key goes nowhere; the first real call then works."""
    registry = ProviderRegistry(Settings(openai_base_url=fake_openai.base_url, openai_api_key=SecretStr("sk-test")))
    model = ModelConfig(provider="openai", name="gpt-warm")
    with caplog.at_level(logging.INFO, logger="mozaiks.providers.openai_provider"):
        await asyncio.wait_for(registry.preload([model, model]), timeout=30)
    assert fake_openai.requests == []
    assert not [r for r in caplog.records if "warm-up failed" in r.getMessage()]

    provider = registry.get(model)
    fake_openai.enqueue(FakeResponse(text="first real reply"))
    try:
        reply = await complete(provider, request(model=model.model_dump()))
    finally:
        await provider.aclose()  # type: ignore[attr-defined]
    assert reply.text == "first real reply"
    assert fake_openai.requests[0].headers["authorization"] == "Bearer sk-test"


def test_missing_key_env_is_a_config_error(fake_openai: FakeOpenAI) -> None:
    registry = ProviderRegistry(Settings(openai_base_url=fake_openai.base_url, openai_api_key=SecretStr("sk-test")))
    with pytest.raises(ModelError) as err:
        registry.get(ModelConfig(provider="openai", api_key_env="MOZAIKS_TEST_UNSET_KEY_VAR"))

    assert err.value.retryable is False and err.value.code == "missing_api_key"


async def test_messages_are_mapped(provider: OpenAIProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(FakeResponse(text="ok"))
    messages = [
        ModelMessage(role="system", content="Be brief."),
        ModelMessage(role="user", content="Weather?", name="Jane Doe"),  # invalid name: dropped
        ModelMessage(role="assistant", name="planner", tool_calls=[
            ToolCallRequest(id="call_1", name="get_weather", arguments={"city": "Oslo"}),
            ToolCallRequest(id="call_2", name="search", arguments={INVALID_JSON_KEY: "{oops"}),
        ]),
        ModelMessage(role="tool", tool_call_id="call_1", content='{"temp": 3}'),
        ModelMessage(role="assistant", content="3 degrees.", name="planner"),
    ]

    await complete(provider, request(messages=messages))

    assert fake_openai.requests[0].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "name": "planner", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "search", "arguments": "{oops"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 3}'},
        {"role": "assistant", "name": "planner", "content": "3 degrees."},
    ]


async def test_fake_serves_non_streaming_completions(fake_openai: FakeOpenAI) -> None:
    # Other suites may drive the fake with a plain SDK call; keep that path honest too.
    fake_openai.enqueue(FakeResponse(text="plain", tool_calls=[FakeToolCall("search", {"q": 1})]))
    async with openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="sk-test", max_retries=0) as client:
        completion = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])

    message = completion.choices[0].message
    assert message.content == "plain" and message.tool_calls is not None
    assert message.tool_calls[0].function.arguments == '{"q": 1}'
    assert completion.usage is not None and completion.usage.total_tokens == 15
