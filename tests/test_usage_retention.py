"""Usage records are pruned by a retention policy (issue 14): the billing rows older than
``usage_retention_days`` go, the rest still add up, and the setting cannot undercut a budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from actors.usage import prune_usage
from mozaiks.settings import Settings
from mozaiks.store import ChatRecord, UsageRecord
from mozaiks.store.sqlite import SQLiteStore

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _usage(days_ago: int, tokens: int) -> UsageRecord:
    return UsageRecord(app_id="a", user_id="u", chat_id="c", workflow_name="wf", agent="bot", model="m",
                       prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens,
                       timestamp=(NOW - timedelta(days=days_ago)).isoformat())


async def test_usage_older_than_the_retention_is_pruned_and_the_rest_adds_up(tmp_path):
    store = SQLiteStore(str(tmp_path / "usage.db"))
    await store.init()
    await store.create_chat(ChatRecord(chat_id="c", app_id="a", user_id="u", workflow_name="wf",
                                       created_at=NOW.isoformat(), updated_at=NOW.isoformat()))
    epoch = await store.claim("a", "u", "c")
    await store.append("a", "u", "c", epoch, [], usage=[_usage(500, 1), _usage(401, 10), _usage(30, 100)])
    assert await prune_usage(store, 400, now=NOW) == 2
    assert (await store.usage_totals("a"))["total_tokens"] == 100
    assert await prune_usage(store, 400, now=NOW) == 0
    await store.close()


def test_a_retention_shorter_than_a_budget_month_is_refused():
    with pytest.raises(ValidationError, match="usage_retention_days"):
        Settings(usage_retention_days=7)
    assert Settings(usage_retention_days=None).usage_retention_days is None
