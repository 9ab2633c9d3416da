"""Every model call that returned usage is metered once, whatever happens to its reply (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capabilities.usage import UsageLimits
from mozaiks.protocol.errors import ApiError
from mozaiks.protocol.identity import Identity
from mozaiks.settings import Settings
from mozaiks.store import open_store
from tests.fake_openai import FakeOpenAI, FakeResponse, FakeUsage
from tests.helpers import collect_until, of_type


async def test_structured_replies_that_are_not_json_are_each_metered(broker_for, settings, workflows_dir: Path,
                                                                     fake_model: FakeOpenAI) -> None:
    folder = workflows_dir / "verdict_json"
    folder.mkdir()
    (folder / "orchestrator.json").write_text(json.dumps({"name": "verdict_json", "startup_mode": "UserDriven"}))
    (folder / "agents.json").write_text(json.dumps({"agents": [
        {"name": "Judge", "system_message": "Answer as JSON.", "structured_output": "Verdict",
         "model": {"provider": "openai", "name": "fake-model", "base_url": fake_model.base_url}}]}))
    (folder / "structured_outputs.json").write_text(json.dumps({"models": {"Verdict": {
        "type": "model", "fields": {"ok": {"type": "bool"}}}}}))
    fake_model.enqueue(*[FakeResponse(text=f"Sure, attempt {i}", usage=FakeUsage(prompt_tokens=20 + i,
                                                                              completion_tokens=5))
                         for i in range(4)])
    broker = broker_for("meter-user")
    session = await broker.create_session("verdict_json")
    conn = await broker.connect(session, last_seq=0)
    await conn.say("is it ok?")
    events = await collect_until(conn, "chat.run_complete", timeout=60)
    await conn.close()

    assert len(fake_model.requests) == 4  # each retry went back through the engine, one call each
    deltas = [(d["data"]["prompt_tokens"], d["data"]["completion_tokens"]) for d in of_type(events, "chat.usage_delta")]
    assert deltas == [(20, 5), (21, 5), (22, 5), (23, 5)]
    summary = of_type(events, "chat.usage_summary")[-1]["data"]
    assert summary["totals"]["total_tokens"] == 86 + 20
    error = of_type(events, "chat.error")[-1]["data"]
    assert error["code"] == "invalid_structured_output" and error["retryable"] is False
    assert "not a JSON object" in error["message"]
    assert events[-1]["data"]["status"] == "failed"
    store = open_store(settings.resolved_store_url)
    await store.init()
    try:
        spent = await store.usage_totals("test-app", "meter-user", chat_id=session.chat_id)
        # the budget gate itself: a budget of exactly those 106 tokens is spent, one more is not
        user = Identity(user_id="meter-user", app_id="test-app")
        budget = {"session_rate_per_minute": None, "token_budget_per_app": None}
        with pytest.raises(ApiError) as refused:
            await UsageLimits(Settings(_env_file=None, token_budget_per_user=106, **budget), store).admit(
                user, 0, creating=False)
        await UsageLimits(Settings(_env_file=None, token_budget_per_user=107, **budget), store).admit(
            user, 0, creating=False)
    finally:
        await store.close()
    assert spent["total_tokens"] == 106
    assert refused.value.code == "usage_limit_exceeded"
