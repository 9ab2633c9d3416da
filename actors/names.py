"""Where the runtime's named actors live, and which directory shard serves a chat: a leaf module,
so that anything may find a chat's shard without importing the directory (which imports the
session actor), and without asking anyone."""

from __future__ import annotations

import zlib

NAMESPACE = "mozaiks"
DIRECTORY_PREFIX = "mozaiks-directory-"
SESSION_PREFIX = "mozaiks-session-"


def directory_name(shard: int) -> str:
    return f"{DIRECTORY_PREFIX}{shard}"


def session_prefix(shard: int) -> str:
    """Every session actor a shard starts is named with this prefix, so a restarted shard finds
    the live ones again (they are detached: a shard's death does not take them along)."""
    return f"{SESSION_PREFIX}{shard}-"


def shard_of(chat_id: str, shards: int) -> int:
    """The directory shard of a chat: a hash that is the same in every process and every Python
    (``hash()`` of a str is salted per process). The count is fixed for a runtime's life:
    changing it moves chats to other shards, so it needs a whole-runtime restart."""
    return zlib.crc32(chat_id.encode()) % shards
