"""Durable state: chats, their event logs and snapshots, usage, counters. SQLite or MongoDB."""

from store.base import (
    ChatRecord, DuplicateMessageError, FencedError, Store, StoredEvent, UsageRecord,
)

__all__ = ["ChatRecord", "DuplicateMessageError", "FencedError", "Store", "StoredEvent", "UsageRecord", "open_store"]


def open_store(url: str) -> Store:
    """A store for a URL: ``sqlite:///path/to/file.db`` or ``mongodb://…``."""
    if url.startswith("sqlite:///"):
        from store.sqlite import SQLiteStore
        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from store.mongo import MongoStore
        return MongoStore(url)
    raise ValueError(f"unsupported store URL scheme: {url.split(':', 1)[0]!r}")
