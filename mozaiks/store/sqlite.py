"""SQLite backend: one database file that several processes (Ray actors) open at once.

Concurrency model: every write is a ``BEGIN IMMEDIATE`` transaction, so a transaction that
checks a chat's epoch or a counter's value holds the file's write lock from its first read and
no other process can change what it checked before it commits. Durability: WAL with
``synchronous=FULL`` fsyncs the log on every commit, so an acknowledged append survives a crash
of the process or the machine.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mozaiks.errors import ChatExists, ChatNotFound, FanOutNotFound, StoreConfigError
from mozaiks.store._shared import (
    COMPLETIONS_BACKFILL, COMPLETIONS_TABLE, COMPLETIONS_VERSION, INSTALLED_COLUMNS, INSTALLED_TABLE, USAGE_KEYS, WAKEUP_SCHEMA, check_seqs, check_usage, decode_cursor, encode_cursor,
    installed_record, installed_row, normalize_ts, page_size, utc_now,
)
from mozaiks.store.base import (
    SCHEMA_VERSION, ChatRecord, ChildStatus, DuplicateMessageError, FanOutRecord, FencedError, InstalledWorkflow,
    Store, StoredEvent, UsageRecord, Wakeup,
)

T = TypeVar("T")

# SQLite's own busy handler waits this long for another process's write lock ...
_BUSY_TIMEOUT_S = 5.0
# ... and we retry beyond it, for the cases where SQLite reports SQLITE_BUSY without waiting
# (e.g. while another connection recovers the WAL) and for long queues of writers.
_RETRY_FOR_S = 30.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS chats (
        chat_id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        workflow_name TEXT NOT NULL,
        status TEXT NOT NULL,
        phase TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        snapshot TEXT NOT NULL,
        context TEXT NOT NULL,
        tenant_id TEXT,
        idempotency_key TEXT,
        schema_version INTEGER NOT NULL,
        UNIQUE (app_id, user_id, idempotency_key)
    )""",
    "CREATE INDEX IF NOT EXISTS chats_by_owner ON chats (app_id, user_id, created_at DESC, chat_id DESC)",
    "CREATE INDEX IF NOT EXISTS chats_by_workflow ON chats (app_id, user_id, workflow_name, status)",
    """CREATE TABLE IF NOT EXISTS events (
        chat_id TEXT NOT NULL REFERENCES chats (chat_id),
        seq INTEGER NOT NULL,
        app_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        type TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        agent TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (chat_id, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS client_messages (
        chat_id TEXT NOT NULL REFERENCES chats (chat_id),
        message_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (chat_id, message_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS usage (
        id INTEGER PRIMARY KEY,
        app_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        workflow_name TEXT NOT NULL,
        agent TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        timestamp TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS usage_by_user ON usage (app_id, user_id, timestamp)",
    # An app-wide budget sums one period of every user's usage: without this it scans the app's history.
    "CREATE INDEX IF NOT EXISTS usage_by_app ON usage (app_id, timestamp)",
    "CREATE INDEX IF NOT EXISTS usage_by_chat ON usage (chat_id, timestamp)",
    "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS subscriptions (
        app_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        plan TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (app_id, user_id)
    ) WITHOUT ROWID""",
    # A fan-out is read and changed whole (a handful of children), so it is one JSON document.
    """CREATE TABLE IF NOT EXISTS fanouts (
        fanout_id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        parent_chat_id TEXT NOT NULL,
        body TEXT NOT NULL
    ) WITHOUT ROWID""",
    INSTALLED_TABLE + " WITHOUT ROWID",
    *WAKEUP_SCHEMA,
    COMPLETIONS_TABLE + " WITHOUT ROWID",
)

_CHAT_COLUMNS = ("chat_id, app_id, user_id, workflow_name, status, phase, created_at, updated_at, epoch, "
                 "last_seq, snapshot, context, tenant_id, schema_version")
_OWNED = "chat_id = ? AND app_id = ? AND user_id = ?"


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _chat(row: sqlite3.Row) -> ChatRecord:
    fields = dict(row)
    fields["snapshot"] = json.loads(fields["snapshot"])
    fields["context"] = json.loads(fields["context"])
    return ChatRecord.model_validate(fields)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # extended codes keep the primary in the low byte


class SQLiteStore(Store):
    def __init__(self, path: str, inline: bool = False) -> None:
        self._path = path
        # sqlite3 calls block, so by default they run off the event loop, on one thread that owns
        # the one connection (which also keeps this process's transactions from interleaving).
        # ``inline`` runs them on the caller's loop instead: in a process that serves one chat,
        # blocking its loop for a commit is cheaper than two thread hand-offs per call, and a
        # call that never yields cannot interleave either.
        self._executor = None if inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- plumbing: the async helpers hand work to the store's thread, the sync ones run on it --
    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(lambda: self._retrying(lambda: self._transaction(work)))

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # Reads are single statements, atomic on their own; WAL lets them run beside a writer.
        return await self._run(lambda: self._retrying(lambda: work(self._connection())))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
            conn = sqlite3.connect(self._path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            conn.row_factory = sqlite3.Row
            self._retrying(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn
        return self._conn

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise
        return result

    @staticmethod
    def _retrying(attempt: Callable[[], T]) -> T:
        deadline = time.monotonic() + _RETRY_FOR_S
        pause = 0.002
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    # -- lifecycle ---------------------------------------------------------------------------
    async def init(self) -> None:
        def work(conn: sqlite3.Connection) -> None:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise StoreConfigError(f"{self._path} has schema version {found}; this code knows {SCHEMA_VERSION}")
            for statement in _SCHEMA:
                conn.execute(statement)
            if found < COMPLETIONS_VERSION:
                conn.execute(COMPLETIONS_BACKFILL)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        await self._write(work)

    async def close(self) -> None:
        def work() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if not self._closed:
            self._closed = True
            await self._run(work)
            if self._executor is not None:
                self._executor.shutdown(wait=True)

    # -- chats -------------------------------------------------------------------------------
    async def create_chat(self, chat: ChatRecord, idempotency_key: str | None = None) -> tuple[ChatRecord, bool]:
        record = chat.model_copy(update={
            "created_at": normalize_ts(chat.created_at), "updated_at": normalize_ts(chat.updated_at),
            "schema_version": SCHEMA_VERSION,
        })

        def work(conn: sqlite3.Connection) -> tuple[ChatRecord, bool]:
            if idempotency_key is not None:
                row = conn.execute(
                    f"SELECT {_CHAT_COLUMNS} FROM chats WHERE app_id = ? AND user_id = ? AND idempotency_key = ?",
                    (record.app_id, record.user_id, idempotency_key)).fetchone()
                if row is not None:
                    return _chat(row), False
            try:
                conn.execute(
                    f"INSERT INTO chats ({_CHAT_COLUMNS}, idempotency_key) VALUES ({', '.join('?' * 15)})",
                    (record.chat_id, record.app_id, record.user_id, record.workflow_name, record.status,
                     record.phase, record.created_at, record.updated_at, record.epoch, record.last_seq,
                     _dump(record.snapshot), _dump(record.context), record.tenant_id, record.schema_version,
                     idempotency_key))
            except sqlite3.IntegrityError as exc:
                raise ChatExists(f"chat {record.chat_id} already exists") from exc
            return record, True

        return await self._write(work)

    async def get_chat(self, app_id: str, user_id: str, chat_id: str) -> ChatRecord | None:
        def work(conn: sqlite3.Connection) -> ChatRecord | None:
            row = conn.execute(f"SELECT {_CHAT_COLUMNS} FROM chats WHERE {_OWNED}",
                               (chat_id, app_id, user_id)).fetchone()
            return None if row is None else _chat(row)

        return await self._read(work)

    async def list_chats(self, app_id: str, user_id: str, limit: int = 20,
                         cursor: str | None = None) -> tuple[list[ChatRecord], str | None]:
        size = page_size(limit)
        where, params = "app_id = ? AND user_id = ?", [app_id, user_id]
        if cursor is not None:
            where += " AND (created_at, chat_id) < (?, ?)"
            params.extend(decode_cursor(cursor))

        def work(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            # One row more than the page tells whether another page follows.
            return conn.execute(
                f"SELECT {_CHAT_COLUMNS} FROM chats WHERE {where} "
                "ORDER BY created_at DESC, chat_id DESC LIMIT ?", (*params, size + 1)).fetchall()

        rows = await self._read(work)
        chats = [_chat(row) for row in rows[:size]]
        more = len(rows) > size
        return chats, encode_cursor(chats[-1].created_at, chats[-1].chat_id) if more else None

    async def has_completed(self, app_id: str, user_id: str, workflow_name: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "SELECT 1 FROM completions WHERE app_id = ? AND user_id = ? AND workflow_name = ?",
                (app_id, user_id, workflow_name)).fetchone() is not None

        return await self._read(work)

    # -- ownership and the event log ------------------------------------------------------------
    async def claim(self, app_id: str, user_id: str, chat_id: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute(f"UPDATE chats SET epoch = epoch + 1 WHERE {_OWNED} RETURNING epoch",
                               (chat_id, app_id, user_id)).fetchone()
            if row is None:
                raise ChatNotFound(chat_id)
            return int(row[0])

        return await self._write(work)

    async def append(self, app_id: str, user_id: str, chat_id: str, epoch: int, events: list[StoredEvent],
                     snapshot: dict[str, Any] | None = None, status: str | None = None,
                     phase: str | None = None, client_message_id: str | None = None,
                     usage: list[UsageRecord] | None = None) -> None:
        usage = usage or []
        check_usage(usage, app_id, user_id, chat_id)
        now = utc_now()

        def work(conn: sqlite3.Connection) -> None:
            # The checks read inside the IMMEDIATE transaction, so they still hold at COMMIT.
            row = conn.execute(f"SELECT epoch, last_seq, workflow_name FROM chats WHERE {_OWNED}",
                               (chat_id, app_id, user_id)).fetchone()
            if row is None:
                raise ChatNotFound(chat_id)
            if row["epoch"] != epoch:
                raise FencedError(f"chat {chat_id}: epoch {epoch} is stale (current {row['epoch']})")
            if client_message_id is not None:
                inserted = conn.execute(
                    "INSERT OR IGNORE INTO client_messages (chat_id, message_id, created_at) VALUES (?, ?, ?)",
                    (chat_id, client_message_id, now)).rowcount
                if not inserted:
                    raise DuplicateMessageError(f"chat {chat_id}: client message {client_message_id} already recorded")
            check_seqs(chat_id, events, row["last_seq"])
            conn.executemany(
                "INSERT INTO events (chat_id, seq, app_id, user_id, type, timestamp, agent, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(chat_id, e.seq, app_id, user_id, e.type, e.timestamp, e.agent, _dump(e.data)) for e in events])
            # COALESCE: a field not given (None) keeps its value.
            conn.execute(
                "UPDATE chats SET last_seq = ?, updated_at = ?, snapshot = COALESCE(?, snapshot), "
                f"status = COALESCE(?, status), phase = COALESCE(?, phase) WHERE {_OWNED}",
                (row["last_seq"] + len(events), now, None if snapshot is None else _dump(snapshot), status, phase,
                 chat_id, app_id, user_id))
            if status == "completed":
                conn.execute("INSERT OR IGNORE INTO completions (app_id, user_id, workflow_name, completed_at) "
                             "VALUES (?, ?, ?, ?)", (app_id, user_id, row["workflow_name"], now))
            conn.executemany(
                "INSERT INTO usage (app_id, user_id, chat_id, workflow_name, agent, model, prompt_tokens, "
                "completion_tokens, total_tokens, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(u.app_id, u.user_id, u.chat_id, u.workflow_name, u.agent, u.model, u.prompt_tokens,
                  u.completion_tokens, u.total_tokens, normalize_ts(u.timestamp)) for u in usage])

        await self._write(work)

    async def read_events(self, app_id: str, user_id: str, chat_id: str, after_seq: int = 0,
                          limit: int | None = None) -> list[StoredEvent]:
        def work(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                f"SELECT seq, type, timestamp, agent, data FROM events WHERE {_OWNED} AND seq > ? "
                "ORDER BY seq LIMIT ?",  # LIMIT -1: no limit
                (chat_id, app_id, user_id, after_seq, -1 if limit is None else max(limit, 0))).fetchall()

        rows = await self._read(work)
        return [StoredEvent(seq=r["seq"], type=r["type"], timestamp=r["timestamp"], agent=r["agent"],
                            data=json.loads(r["data"])) for r in rows]

    # -- usage and counters ------------------------------------------------------------------
    async def usage_totals(self, app_id: str, user_id: str | None = None, chat_id: str | None = None,
                           since: str | None = None) -> dict[str, int]:
        where, params = "app_id = ?", [app_id]
        for clause, value in (("user_id = ?", user_id), ("chat_id = ?", chat_id),
                              ("timestamp >= ?", None if since is None else normalize_ts(since))):
            if value is not None:
                where += f" AND {clause}"
                params.append(value)

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            sums = ", ".join(f"COALESCE(SUM({key}), 0)" for key in USAGE_KEYS)
            row = conn.execute(f"SELECT {sums} FROM usage WHERE {where}", params).fetchone()
            return {key: int(value) for key, value in zip(USAGE_KEYS, row, strict=True)}

        return await self._read(work)

    async def prune_usage(self, before: str) -> int:
        cutoff = normalize_ts(before)
        return await self._write(lambda conn: conn.execute("DELETE FROM usage WHERE timestamp < ?", (cutoff,)).rowcount)

    async def counter_add(self, key: str, amount: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return int(conn.execute(
                "INSERT INTO counters (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value RETURNING value",
                (key, amount)).fetchone()[0])

        return await self._write(work)

    async def counter_try_consume(self, key: str, amount: int, limit: int) -> tuple[bool, int]:
        def work(conn: sqlite3.Connection) -> tuple[bool, int]:
            # Read and write under the IMMEDIATE lock: no other process can consume in between.
            row = conn.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
            value = 0 if row is None else int(row[0])
            if value + amount > limit:
                return False, value
            conn.execute("INSERT INTO counters (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value + amount))
            return True, value + amount

        return await self._write(work)

    async def counter_get(self, key: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
            return 0 if row is None else int(row[0])

        return await self._read(work)

    # -- subscriptions -------------------------------------------------------------------------
    async def get_subscription(self, app_id: str, user_id: str) -> str | None:
        def work(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT plan FROM subscriptions WHERE app_id = ? AND user_id = ?",
                               (app_id, user_id)).fetchone()
            return None if row is None else str(row[0])

        return await self._read(work)

    async def set_subscription(self, app_id: str, user_id: str, plan: str | None) -> None:
        def work(conn: sqlite3.Connection) -> None:
            if plan is None:
                conn.execute("DELETE FROM subscriptions WHERE app_id = ? AND user_id = ?", (app_id, user_id))
                return
            conn.execute("INSERT INTO subscriptions (app_id, user_id, plan, updated_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (app_id, user_id) DO UPDATE SET plan = excluded.plan, "
                         "updated_at = excluded.updated_at", (app_id, user_id, plan, utc_now()))

        await self._write(work)

    # -- wake-ups ----------------------------------------------------------------------------
    async def set_wakeup(self, app_id: str, user_id: str, chat_id: str, wake_at: float | None) -> None:
        def work(conn: sqlite3.Connection) -> None:
            if wake_at is None:
                conn.execute(f"DELETE FROM wakeups WHERE {_OWNED}", (chat_id, app_id, user_id))
                return
            conn.execute("INSERT INTO wakeups (chat_id, app_id, user_id, wake_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (chat_id) DO UPDATE SET wake_at = excluded.wake_at "
                         "WHERE app_id = excluded.app_id AND user_id = excluded.user_id",
                         (chat_id, app_id, user_id, wake_at))

        await self._write(work)

    async def list_wakeups(self) -> list[Wakeup]:
        def work(conn: sqlite3.Connection) -> list[Wakeup]:
            rows = conn.execute("SELECT app_id, user_id, chat_id, wake_at FROM wakeups ORDER BY wake_at").fetchall()
            return [Wakeup.model_validate(dict(row)) for row in rows]

        return await self._read(work)

    # -- fan-outs ----------------------------------------------------------------------------
    async def create_fanout(self, fanout: FanOutRecord) -> FanOutRecord:
        def work(conn: sqlite3.Connection) -> FanOutRecord:
            found = _fanout_row(conn, fanout.app_id, fanout.user_id, fanout.fanout_id)
            if found is not None:
                return found
            conn.execute("INSERT INTO fanouts (fanout_id, app_id, user_id, parent_chat_id, body) VALUES (?, ?, ?, ?, ?)",
                         (fanout.fanout_id, fanout.app_id, fanout.user_id, fanout.parent_chat_id,
                          fanout.model_dump_json()))
            return fanout

        return await self._write(work)

    async def get_fanout(self, app_id: str, user_id: str, fanout_id: str) -> FanOutRecord | None:
        return await self._read(lambda conn: _fanout_row(conn, app_id, user_id, fanout_id))

    async def set_child_status(self, app_id: str, user_id: str, fanout_id: str, index: int, status: ChildStatus,
                               *, result: Any = None, error: str | None = None,
                               only_from: tuple[ChildStatus, ...] = ("pending", "running")) -> tuple[bool, FanOutRecord]:
        def work(conn: sqlite3.Connection) -> tuple[bool, FanOutRecord]:
            found = _fanout_row(conn, app_id, user_id, fanout_id)
            if found is None:
                raise FanOutNotFound(fanout_id)
            changed = found.with_child(index, status, result, error, only_from)
            if changed is None:
                return False, found
            conn.execute("UPDATE fanouts SET body = ? WHERE fanout_id = ?", (changed.model_dump_json(), fanout_id))
            return True, changed

        return await self._write(work)

    # -- installed workflows -------------------------------------------------------------------
    async def put_installed_workflow(self, record: InstalledWorkflow) -> None:
        row = installed_row(record)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT OR REPLACE INTO installed_workflows ({INSTALLED_COLUMNS}) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", row)

        await self._write(work)

    async def get_installed_workflow(self, app_id: str, name: str) -> InstalledWorkflow | None:
        def work(conn: sqlite3.Connection) -> InstalledWorkflow | None:
            row = conn.execute(f"SELECT {INSTALLED_COLUMNS} FROM installed_workflows WHERE app_id = ? AND name = ?",
                               (app_id, name)).fetchone()
            return None if row is None else installed_record(dict(row))

        return await self._read(work)

    async def list_installed_workflows(self, app_id: str) -> list[InstalledWorkflow]:
        def work(conn: sqlite3.Connection) -> list[InstalledWorkflow]:
            rows = conn.execute(f"SELECT {INSTALLED_COLUMNS} FROM installed_workflows WHERE app_id = ? "
                                "ORDER BY name", (app_id,)).fetchall()
            return [installed_record(dict(row)) for row in rows]

        return await self._read(work)

    async def delete_installed_workflow(self, app_id: str, name: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM installed_workflows WHERE app_id = ? AND name = ?", (app_id, name))
            return cursor.rowcount > 0

        return await self._write(work)


def _fanout_row(conn: sqlite3.Connection, app_id: str, user_id: str, fanout_id: str) -> FanOutRecord | None:
    row = conn.execute("SELECT body FROM fanouts WHERE fanout_id = ? AND app_id = ? AND user_id = ?",
                       (fanout_id, app_id, user_id)).fetchone()
    return None if row is None else FanOutRecord.model_validate_json(row[0])
