"""Small helpers the end-to-end tests share: collecting events until one arrives, refused sockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from mozaiks.client import ChatConnection


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


async def refused_socket(url: str, subprotocols: list[str] | None = None, first_frame: dict[str, Any] | None = None,
                         headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int | None, list[dict[str, Any]]]:
    """A socket the server should close: its close code and every event it sent before that."""
    received: list[dict[str, Any]] = []
    async with websockets.connect(url, subprotocols=subprotocols,  # type: ignore[arg-type]
                                  additional_headers=headers) as ws:
        if first_frame is not None:
            await ws.send(json.dumps(first_frame))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    received.append(json.loads(await ws.recv()))
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, received
