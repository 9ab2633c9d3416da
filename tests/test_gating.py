"""Usage gating against a real SQLite store: the session rate limit and the token budgets."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from capabilities.usage import UsageLimits, counter_key, period_bounds
from mozaiks.protocol.errors import ApiError
from mozaiks.protocol.events import utc_now_iso
from mozaiks.protocol.identity import Identity
from mozaiks.settings import Settings
from mozaiks.store import ChatRecord, UsageRecord
from mozaiks.store.sqlite import SQLiteStore

ALICE = Identity(user_id="alice", app_id="app")
BOB = Identity(user_id="bob", app_id="app")


def limits(store: SQLiteStore, clock: Any = time.time, **settings: Any) -> UsageLimits:
    values: dict[str, Any] = {"session_rate_per_minute": None, **settings}
    return UsageLimits(Settings(_env_file=None, **values), store, clock)


async def refused(limit: UsageLimits, identity: Identity, reservation: int = 0, creating: bool = True) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await limit.admit(identity, reservation, creating)
    return caught.value


async def record_usage(store: SQLiteStore, identity: Identity, tokens: int, timestamp: str | None = None
                       ) -> None:
    now = utc_now_iso()
    chat_id = f"chat-{identity.user_id}-{tokens}-{timestamp}"
    await store.create_chat(ChatRecord(chat_id=chat_id, app_id=identity.app_id, user_id=identity.user_id,
                                       workflow_name="hello", created_at=now, updated_at=now))
    epoch = await store.claim(identity.app_id, identity.user_id, chat_id)
    await store.append(identity.app_id, identity.user_id, chat_id, epoch, [], usage=[UsageRecord(
        app_id=identity.app_id, user_id=identity.user_id, chat_id=chat_id, workflow_name="hello", agent="a",
        model="m", prompt_tokens=0, completion_tokens=tokens, total_tokens=tokens, timestamp=timestamp or now)])


async def test_rate_limit_per_user_and_minute_with_retry_after(sqlite_store: SQLiteStore) -> None:
    now = [1_000_000_000.5]  # 20 s before the end of its minute window
    limit = limits(sqlite_store, lambda: now[0], session_rate_per_minute=3)
    for _ in range(3):
        await limit.admit(ALICE, 0, creating=True)
    error = await refused(limit, ALICE)
    assert (error.status, error.code, error.headers) == (429, "rate_limited", {"Retry-After": "20"})
    assert error.details == {"retry_after_s": 20}
    await limit.admit(ALICE, 0, creating=False)  # resuming creates nothing
    await limit.admit(BOB, 0, creating=True)  # another user has their own window
    now[0] += 20
    await limit.admit(ALICE, 0, creating=True)


async def test_recorded_usage_spends_the_budget_of_the_period(sqlite_store: SQLiteStore) -> None:
    limit = limits(sqlite_store, token_budget_per_user=100)
    await record_usage(sqlite_store, ALICE, 500, timestamp="2000-01-31T23:59:59Z")  # an earlier period
    await record_usage(sqlite_store, ALICE, 60)
    await limit.admit(ALICE, 0, creating=True)
    await record_usage(sqlite_store, ALICE, 40)
    _, end, label = period_bounds("month", datetime.now(UTC))
    for creating in (True, False):
        error = await refused(limit, ALICE, creating=creating)
        assert (error.status, error.code) == (403, "usage_limit_exceeded")
        assert error.details == {"scope": "user", "period": label, "budget": 100,
                                 "resets_at": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    await limit.admit(BOB, 0, creating=True)


async def test_app_budget_counts_every_user(sqlite_store: SQLiteStore) -> None:
    limit = limits(sqlite_store, token_budget_per_app=100)
    await record_usage(sqlite_store, ALICE, 100)
    error = await refused(limit, BOB)
    assert error.details["scope"] == "app"
    await limit.admit(Identity(user_id="bob", app_id="other-app"), 0, creating=True)


async def test_reservations_bound_new_sessions_but_not_resumes(sqlite_store: SQLiteStore) -> None:
    limit = limits(sqlite_store, token_budget_per_user=1000)
    await limit.admit(ALICE, 400, creating=True)
    await limit.admit(ALICE, 400, creating=True)
    assert (await refused(limit, ALICE, 400)).code == "usage_limit_exceeded"
    await limit.admit(ALICE, 400, creating=False)  # a resume reserves nothing and needs no room
    await limit.admit(ALICE, 200, creating=True)  # a cheaper capability still fits


async def test_refused_by_the_app_budget_gives_the_users_reservation_back(sqlite_store: SQLiteStore) -> None:
    limit = limits(sqlite_store, token_budget_per_user=1000, token_budget_per_app=500)
    await limit.admit(ALICE, 300, creating=True)
    await refused(limit, BOB, 300)
    label = period_bounds("month", datetime.now(UTC))[2]
    assert await sqlite_store.counter_get(counter_key("budget", "user", "app", "bob", label)) == 0
    assert await sqlite_store.counter_get(counter_key("budget", "app", "app", "", label)) == 300


async def test_parallel_creations_on_two_connections_take_exactly_the_room(sqlite_store: SQLiteStore,
                                                                           tmp_path: Path) -> None:
    # A second connection to the fixture's file, as another ingress replica would have.
    second = SQLiteStore(str(tmp_path / "store.db"))
    await second.init()
    try:
        replicas = [limits(sqlite_store, token_budget_per_user=1000), limits(second, token_budget_per_user=1000)]
        results = await asyncio.gather(*(replicas[i % 2].admit(ALICE, 300, creating=True) for i in range(10)),
                                       return_exceptions=True)
    finally:
        await second.close()
    admitted = [r for r in results if not isinstance(r, BaseException)]
    assert len(admitted) == 3 and all(len(taken) == 1 for taken in admitted)  # a reservation each
    assert all(isinstance(r, ApiError) and r.code == "usage_limit_exceeded" for r in results if r not in admitted)


def test_counter_keys_cannot_collide_across_ids() -> None:
    assert counter_key("rate", "a:b", "c") != counter_key("rate", "a", "b:c")


@pytest.mark.parametrize("period,now,start,end,label", [
    ("month", "2026-12-31T23:59:59", "2026-12-01T00:00:00", "2027-01-01T00:00:00", "2026-12"),
    ("month", "2026-02-10T12:00:00", "2026-02-01T00:00:00", "2026-03-01T00:00:00", "2026-02"),
    ("day", "2026-02-28T23:00:00", "2026-02-28T00:00:00", "2026-03-01T00:00:00", "2026-02-28"),
])
def test_periods_are_utc_calendar_days_and_months(period: str, now: str, start: str, end: str, label: str) -> None:
    bounds = period_bounds(period, datetime.fromisoformat(now).replace(tzinfo=UTC))
    assert bounds == (datetime.fromisoformat(start).replace(tzinfo=UTC),
                      datetime.fromisoformat(end).replace(tzinfo=UTC), label)
