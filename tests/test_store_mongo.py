"""MongoDB specifics: an append that dies before its commit point leaves nothing a reader sees, and
the next attempt (same owner or a newer one) takes its leftovers over. On a replica set the
transaction's abort gives this; on a standalone mongod the write order and the attempt tags do."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from pymongo import AsyncMongoClient

from mozaiks.store import ChatRecord, DuplicateMessageError, StoredEvent
from mozaiks.store.mongo import MongoStore

MONGO_URL = os.environ.get("MOZAIKS_TEST_MONGO_URL")
pytestmark = [pytest.mark.mongo, pytest.mark.skipif(
    not MONGO_URL, reason="MOZAIKS_TEST_MONGO_URL not set: no MongoDB server on this machine")]
APP, USER, CHAT = "app-1", "user-1", "chat-1"


class Crash(Exception):
    """The process dying at the commit point (not a transient error, so no transaction retries it)."""


class _CrashingChats:
    def __init__(self, chats: Any) -> None:
        self._chats = chats

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chats, name)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        raise Crash


class _CrashAtCommit:
    """A database whose chat updates (the append's commit point) never happen."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        collection = getattr(self._db, name)
        return _CrashingChats(collection) if name == "chats" else collection


@pytest.fixture
async def store() -> AsyncIterator[MongoStore]:
    database = f"mozaiks_test_{uuid4().hex[:12]}"
    store = MongoStore(MONGO_URL or "", database)
    await store.init()
    try:
        yield store
    finally:
        await store.close()
        admin: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGO_URL)
        await admin.drop_database(database)
        await admin.close()


def events(first: int, count: int, owner: str) -> list[StoredEvent]:
    return [StoredEvent(seq=s, type="message", timestamp="2026-01-01T00:00:00Z", data={"owner": owner})
            for s in range(first, first + count)]


async def crash_append(store: MongoStore, epoch: int, owner: str) -> None:
    db = store._db
    store._db = _CrashAtCommit(db)  # type: ignore[assignment]
    try:
        with pytest.raises(Crash):
            await store.append(APP, USER, CHAT, epoch, events(1, 2, owner), client_message_id="m1")
    finally:
        store._db = db


async def test_dead_attempts_are_invisible_and_taken_over(store: MongoStore) -> None:
    await store.create_chat(ChatRecord(chat_id=CHAT, app_id=APP, user_id=USER, workflow_name="wf",
                                       created_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:00Z"))
    old = await store.claim(APP, USER, CHAT)
    await crash_append(store, old, "old")
    assert await store.read_events(APP, USER, CHAT) == []
    # The same owner retries after its crash ...
    await crash_append(store, old, "old-again")
    # ... and a newer owner takes over: the dead attempts' message id and seqs are free for it.
    new = await store.claim(APP, USER, CHAT)
    await store.append(APP, USER, CHAT, new, events(1, 2, "new"), client_message_id="m1")
    assert [(e.seq, e.data["owner"]) for e in await store.read_events(APP, USER, CHAT)] == [(1, "new"), (2, "new")]
    with pytest.raises(DuplicateMessageError):
        await store.append(APP, USER, CHAT, new, events(3, 1, "new"), client_message_id="m1")
