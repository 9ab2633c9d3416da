"""One provider instance per distinct endpoint, shared by the agents of a session."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from typing import Any

from mozaiks.providers.base import DeltaCallback, ModelError, ModelProvider, ModelReply, ModelRequest
from mozaiks.providers.scripted import ScriptedProvider
from mozaiks.settings import Settings


class ProviderRegistry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._scripted = ScriptedProvider()
        self._openai: dict[tuple[str | None, str | None], ModelProvider] = {}

    def get(self, model: Any) -> ModelProvider:
        """The provider for an agent's model: the one place its endpoint and API key are resolved."""
        if model.provider == "scripted":
            return self._scripted
        s = self._settings
        base_url = model.base_url or s.openai_base_url
        env_key = os.environ.get(model.api_key_env) if model.api_key_env else None
        key = env_key or (s.openai_api_key.get_secret_value() if s.openai_api_key else None)
        if not key and not base_url:
            if model.fallback is not None:
                return _Fallback(self.get(model.fallback), model.fallback)
            raise ModelError("No model endpoint configured: set MOZAIKS_OPENAI_API_KEY or MOZAIKS_OPENAI_BASE_URL",
                             retryable=False, code="model_not_configured")
        if model.api_key_env and not env_key:  # named explicitly: the runtime's own key is not a stand-in
            raise ModelError(f"environment variable {model.api_key_env} (api_key_env) is not set",
                             retryable=False, code="missing_api_key")
        cache_key = (base_url, model.api_key_env)
        if cache_key not in self._openai:
            from mozaiks.providers.openai_provider import OpenAIProvider  # the SDK is heavy; scripted chats never load it
            self._openai[cache_key] = OpenAIProvider(base_url=base_url, api_key=key or "not-needed",
                                                     default_model=s.default_model, timeout_s=s.model_timeout_s,
                                                     max_retries=s.model_max_retries)
        return self._openai[cache_key]


    async def preload(self, models: Iterable[Any]) -> None:
        """Build and warm the providers of these models before any chat needs them: in a fresh
        process the SDK's import, its client and its first request's code cost a chat's first reply
        about a second on a loaded machine."""
        providers = await asyncio.to_thread(self._providers, list(models))  # the SDK's import blocks
        for provider in providers:
            await provider.warm()  # on the loop its calls will run on: its connection pool binds to it

    def _providers(self, models: list[Any]) -> list[ModelProvider]:
        found: dict[int, ModelProvider] = {}
        for model in models:
            with contextlib.suppress(ModelError):  # an unconfigured model is reported when a chat uses it
                provider = self.get(model)
                found[id(provider)] = provider
        return list(found.values())


class _Fallback(ModelProvider):
    """Answers every call of an unconfigured model as its ``fallback`` model would."""

    def __init__(self, provider: ModelProvider, model: Any) -> None:
        self._provider = provider
        self._model = model.model_dump()

    async def complete(self, request: ModelRequest, on_delta: DeltaCallback | None = None) -> ModelReply:
        return await self._provider.complete(request.model_copy(update={"model": self._model}), on_delta)
