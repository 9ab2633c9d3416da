"""PostgreSQL backend: one network database that every node's session actors share.

Concurrency model: each write is one transaction that locks the rows it checks (``SELECT … FOR
UPDATE``), so an epoch or counter check still holds at COMMIT while other writers wait on that
row only. Durability is the server's (``synchronous_commit`` on by default): an acknowledged
append is in the server's WAL.

Schema migrations: the ``schema_version`` table holds the version this database was brought to;
``init`` refuses a database newer than the code and applies the missing steps in ``_MIGRATIONS``
(each an idempotent list of statements) in one transaction, under an advisory lock so that
processes starting together migrate once.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from mozaiks.errors import ChatExists, ChatNotFound, ConflictError, FanOutNotFound, StoreConfigError
from mozaiks.store._shared import (
    COMPLETIONS_BACKFILL, COMPLETIONS_TABLE, INSTALLED_COLUMNS, INSTALLED_TABLE, USAGE_KEYS, WAKEUP_SCHEMA, check_seqs,
    check_usage, decode_cursor, encode_cursor, installed_record, installed_row, normalize_ts, page_size, utc_now,
)
from mozaiks.store.base import (
    SCHEMA_VERSION, ChatRecord, ChildStatus, DuplicateMessageError, FanOutRecord, FencedError, InstalledWorkflow,
    Store, StoredEvent, UsageRecord, Wakeup,
)

# Version N's steps bring a database from N-1 to N.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS chats (
            chat_id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            workflow_name TEXT NOT NULL,
            status TEXT NOT NULL,
            phase TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            last_seq BIGINT NOT NULL,
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
            seq BIGINT NOT NULL,
            app_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            type TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            agent TEXT,
            data TEXT NOT NULL,
            PRIMARY KEY (chat_id, seq)
        )""",
        """CREATE TABLE IF NOT EXISTS client_messages (
            chat_id TEXT NOT NULL REFERENCES chats (chat_id),
            message_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (chat_id, message_id)
        )""",
        """CREATE TABLE IF NOT EXISTS usage (
            id BIGSERIAL PRIMARY KEY,
            app_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            workflow_name TEXT NOT NULL,
            agent TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            total_tokens BIGINT NOT NULL,
            timestamp TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS usage_by_user ON usage (app_id, user_id, timestamp)",
        "CREATE INDEX IF NOT EXISTS usage_by_app ON usage (app_id, timestamp)",
        "CREATE INDEX IF NOT EXISTS usage_by_chat ON usage (chat_id, timestamp)",
        "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS subscriptions (
            app_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            plan TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (app_id, user_id)
        )""",
    ),
    2: (
        # A fan-out is read and changed whole (a handful of children), so it is one JSON document.
        """CREATE TABLE IF NOT EXISTS fanouts (
            fanout_id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            parent_chat_id TEXT NOT NULL,
            body TEXT NOT NULL
        )""",
    ),
    3: (INSTALLED_TABLE,),
    4: WAKEUP_SCHEMA,
    5: (COMPLETIONS_TABLE, COMPLETIONS_BACKFILL),
}
_MIGRATION_LOCK = 0x6D6F7A61  # advisory lock key: one migrating process at a time

_CHAT_COLUMNS = ("chat_id, app_id, user_id, workflow_name, status, phase, created_at, updated_at, epoch, "
                 "last_seq, snapshot, context, tenant_id, schema_version")
_OWNED = "chat_id = $1 AND app_id = $2 AND user_id = $3"


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _chat(row: asyncpg.Record) -> ChatRecord:
    fields = dict(row)
    fields["snapshot"] = json.loads(fields["snapshot"])
    fields["context"] = json.loads(fields["context"])
    return ChatRecord.model_validate(fields)


class PostgresStore(Store):
    def __init__(self, url: str, pool_size: int = 4) -> None:
        self._url = url
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self._url, min_size=1, max_size=self._pool_size)
        return self._pool

    # -- lifecycle ---------------------------------------------------------------------------
    async def init(self) -> None:
        pool = await self._connections()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            found = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
            if found > SCHEMA_VERSION:
                raise StoreConfigError(f"database has schema version {found}; this code knows {SCHEMA_VERSION}")
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- chats -------------------------------------------------------------------------------
    async def create_chat(self, chat: ChatRecord, idempotency_key: str | None = None) -> tuple[ChatRecord, bool]:
        record = chat.model_copy(update={
            "created_at": normalize_ts(chat.created_at), "updated_at": normalize_ts(chat.updated_at),
            "schema_version": SCHEMA_VERSION,
        })
        pool = await self._connections()
        async with pool.acquire() as conn, conn.transaction():
            try:
                # ON CONFLICT on the idempotency key: two racing creates with one key make one chat.
                row = await conn.fetchrow(
                    f"INSERT INTO chats ({_CHAT_COLUMNS}, idempotency_key) VALUES "
                    f"({', '.join(f'${i}' for i in range(1, 16))}) "
                    "ON CONFLICT (app_id, user_id, idempotency_key) DO NOTHING RETURNING chat_id",
                    record.chat_id, record.app_id, record.user_id, record.workflow_name, record.status,
                    record.phase, record.created_at, record.updated_at, record.epoch, record.last_seq,
                    _dump(record.snapshot), _dump(record.context), record.tenant_id, record.schema_version,
                    idempotency_key)
            except asyncpg.UniqueViolationError as exc:
                raise ChatExists(f"chat {record.chat_id} already exists") from exc
            if row is None:
                existing = await conn.fetchrow(
                    f"SELECT {_CHAT_COLUMNS} FROM chats WHERE app_id = $1 AND user_id = $2 AND idempotency_key = $3",
                    record.app_id, record.user_id, idempotency_key)
                if existing is None:
                    raise ConflictError(f"chat {record.chat_id}: idempotency conflict without a row")
                return _chat(existing), False
        return record, True

    async def get_chat(self, app_id: str, user_id: str, chat_id: str) -> ChatRecord | None:
        pool = await self._connections()
        row = await pool.fetchrow(f"SELECT {_CHAT_COLUMNS} FROM chats WHERE {_OWNED}", chat_id, app_id, user_id)
        return None if row is None else _chat(row)

    async def list_chats(self, app_id: str, user_id: str, limit: int = 20,
                         cursor: str | None = None) -> tuple[list[ChatRecord], str | None]:
        size = page_size(limit)
        where, params = "app_id = $1 AND user_id = $2", [app_id, user_id]
        if cursor is not None:
            where += " AND (created_at, chat_id) < ($3, $4)"
            params.extend(decode_cursor(cursor))
        pool = await self._connections()
        # One row more than the page tells whether another page follows.
        rows = await pool.fetch(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE {where} "
            f"ORDER BY created_at DESC, chat_id DESC LIMIT ${len(params) + 1}", *params, size + 1)
        chats = [_chat(row) for row in rows[:size]]
        more = len(rows) > size
        return chats, encode_cursor(chats[-1].created_at, chats[-1].chat_id) if more else None

    async def has_completed(self, app_id: str, user_id: str, workflow_name: str) -> bool:
        pool = await self._connections()
        return await pool.fetchval(
            "SELECT 1 FROM completions WHERE app_id = $1 AND user_id = $2 AND workflow_name = $3",
            app_id, user_id, workflow_name) is not None

    # -- ownership and the event log ------------------------------------------------------------
    async def claim(self, app_id: str, user_id: str, chat_id: str) -> int:
        pool = await self._connections()
        epoch = await pool.fetchval(f"UPDATE chats SET epoch = epoch + 1 WHERE {_OWNED} RETURNING epoch",
                                    chat_id, app_id, user_id)
        if epoch is None:
            raise ChatNotFound(chat_id)
        return int(epoch)

    async def append(self, app_id: str, user_id: str, chat_id: str, epoch: int, events: list[StoredEvent],
                     snapshot: dict[str, Any] | None = None, status: str | None = None,
                     phase: str | None = None, client_message_id: str | None = None,
                     usage: list[UsageRecord] | None = None) -> None:
        usage = usage or []
        check_usage(usage, app_id, user_id, chat_id)
        now = utc_now()
        pool = await self._connections()
        async with pool.acquire() as conn, conn.transaction():
            # FOR UPDATE: a claim or another append on this chat waits until we commit.
            row = await conn.fetchrow(f"SELECT epoch, last_seq, workflow_name FROM chats WHERE {_OWNED} FOR UPDATE",
                                      chat_id, app_id, user_id)
            if row is None:
                raise ChatNotFound(chat_id)
            if row["epoch"] != epoch:
                raise FencedError(f"chat {chat_id}: epoch {epoch} is stale (current {row['epoch']})")
            if client_message_id is not None:
                inserted = await conn.fetchval(
                    "INSERT INTO client_messages (chat_id, message_id, created_at) VALUES ($1, $2, $3) "
                    "ON CONFLICT DO NOTHING RETURNING 1", chat_id, client_message_id, now)
                if inserted is None:
                    raise DuplicateMessageError(f"chat {chat_id}: client message {client_message_id} already recorded")
            check_seqs(chat_id, events, row["last_seq"])
            if events:
                await conn.executemany(
                    "INSERT INTO events (chat_id, seq, app_id, user_id, type, timestamp, agent, data) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    [(chat_id, e.seq, app_id, user_id, e.type, e.timestamp, e.agent, _dump(e.data)) for e in events])
            # COALESCE: a field not given (None) keeps its value.
            await conn.execute(
                "UPDATE chats SET last_seq = $4, updated_at = $5, snapshot = COALESCE($6, snapshot), "
                f"status = COALESCE($7, status), phase = COALESCE($8, phase) WHERE {_OWNED}",
                chat_id, app_id, user_id, row["last_seq"] + len(events), now,
                None if snapshot is None else _dump(snapshot), status, phase)
            if status == "completed":
                await conn.execute(
                    "INSERT INTO completions (app_id, user_id, workflow_name, completed_at) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT DO NOTHING", app_id, user_id, row["workflow_name"], now)
            if usage:
                await conn.executemany(
                    "INSERT INTO usage (app_id, user_id, chat_id, workflow_name, agent, model, prompt_tokens, "
                    "completion_tokens, total_tokens, timestamp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    [(u.app_id, u.user_id, u.chat_id, u.workflow_name, u.agent, u.model, u.prompt_tokens,
                      u.completion_tokens, u.total_tokens, normalize_ts(u.timestamp)) for u in usage])

    async def read_events(self, app_id: str, user_id: str, chat_id: str, after_seq: int = 0,
                          limit: int | None = None) -> list[StoredEvent]:
        pool = await self._connections()
        rows = await pool.fetch(
            f"SELECT seq, type, timestamp, agent, data FROM events WHERE {_OWNED} AND seq > $4 "
            "ORDER BY seq LIMIT $5",  # LIMIT NULL: no limit
            chat_id, app_id, user_id, after_seq, None if limit is None else max(limit, 0))
        return [StoredEvent(seq=r["seq"], type=r["type"], timestamp=r["timestamp"], agent=r["agent"],
                            data=json.loads(r["data"])) for r in rows]

    # -- usage and counters ------------------------------------------------------------------
    async def usage_totals(self, app_id: str, user_id: str | None = None, chat_id: str | None = None,
                           since: str | None = None) -> dict[str, int]:
        where, params = "app_id = $1", [app_id]
        for column, op, value in (("user_id", "=", user_id), ("chat_id", "=", chat_id),
                                  ("timestamp", ">=", None if since is None else normalize_ts(since))):
            if value is not None:
                params.append(value)
                where += f" AND {column} {op} ${len(params)}"
        sums = ", ".join(f"COALESCE(SUM({key}), 0)" for key in USAGE_KEYS)
        pool = await self._connections()
        row = await pool.fetchrow(f"SELECT {sums} FROM usage WHERE {where}", *params)
        return {key: int(value) for key, value in zip(USAGE_KEYS, row, strict=True)}

    async def counter_add(self, key: str, amount: int) -> int:
        pool = await self._connections()
        return int(await pool.fetchval(
            "INSERT INTO counters (key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = counters.value + excluded.value RETURNING value", key, amount))

    async def counter_try_consume(self, key: str, amount: int, limit: int) -> tuple[bool, int]:
        pool = await self._connections()
        async with pool.acquire() as conn, conn.transaction():
            # Make sure the row exists, then lock it: no other process can consume in between.
            await conn.execute("INSERT INTO counters (key, value) VALUES ($1, 0) ON CONFLICT DO NOTHING", key)
            value = int(await conn.fetchval("SELECT value FROM counters WHERE key = $1 FOR UPDATE", key))
            if value + amount > limit:
                return False, value
            await conn.execute("UPDATE counters SET value = $2 WHERE key = $1", key, value + amount)
            return True, value + amount

    async def prune_usage(self, before: str) -> int:
        pool = await self._connections()
        status = await pool.execute("DELETE FROM usage WHERE timestamp < $1", normalize_ts(before))
        return int(status.rsplit(" ", 1)[-1])

    async def counter_get(self, key: str) -> int:
        pool = await self._connections()
        value = await pool.fetchval("SELECT value FROM counters WHERE key = $1", key)
        return 0 if value is None else int(value)

    # -- subscriptions -------------------------------------------------------------------------
    async def get_subscription(self, app_id: str, user_id: str) -> str | None:
        pool = await self._connections()
        plan = await pool.fetchval("SELECT plan FROM subscriptions WHERE app_id = $1 AND user_id = $2",
                                   app_id, user_id)
        return None if plan is None else str(plan)

    async def set_subscription(self, app_id: str, user_id: str, plan: str | None) -> None:
        pool = await self._connections()
        if plan is None:
            await pool.execute("DELETE FROM subscriptions WHERE app_id = $1 AND user_id = $2", app_id, user_id)
            return
        await pool.execute(
            "INSERT INTO subscriptions (app_id, user_id, plan, updated_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (app_id, user_id) DO UPDATE SET plan = excluded.plan, updated_at = excluded.updated_at",
            app_id, user_id, plan, utc_now())

    # -- wake-ups ----------------------------------------------------------------------------
    async def set_wakeup(self, app_id: str, user_id: str, chat_id: str, wake_at: float | None) -> None:
        pool = await self._connections()
        if wake_at is None:
            await pool.execute(f"DELETE FROM wakeups WHERE {_OWNED}", chat_id, app_id, user_id)
            return
        await pool.execute("INSERT INTO wakeups (chat_id, app_id, user_id, wake_at) VALUES ($1, $2, $3, $4) "
                           "ON CONFLICT (chat_id) DO UPDATE SET wake_at = excluded.wake_at "
                           "WHERE wakeups.app_id = excluded.app_id AND wakeups.user_id = excluded.user_id",
                           chat_id, app_id, user_id, wake_at)

    async def list_wakeups(self) -> list[Wakeup]:
        pool = await self._connections()
        rows = await pool.fetch("SELECT app_id, user_id, chat_id, wake_at FROM wakeups ORDER BY wake_at")
        return [Wakeup.model_validate(dict(row)) for row in rows]

    # -- fan-outs ----------------------------------------------------------------------------
    async def create_fanout(self, fanout: FanOutRecord) -> FanOutRecord:
        pool = await self._connections()
        await pool.execute("INSERT INTO fanouts (fanout_id, app_id, user_id, parent_chat_id, body) "
                           "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (fanout_id) DO NOTHING",
                           fanout.fanout_id, fanout.app_id, fanout.user_id, fanout.parent_chat_id,
                           fanout.model_dump_json())
        found = await self.get_fanout(fanout.app_id, fanout.user_id, fanout.fanout_id)
        if found is None:
            raise ConflictError(f"fan-out {fanout.fanout_id} belongs to another app or user")
        return found

    async def get_fanout(self, app_id: str, user_id: str, fanout_id: str) -> FanOutRecord | None:
        pool = await self._connections()
        body = await pool.fetchval("SELECT body FROM fanouts WHERE fanout_id = $1 AND app_id = $2 AND user_id = $3",
                                   fanout_id, app_id, user_id)
        return None if body is None else FanOutRecord.model_validate_json(body)

    async def set_child_status(self, app_id: str, user_id: str, fanout_id: str, index: int, status: ChildStatus,
                               *, result: Any = None, error: str | None = None,
                               only_from: tuple[ChildStatus, ...] = ("pending", "running")) -> tuple[bool, FanOutRecord]:
        pool = await self._connections()
        async with pool.acquire() as conn, conn.transaction():
            body = await conn.fetchval("SELECT body FROM fanouts WHERE fanout_id = $1 AND app_id = $2 AND user_id = $3 "
                                       "FOR UPDATE", fanout_id, app_id, user_id)
            if body is None:
                raise FanOutNotFound(fanout_id)
            found = FanOutRecord.model_validate_json(body)
            changed = found.with_child(index, status, result, error, only_from)
            if changed is None:
                return False, found
            await conn.execute("UPDATE fanouts SET body = $1 WHERE fanout_id = $2", changed.model_dump_json(), fanout_id)
            return True, changed

    # -- installed workflows -------------------------------------------------------------------
    async def put_installed_workflow(self, record: InstalledWorkflow) -> None:
        pool = await self._connections()
        await pool.execute(
            f"INSERT INTO installed_workflows ({INSTALLED_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (app_id, name) DO UPDATE SET version = excluded.version, files = excluded.files, "
            "capability = excluded.capability, installed_by = excluded.installed_by, "
            "installed_at = excluded.installed_at", *installed_row(record))

    async def get_installed_workflow(self, app_id: str, name: str) -> InstalledWorkflow | None:
        pool = await self._connections()
        row = await pool.fetchrow(f"SELECT {INSTALLED_COLUMNS} FROM installed_workflows "
                                  "WHERE app_id = $1 AND name = $2", app_id, name)
        return None if row is None else installed_record(dict(row))

    async def list_installed_workflows(self, app_id: str) -> list[InstalledWorkflow]:
        pool = await self._connections()
        rows = await pool.fetch(f"SELECT {INSTALLED_COLUMNS} FROM installed_workflows WHERE app_id = $1 "
                                "ORDER BY name", app_id)
        return [installed_record(dict(row)) for row in rows]

    async def delete_installed_workflow(self, app_id: str, name: str) -> bool:
        pool = await self._connections()
        status = await pool.execute("DELETE FROM installed_workflows WHERE app_id = $1 AND name = $2", app_id, name)
        return status != "DELETE 0"
