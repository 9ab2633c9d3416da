"""What the lifecycle and crash tests share.

``RawSocket`` records every frame the server sends: the Python client de-duplicates by seq, and
these tests must see what the server really sent.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from actors.handles import DirectoryHandle
from mozaiks.client import Session

# The first reply of the ``slow_turns`` test workflow to a message.
FIRST_REPLY = ("Reply one to {}: Lorem ipsum dolor sit amet, consectetur adipiscing elit, "
               "sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.")


def directory() -> DirectoryHandle:
    return DirectoryHandle.lookup()


@asynccontextmanager
async def lifecycle_policy(**changes: Any) -> AsyncIterator[DirectoryHandle]:
    """Change the directory's lifecycle policy for one test (tests run one at a time)."""
    handle = directory()
    previous = await handle.configure(**changes)
    try:
        yield handle
    finally:
        await handle.configure(**previous.model_dump())


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def passivated(chat_id: str) -> None:
    """Wait until the directory no longer holds a session for the chat."""
    sessions = directory()

    async def gone() -> bool:
        return await sessions.peek(chat_id) is None

    await eventually(gone, what=f"chat {chat_id} to passivate")


class RawSocket:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._cursor = 0
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, session: Session, last_seq: int | None = 0) -> RawSocket:
        url = session.ws_url if last_seq is None else f"{session.ws_url}?last_seq={last_seq}"
        ws = await websockets.connect(url, subprotocols=["mozaiks.v1", f"bearer.{session.runtime_token}"],  # type: ignore[list-item]
                                      open_timeout=30, max_size=None)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                async with self._arrived:
                    self.frames.append(json.loads(raw))
                    self._arrived.notify_all()
        except websockets.ConnectionClosed:
            pass

    async def find(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """The first frame since the last find that matches (frames before it are passed over)."""
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                for index in range(self._cursor, len(self.frames)):
                    if match(self.frames[index]):
                        self._cursor = index + 1
                        return self.frames[index]
                self._cursor = len(self.frames)
                await self._arrived.wait()

    async def next(self, type_: str, agent: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        return await self.find(lambda f: f["type"] == type_ and (agent is None or f.get("agent") == agent), timeout)

    async def send(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a client message and return its ack's data."""
        message.setdefault("id", uuid.uuid4().hex)
        start = len(self.frames)
        await self.ws.send(json.dumps(message))
        async with asyncio.timeout(30), self._arrived:
            while True:
                for frame in self.frames[start:]:
                    if frame["type"] == "ack" and frame["data"]["id"] == message["id"]:
                        return dict(frame["data"])
                await self._arrived.wait()

    def durable_seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if f["seq"] is not None]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def user_message(text: str, message_id: str | None = None, input_request_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "user.input.submit", "text": text, "id": message_id or uuid.uuid4().hex}
    if input_request_id is not None:
        message["input_request_id"] = input_request_id
    return message
