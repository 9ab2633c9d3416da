"""Small helpers the end-to-end tests share: collecting events until one arrives."""

from __future__ import annotations

import asyncio
from typing import Any

from client import ChatConnection


async def collect_until(conn: ChatConnection, type_: str, timeout: float = 30,
                        into: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every event up to and including the next one of ``type_``."""
    seen = into if into is not None else []
    async with asyncio.timeout(timeout):
        while True:
            event = await conn.next_event(timeout=None)
            seen.append(event)
            if event["type"] == type_:
                return seen


def durable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["seq"] is not None]


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_]
