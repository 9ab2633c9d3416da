"""What the backends share: timestamp form, the list cursor, the checks an append makes, and the
row form of an installed workflow."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from mozaiks.errors import InvalidCursor, InvalidWrite
from mozaiks.store.base import InstalledWorkflow, StoredEvent, UsageRecord

MAX_PAGE = 100
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize_ts(value: str) -> str:
    """The stored form of a timestamp the store sorts or filters by: UTC, microseconds, 'Z'.

    One fixed-width form makes string order equal time order ("…:00Z" would otherwise sort after
    "…:00.5Z"); a timestamp without an offset is taken as UTC.
    """
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def page_size(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def encode_cursor(created_at: str, chat_id: str) -> str:
    """The sort key of a page's last chat; the next page starts strictly after it."""
    return base64.urlsafe_b64encode(json.dumps([created_at, chat_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created_at, chat_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise InvalidCursor("invalid cursor") from exc
    if not isinstance(created_at, str) or not isinstance(chat_id, str):
        raise InvalidCursor("invalid cursor")
    return created_at, chat_id


def check_seqs(chat_id: str, events: list[StoredEvent], last_seq: int) -> None:
    """The events must continue the log: last_seq+1, last_seq+2, … without gaps."""
    for offset, event in enumerate(events, start=1):
        if event.seq != last_seq + offset:
            raise InvalidWrite(f"chat {chat_id}: event seq {event.seq} does not follow {last_seq + offset - 1}")


def check_usage(usage: list[UsageRecord], app_id: str, user_id: str, chat_id: str) -> None:
    """Usage written with a chat's append must be attributed to that chat, so totals stay honest."""
    for row in usage:
        if (row.app_id, row.user_id, row.chat_id) != (app_id, user_id, chat_id):
            raise InvalidWrite(f"usage row for {row.app_id}/{row.user_id}/{row.chat_id} appended to chat {chat_id}")


# The same in SQLite and PostgreSQL: text columns only, the maps as JSON text.
INSTALLED_TABLE = """CREATE TABLE IF NOT EXISTS installed_workflows (
    app_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    files TEXT NOT NULL,
    capability TEXT NOT NULL,
    installed_by TEXT NOT NULL,
    installed_at TEXT NOT NULL,
    PRIMARY KEY (app_id, name)
)"""
INSTALLED_COLUMNS = "app_id, name, version, files, capability, installed_by, installed_at"


def installed_row(record: InstalledWorkflow) -> tuple[str, ...]:
    """The record in INSTALLED_COLUMNS order, its maps as JSON text (as the chat's payloads are)."""
    return (record.app_id, record.name, record.version, json.dumps(record.files, separators=(",", ":")),
            json.dumps(record.capability, separators=(",", ":")), record.installed_by, record.installed_at)


def installed_record(row: dict[str, Any]) -> InstalledWorkflow:
    return InstalledWorkflow.model_validate(
        {**row, "files": json.loads(row["files"]), "capability": json.loads(row["capability"])})


# "This user has completed workflow W": recorded when a run of W completes, in the same write, and
# never unset, so a completed chat that starts a new run changes its status but not this fact.
COMPLETIONS_TABLE = """CREATE TABLE IF NOT EXISTS completions (
    app_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    PRIMARY KEY (app_id, user_id, workflow_name)
)"""
# Migration 5 takes over what the chats' statuses still tell (a completion whose chat has run
# again since is not known to a database older than the table).
COMPLETIONS_BACKFILL = (
    "INSERT INTO completions (app_id, user_id, workflow_name, completed_at) "
    "SELECT app_id, user_id, workflow_name, MIN(updated_at) FROM chats WHERE status = 'completed' "
    "GROUP BY app_id, user_id, workflow_name ON CONFLICT DO NOTHING")
COMPLETIONS_VERSION = 5


# The SQL stores' wake-ups of passivated chats, and the index that keeps usage retention cheap.
WAKEUP_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS wakeups (
        chat_id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        wake_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS wakeups_by_time ON wakeups (wake_at)",
    "CREATE INDEX IF NOT EXISTS usage_by_time ON usage (timestamp)",
)
