"""The store contract, run against every backend: SQLite always, PostgreSQL when its server binaries
are installed (a throw-away local cluster), MongoDB when a server is given."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from pymongo import AsyncMongoClient

from mozaiks.errors import ChatExists, ChatNotFound, FanOutNotFound, InvalidCursor, InvalidWrite
from mozaiks.store import (
    ChatRecord, DuplicateMessageError, FencedError, InstalledWorkflow, Store, StoredEvent, UsageRecord,
)
from mozaiks.store.base import ChildLink, FanOutRecord
from mozaiks.store.mongo import MongoStore
from mozaiks.store.postgres import PostgresStore
from mozaiks.store.sqlite import SQLiteStore
from tests import pg_server

MONGO_URL = os.environ.get("MOZAIKS_TEST_MONGO_URL")
POSTGRES_UNAVAILABLE = pg_server.unavailable_reason()
APP, USER = "app-1", "user-1"


class Backend:
    """Opens stores on one database, as separate processes would, and cleans up after the test."""

    def __init__(self, kind: str, tmp_path: Path, postgres_server: str | None = None) -> None:
        self.kind = kind
        self.postgres_server = postgres_server
        self.path = tmp_path / "store.db"
        self.database = f"mozaiks_test_{uuid4().hex[:12]}"
        self.opened: list[Store] = []

    async def open(self) -> Store:
        store: Store
        if self.kind == "mongo":
            store = MongoStore(MONGO_URL or "", self.database)
        elif self.kind == "postgres":
            assert self.postgres_server
            if not self.opened:
                admin = await asyncpg.connect(self.postgres_server)
                await admin.execute(f"CREATE DATABASE {self.database}")
                await admin.close()
            store = PostgresStore(self.postgres_database)
        else:
            store = SQLiteStore(str(self.path), inline=self.kind == "sqlite-inline")
        await store.init()
        self.opened.append(store)
        return store

    @property
    def postgres_database(self) -> str:
        assert self.postgres_server
        return f"{self.postgres_server.rsplit('/', 1)[0]}/{self.database}"

    async def rewind_to_version_4(self) -> None:
        """Make the database one that the code before migration 5 (completions) left behind."""
        if self.kind == "mongo":
            admin: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGO_URL)
            await admin[self.database].drop_collection("completions")
            await admin.close()
        elif self.kind == "postgres":
            conn = await asyncpg.connect(self.postgres_database)
            await conn.execute("DROP TABLE completions; DELETE FROM schema_version WHERE version = 5")
            await conn.close()
        else:
            with sqlite3.connect(self.path) as conn:
                conn.executescript("DROP TABLE completions; PRAGMA user_version = 4")

    async def cleanup(self) -> None:
        for store in self.opened:
            await store.close()
        if self.kind == "mongo":
            admin: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGO_URL)
            await admin.drop_database(self.database)
            await admin.close()
        if self.kind == "postgres" and self.opened:
            assert self.postgres_server
            conn = await asyncpg.connect(self.postgres_server)
            await conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            await conn.close()


@pytest.fixture(params=[
    pytest.param("sqlite"),
    pytest.param("sqlite-inline"),  # as session actors open it: on the caller's event loop
    pytest.param("postgres", marks=pytest.mark.skipif(
        POSTGRES_UNAVAILABLE is not None, reason=f"PostgreSQL: {POSTGRES_UNAVAILABLE}")),
    pytest.param("mongo", marks=[pytest.mark.mongo, pytest.mark.skipif(
        not MONGO_URL, reason="MOZAIKS_TEST_MONGO_URL not set: no MongoDB server on this machine")]),
])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    backend = Backend(request.param, tmp_path, server)
    try:
        yield backend
    finally:
        await backend.cleanup()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()


def make_chat(chat_id: str = "chat-1", app_id: str = APP, user_id: str = USER, workflow: str = "wf",
              created_at: str = "2025-01-01T00:00:00Z") -> ChatRecord:
    return ChatRecord(chat_id=chat_id, app_id=app_id, user_id=user_id, workflow_name=workflow,
                      created_at=created_at, updated_at=created_at,
                      snapshot={"messages": []}, context={"plan": "pro", "schema": {"$ref": "#/$defs/x"}})


def make_events(first: int, count: int, **data: object) -> list[StoredEvent]:
    return [StoredEvent(seq=seq, type="message", timestamp="2026-01-01T00:00:01Z", agent="bot", data=dict(data))
            for seq in range(first, first + count)]


def make_usage(chat_id: str = "chat-1", user_id: str = USER, tokens: int = 10,
               timestamp: str = "2026-01-01T00:00:00Z") -> UsageRecord:
    return UsageRecord(app_id=APP, user_id=user_id, chat_id=chat_id, workflow_name="wf", agent="bot", model="m",
                       prompt_tokens=tokens, completion_tokens=2 * tokens, total_tokens=3 * tokens,
                       timestamp=timestamp)


async def assert_nothing_written(store: Store, before: ChatRecord) -> None:
    assert await store.get_chat(APP, USER, before.chat_id) == before
    assert len(await store.read_events(APP, USER, before.chat_id)) == before.last_seq


# -- chats ---------------------------------------------------------------------------------------

async def test_create_and_get(store: Store) -> None:
    chat, created = await store.create_chat(make_chat())
    assert created
    assert chat.created_at == "2025-01-01T00:00:00.000000Z"  # stored in one fixed-width UTC form
    assert await store.get_chat(APP, USER, "chat-1") == chat
    assert chat.context["schema"] == {"$ref": "#/$defs/x"}
    assert (chat.epoch, chat.last_seq, chat.status, chat.phase) == (0, 0, "active", "idle")
    assert await store.get_chat(APP, USER, "chat-2") is None


async def test_duplicate_chat_id_is_refused(store: Store) -> None:
    await store.create_chat(make_chat())
    with pytest.raises(ChatExists):
        await store.create_chat(make_chat())


async def test_tenant_isolation(store: Store) -> None:
    await store.create_chat(make_chat())
    epoch = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", epoch, make_events(1, 2), usage=[make_usage()])
    before = await store.get_chat(APP, USER, "chat-1")
    assert before is not None
    for app_id, user_id in (("app-2", USER), (APP, "user-2")):
        assert await store.get_chat(app_id, user_id, "chat-1") is None
        with pytest.raises(ChatNotFound):
            await store.claim(app_id, user_id, "chat-1")
        with pytest.raises(ChatNotFound):
            await store.append(app_id, user_id, "chat-1", epoch, make_events(3, 1))
        assert await store.read_events(app_id, user_id, "chat-1") == []
        assert await store.list_chats(app_id, user_id) == ([], None)
        assert not await store.has_completed(app_id, user_id, "wf")
        assert (await store.usage_totals(app_id, user_id))["total_tokens"] == 0
    await assert_nothing_written(store, before)


async def test_idempotency_key_returns_the_same_chat(store: Store) -> None:
    first, created = await store.create_chat(make_chat("chat-1"), idempotency_key="k")
    assert created
    again, created = await store.create_chat(make_chat("chat-2"), idempotency_key="k")
    assert (again, created) == (first, False)
    assert await store.get_chat(APP, USER, "chat-2") is None
    # Keys are scoped by app and user.
    other, created = await store.create_chat(make_chat("chat-3", user_id="user-2"), idempotency_key="k")
    assert created and other.chat_id == "chat-3"


async def test_claim_increments_the_epoch(store: Store) -> None:
    await store.create_chat(make_chat())
    assert [await store.claim(APP, USER, "chat-1") for _ in range(3)] == [1, 2, 3]
    with pytest.raises(ChatNotFound):
        await store.claim(APP, USER, "missing")


# -- the event log -------------------------------------------------------------------------------

async def test_append_updates_the_chat(store: Store) -> None:
    await store.create_chat(make_chat())
    epoch = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", epoch, make_events(1, 3, text="hi"),
                       snapshot={"messages": ["hi"]}, status="active", phase="running")
    chat = await store.get_chat(APP, USER, "chat-1")
    assert chat is not None
    assert (chat.last_seq, chat.snapshot, chat.phase) == (3, {"messages": ["hi"]}, "running")
    assert chat.updated_at > chat.created_at and chat.updated_at.endswith("Z")
    # Fields not given keep their values; an append may carry no events.
    await store.append(APP, USER, "chat-1", epoch, [], status="completed")
    chat = await store.get_chat(APP, USER, "chat-1")
    assert chat is not None
    assert (chat.last_seq, chat.snapshot, chat.status, chat.phase) == (3, {"messages": ["hi"]}, "completed", "running")
    assert [e.data for e in await store.read_events(APP, USER, "chat-1")] == [{"text": "hi"}] * 3


async def test_append_refuses_gaps_and_writes_nothing(store: Store) -> None:
    await store.create_chat(make_chat())
    epoch = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", epoch, make_events(1, 2))
    before = await store.get_chat(APP, USER, "chat-1")
    assert before is not None
    bad_batches = [make_events(4, 1), make_events(2, 1), make_events(3, 1) + make_events(5, 1)]
    for batch in bad_batches:
        with pytest.raises(InvalidWrite):
            await store.append(APP, USER, "chat-1", epoch, batch, snapshot={"x": 1}, client_message_id="m1",
                               usage=[make_usage()])
    await assert_nothing_written(store, before)
    assert (await store.usage_totals(APP))["total_tokens"] == 0
    # The refused appends did not use up the client message id.
    await store.append(APP, USER, "chat-1", epoch, make_events(3, 1), client_message_id="m1")


async def test_stale_epoch_is_fenced_and_writes_nothing(store: Store) -> None:
    await store.create_chat(make_chat())
    old = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", old, make_events(1, 1))
    new = await store.claim(APP, USER, "chat-1")
    before = await store.get_chat(APP, USER, "chat-1")
    assert before is not None
    with pytest.raises(FencedError):
        await store.append(APP, USER, "chat-1", old, make_events(2, 1), snapshot={"stale": True},
                           client_message_id="m1", usage=[make_usage()])
    await assert_nothing_written(store, before)
    assert (await store.usage_totals(APP))["total_tokens"] == 0
    await store.append(APP, USER, "chat-1", new, make_events(2, 1), client_message_id="m1")


async def test_duplicate_client_message_writes_nothing(store: Store) -> None:
    await store.create_chat(make_chat())
    await store.create_chat(make_chat("chat-2"))
    epoch = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", epoch, make_events(1, 1), client_message_id="m1", usage=[make_usage()])
    before = await store.get_chat(APP, USER, "chat-1")
    assert before is not None
    with pytest.raises(DuplicateMessageError):
        await store.append(APP, USER, "chat-1", epoch, make_events(2, 1), snapshot={"x": 1},
                           client_message_id="m1", usage=[make_usage()])
    await assert_nothing_written(store, before)
    assert (await store.usage_totals(APP))["total_tokens"] == 30
    # Ids are per chat.
    other = await store.claim(APP, USER, "chat-2")
    await store.append(APP, USER, "chat-2", other, make_events(1, 1), client_message_id="m1")


async def test_read_events_after_seq_and_limit(store: Store) -> None:
    await store.create_chat(make_chat())
    epoch = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", epoch, make_events(1, 10))
    assert [e.seq for e in await store.read_events(APP, USER, "chat-1")] == list(range(1, 11))
    assert [e.seq for e in await store.read_events(APP, USER, "chat-1", after_seq=7)] == [8, 9, 10]
    assert [e.seq for e in await store.read_events(APP, USER, "chat-1", after_seq=2, limit=3)] == [3, 4, 5]
    assert await store.read_events(APP, USER, "chat-1", after_seq=10) == []
    assert await store.read_events(APP, USER, "chat-1", limit=0) == []
    first = (await store.read_events(APP, USER, "chat-1", limit=1))[0]
    assert (first.type, first.agent, first.timestamp) == ("message", "bot", "2026-01-01T00:00:01Z")


async def test_append_refuses_usage_of_another_chat(store: Store) -> None:
    await store.create_chat(make_chat())
    epoch = await store.claim(APP, USER, "chat-1")
    with pytest.raises(InvalidWrite):
        await store.append(APP, USER, "chat-1", epoch, make_events(1, 1), usage=[make_usage(chat_id="chat-9")])


# -- listing -------------------------------------------------------------------------------------

async def test_list_chats_pages_newest_first(store: Store) -> None:
    # Groups of three share a created_at, so the chat_id tie-break is exercised too.
    ids = [f"chat-{i:02d}" for i in range(25)]
    for i, chat_id in enumerate(ids):
        await store.create_chat(make_chat(chat_id, created_at=f"2026-01-01T00:{i // 3:02d}:00Z"))
    await store.create_chat(make_chat("someone-else", user_id="user-2"))
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.list_chats(APP, USER, limit=7, cursor=cursor)
        pages += 1
        seen.extend(chat.chat_id for chat in page)
        if cursor is None:
            break
    expected = sorted(ids, key=lambda c: (int(c[5:]) // 3, c), reverse=True)
    assert seen == expected and pages == 4
    everything, cursor = await store.list_chats(APP, USER, limit=1000)
    assert len(everything) == 25 and cursor is None
    with pytest.raises(InvalidCursor):
        await store.list_chats(APP, USER, cursor="not a cursor")


async def test_list_chats_caps_the_page(store: Store) -> None:
    for i in range(101):
        await store.create_chat(make_chat(f"chat-{i:03d}"))
    page, cursor = await store.list_chats(APP, USER, limit=1000)
    assert len(page) == 100 and cursor is not None
    rest, cursor = await store.list_chats(APP, USER, limit=1000, cursor=cursor)
    assert [c.chat_id for c in rest] == ["chat-000"] and cursor is None


async def test_has_completed(store: Store) -> None:
    await store.create_chat(make_chat(workflow="onboarding"))
    assert not await store.has_completed(APP, USER, "onboarding")
    epoch = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", epoch, [], status="completed")
    assert await store.has_completed(APP, USER, "onboarding")
    assert not await store.has_completed(APP, USER, "other")
    assert not await store.has_completed(APP, "user-2", "onboarding")


async def test_has_completed_holds_while_the_chat_runs_again_and_after_it_fails(store: Store) -> None:
    await store.create_chat(make_chat(workflow="onboarding"))
    epoch = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", epoch, make_events(1, 1), status="completed")
    await store.append(APP, USER, "chat-1", epoch, make_events(2, 1), status="active")
    assert await store.has_completed(APP, USER, "onboarding")
    await store.append(APP, USER, "chat-1", epoch, make_events(3, 1), status="failed")
    assert await store.has_completed(APP, USER, "onboarding")


async def test_completions_of_a_database_from_before_migration_5_are_kept(backend: Backend) -> None:
    store = await backend.open()
    await store.create_chat(make_chat(workflow="onboarding"))
    await store.create_chat(make_chat("chat-2", workflow="never-done"))
    epoch = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", epoch, [], status="completed")
    await backend.rewind_to_version_4()
    migrated = await backend.open()
    assert await migrated.has_completed(APP, USER, "onboarding")
    assert not await migrated.has_completed(APP, USER, "never-done")
    await migrated.append(APP, USER, "chat-1", epoch, [], status="active")  # a new run after the upgrade
    assert await migrated.has_completed(APP, USER, "onboarding")


# -- usage and counters ----------------------------------------------------------------------------

async def test_usage_totals_filters(store: Store) -> None:
    for chat_id, user_id in (("chat-1", USER), ("chat-2", USER), ("chat-3", "user-2")):
        await store.create_chat(make_chat(chat_id, user_id=user_id))
        epoch = await store.claim(APP, user_id, chat_id)
        await store.append(APP, user_id, chat_id, epoch, [], usage=[
            make_usage(chat_id, user_id, 1, "2026-01-01T00:00:00Z"),
            make_usage(chat_id, user_id, 100, "2026-01-02T00:00:00.5+00:00"),
        ])
    assert await store.usage_totals(APP) == {"prompt_tokens": 303, "completion_tokens": 606, "total_tokens": 909}
    assert (await store.usage_totals(APP, user_id=USER))["prompt_tokens"] == 202
    assert (await store.usage_totals(APP, chat_id="chat-2"))["prompt_tokens"] == 101
    assert (await store.usage_totals(APP, user_id="user-2", chat_id="chat-1"))["prompt_tokens"] == 0
    # Timestamps compare as times, whatever ISO form they were given in.
    assert (await store.usage_totals(APP, since="2026-01-02T00:00:00Z"))["prompt_tokens"] == 300
    assert (await store.usage_totals(APP, USER, "chat-1", since="2026-01-02T00:00:00.6Z"))["prompt_tokens"] == 0
    assert (await store.usage_totals("app-2"))["total_tokens"] == 0


async def test_counters(store: Store) -> None:
    assert await store.counter_get("k") == 0
    assert await store.counter_add("k", 5) == 5
    assert await store.counter_add("k", -2) == 3
    assert await store.counter_try_consume("k", 7, 10) == (True, 10)
    assert await store.counter_try_consume("k", 1, 10) == (False, 10)
    assert await store.counter_get("k") == 10
    assert await store.counter_try_consume("new", 11, 10) == (False, 0)
    assert await store.counter_try_consume("new", 10, 10) == (True, 10)


async def test_concurrent_consumers_never_overshoot(store: Store) -> None:
    results = await asyncio.gather(*(store.counter_try_consume("quota", 1, 10) for _ in range(50)))
    assert sum(ok for ok, _ in results) == 10
    assert await store.counter_get("quota") == 10


# -- several processes on one database -------------------------------------------------------------

async def test_two_stores_racing_consumers_never_overshoot(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    results = await asyncio.gather(*(s.counter_try_consume("quota", 1, 10) for _ in range(25) for s in (first, second)))
    assert sum(ok for ok, _ in results) == 10
    assert await first.counter_get("quota") == await second.counter_get("quota") == 10


async def test_two_owners_racing_never_interleave(backend: Backend) -> None:
    stores = [await backend.open(), await backend.open()]
    await stores[0].create_chat(make_chat())

    async def owner(name: str, store: Store) -> int:
        wins = 0
        for _ in range(10):
            epoch = await store.claim(APP, USER, "chat-1")
            chat = await store.get_chat(APP, USER, "chat-1")
            assert chat is not None
            try:
                batch = make_events(chat.last_seq + 1, 3, owner=name, epoch=epoch)
                await store.append(APP, USER, "chat-1", epoch, batch)
                wins += 1
            except FencedError:
                pass  # the other owner claimed in between: exactly what fencing is for
        return wins

    wins = await asyncio.gather(owner("a", stores[0]), owner("b", stores[1]))
    events = await stores[1].read_events(APP, USER, "chat-1")
    assert sum(wins) > 0 and len(events) == 3 * sum(wins)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    batches = [events[i:i + 3] for i in range(0, len(events), 3)]
    assert all(len({(e.data["owner"], e.data["epoch"]) for e in batch}) == 1 for batch in batches)
    epochs = [batch[0].data["epoch"] for batch in batches]
    assert epochs == sorted(epochs)



# -- subscriptions ---------------------------------------------------------------------------------

async def test_subscriptions_set_change_end_and_stay_scoped(store: Store) -> None:
    assert await store.get_subscription(APP, USER) is None
    await store.set_subscription(APP, USER, "free")
    await store.set_subscription(APP, USER, "pro")
    await store.set_subscription("app-2", USER, "team")
    assert await store.get_subscription(APP, USER) == "pro"
    assert await store.get_subscription(APP, "user-2") is None
    assert await store.get_subscription("app-2", USER) == "team"
    await store.set_subscription(APP, USER, None)
    await store.set_subscription(APP, USER, None)  # ending what is not there is fine
    assert await store.get_subscription(APP, USER) is None
    assert await store.get_subscription("app-2", USER) == "team"


# -- wake-ups and usage retention -----------------------------------------------------------------

async def test_wakeups_are_set_moved_cleared_and_listed_earliest_first(store: Store) -> None:
    await store.set_wakeup(APP, USER, "chat-1", 200.0)
    await store.set_wakeup(APP, "user-2", "chat-2", 100.0)
    await store.set_wakeup(APP, USER, "chat-1", 300.5)  # the chat's next wait moves it
    await store.set_wakeup("app-2", USER, "chat-1", 1.0)  # another tenant's chat with the same id: ignored
    listed = [(w.app_id, w.user_id, w.chat_id, w.wake_at) for w in await store.list_wakeups()]
    assert listed == [(APP, "user-2", "chat-2", 100.0), (APP, USER, "chat-1", 300.5)]
    await store.set_wakeup("app-2", USER, "chat-1", None)  # nor can it clear it
    await store.set_wakeup(APP, "user-2", "chat-2", None)
    await store.set_wakeup(APP, "user-2", "chat-2", None)
    assert [w.chat_id for w in await store.list_wakeups()] == ["chat-1"]


async def test_prune_usage_deletes_only_what_is_older_than_the_cutoff(store: Store) -> None:
    await store.create_chat(make_chat())
    epoch = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", epoch, [], usage=[
        make_usage("chat-1", USER, 1, "2025-01-01T00:00:00Z"), make_usage("chat-1", USER, 10, "2026-01-01T00:00:00Z"),
        make_usage("chat-1", USER, 100, "2026-02-01T00:00:00+00:00")])
    assert await store.prune_usage("2026-01-01T00:00:00+00:00") == 1
    assert (await store.usage_totals(APP))["prompt_tokens"] == 110
    assert await store.prune_usage("2026-01-01T00:00:00Z") == 0


async def test_sqlite_prunes_usage_through_its_time_index(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "plan.db"))
    await store.init()
    conn = sqlite3.connect(tmp_path / "plan.db")
    plan = conn.execute("EXPLAIN QUERY PLAN DELETE FROM usage WHERE timestamp < ?", ("2026",)).fetchall()
    conn.close()
    await store.close()
    assert any("usage_by_time" in row[-1] for row in plan), plan


# -- fan-outs ----------------------------------------------------------------------------------------

def make_fanout(fanout_id: str = "fo-1", user_id: str = USER) -> FanOutRecord:
    return FanOutRecord(fanout_id=fanout_id, app_id=APP, user_id=user_id, parent_chat_id="chat-1", journey_id="j",
                        created_at="2026-01-01T00:00:00Z",
                        children=[ChildLink(index=i, chat_id=f"child-{i}", workflow_name="wf", key=str(i))
                                  for i in range(2)])


async def test_a_fanout_is_created_once_and_stays_scoped(store: Store) -> None:
    created = await store.create_fanout(make_fanout())
    again = await store.create_fanout(make_fanout().model_copy(update={"journey_id": "other"}))
    assert again == created == await store.get_fanout(APP, USER, "fo-1")
    assert await store.get_fanout(APP, "user-2", "fo-1") is None
    with pytest.raises(FanOutNotFound):
        await store.set_child_status(APP, "user-2", "fo-1", 0, "completed")


async def test_a_child_ends_exactly_once(store: Store) -> None:
    await store.create_fanout(make_fanout())
    assert (await store.set_child_status(APP, USER, "fo-1", 0, "running", only_from=("pending",)))[0]
    assert not (await store.set_child_status(APP, USER, "fo-1", 0, "running", only_from=("pending",)))[0]
    results = await asyncio.gather(*(store.set_child_status(APP, USER, "fo-1", 0, status, result={"by": status})
                                     for status in ("completed", "failed", "timed_out", "cancelled")))
    [(_, winner)] = [r for r in results if r[0]]
    ended = winner.children[0]
    assert ended.status in ("completed", "failed", "timed_out", "cancelled") and ended.result == {"by": ended.status}
    stored = await store.get_fanout(APP, USER, "fo-1")
    assert stored is not None and stored.children[0] == ended and stored.children[1].status == "pending"
    with_error = await store.set_child_status(APP, USER, "fo-1", 1, "failed", error="boom")
    assert with_error[1].children[1].error == "boom"


# -- installed workflows ---------------------------------------------------------------------------

def make_installed(name: str = "generated", app_id: str = APP, version: str = "v1") -> InstalledWorkflow:
    # Keys and values a document store might choke on: dots, "$", nesting as text.
    files = {"orchestrator.json": '{"name": "%s"}' % name, "tools/$odd.name.py": "X = {'$ref': 1}\n"}
    return InstalledWorkflow(app_id=app_id, name=name, version=version, files=files,
                             capability={"gated": True, "allowed_plans": ["pro"]}, installed_by="service",
                             installed_at="2026-01-01T00:00:00.000000Z")


async def test_installed_workflows_replace_list_delete_and_stay_scoped(store: Store) -> None:
    assert await store.get_installed_workflow(APP, "generated") is None
    await store.put_installed_workflow(make_installed())
    await store.put_installed_workflow(make_installed(version="v2"))  # a re-install replaces
    await store.put_installed_workflow(make_installed("another"))
    await store.put_installed_workflow(make_installed(app_id="app-2", version="theirs"))
    assert await store.get_installed_workflow(APP, "generated") == make_installed(version="v2")
    assert [w.name for w in await store.list_installed_workflows(APP)] == ["another", "generated"]
    assert (await store.get_installed_workflow("app-2", "generated")).version == "theirs"  # type: ignore[union-attr]
    assert await store.delete_installed_workflow(APP, "generated") is True
    assert await store.delete_installed_workflow(APP, "generated") is False
    assert await store.get_installed_workflow(APP, "generated") is None
    assert await store.get_installed_workflow("app-2", "generated") is not None
    assert await store.list_installed_workflows("app-3") == []


async def test_everything_survives_close_and_reopen(backend: Backend) -> None:
    store = await backend.open()
    await store.create_chat(make_chat(), idempotency_key="k")
    epoch = await store.claim(APP, USER, "chat-1")
    await store.append(APP, USER, "chat-1", epoch, make_events(1, 2), snapshot={"n": 2}, phase="waiting_input",
                       client_message_id="m1", usage=[make_usage()])
    await store.counter_add("k", 4)
    await store.create_fanout(make_fanout())
    await store.set_child_status(APP, USER, "fo-1", 1, "completed", result="done")
    await store.put_installed_workflow(make_installed())
    before = await store.get_chat(APP, USER, "chat-1")
    await store.close()

    reopened = await backend.open()
    assert await reopened.get_chat(APP, USER, "chat-1") == before
    assert [e.seq for e in await reopened.read_events(APP, USER, "chat-1")] == [1, 2]
    assert (await reopened.usage_totals(APP))["total_tokens"] == 30
    assert await reopened.counter_get("k") == 4
    fanout = await reopened.get_fanout(APP, USER, "fo-1")
    assert fanout is not None and fanout.children[1].result == "done"
    assert await reopened.get_installed_workflow(APP, "generated") == make_installed()
    assert (await reopened.create_chat(make_chat("chat-2"), idempotency_key="k"))[1] is False
    with pytest.raises(DuplicateMessageError):
        await reopened.append(APP, USER, "chat-1", epoch, make_events(3, 1), client_message_id="m1")
    assert await reopened.claim(APP, USER, "chat-1") == epoch + 1


# -- SQLite specifics ------------------------------------------------------------------------------

async def test_sqlite_is_durable_and_waits_for_other_writers_off_the_loop(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    store = SQLiteStore(path)
    await store.init()
    try:
        assert await store._read(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
        other = sqlite3.connect(path, isolation_level=None)  # another process holding the write lock
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(store.counter_add("k", 1))
        for _ in range(20):  # the loop keeps running while the store's thread waits for the lock
            await asyncio.sleep(0.01)
        assert not write.done()
        other.execute("COMMIT")
        other.close()
        assert await write == 1
    finally:
        await store.close()


def _consume_in_another_process(path: str, calls: int, limit: int) -> int:
    async def consume() -> int:
        store = SQLiteStore(path)
        await store.init()
        try:
            results = await asyncio.gather(*(store.counter_try_consume("quota", 1, limit) for _ in range(calls)))
        finally:
            await store.close()
        return sum(ok for ok, _ in results)

    return asyncio.run(consume())


async def test_sqlite_processes_racing_consumers_never_overshoot(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, like Ray actor processes
    with ProcessPoolExecutor(max_workers=3, mp_context=spawn) as pool:
        loop = asyncio.get_running_loop()
        won = await asyncio.gather(*(loop.run_in_executor(pool, _consume_in_another_process, path, 20, 25)
                                     for _ in range(3)))
    assert sum(won) == 25
    store = SQLiteStore(path)
    try:
        assert await store.counter_get("quota") == 25
    finally:
        await store.close()
