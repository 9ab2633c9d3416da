"""Durable state: chats, their event logs and snapshots, usage, counters, fan-outs, installed workflows.
SQLite, PostgreSQL or MongoDB."""

from mozaiks.errors import StoreConfigError
from mozaiks.store.base import (
    ChatRecord, DuplicateMessageError, FencedError, InstalledWorkflow, Store, StoredEvent, UsageRecord,
)

__all__ = ["ChatRecord", "DuplicateMessageError", "FencedError", "InstalledWorkflow", "Store", "StoredEvent",
           "UsageRecord", "open_store"]


def open_store(url: str, *, single_chat: bool = False) -> Store:
    """A store for a URL: ``sqlite:///path/to/file.db``, ``postgresql://…`` or ``mongodb://…``. ``single_chat``: the
    caller's event loop serves one chat (a session actor), so SQLite may block it for a write."""
    if url.startswith("sqlite:///"):
        from mozaiks.store.sqlite import SQLiteStore
        return SQLiteStore(url.removeprefix("sqlite:///"), inline=single_chat)
    if url.startswith(("postgresql://", "postgres://")):
        from mozaiks.store.postgres import PostgresStore
        return PostgresStore(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from mozaiks.store.mongo import MongoStore
        return MongoStore(url)
    raise StoreConfigError(f"unsupported store URL scheme: {url.split(':', 1)[0]!r}")
