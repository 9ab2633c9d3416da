"""One chat WebSocket (PROTOCOL §4) for Python programs: send messages, iterate events, resume."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import websockets
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection

from mozaiks.protocol.events import Event


class _WireFields:
    """Read a model like the wire's JSON object (``x["data"]``), for code written against the raw protocol."""

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:  # type: ignore[attr-defined]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in type(self).model_fields else default  # type: ignore[attr-defined]


class ChatEvent(_WireFields, Event):
    """One event as received: the envelope's fields, typed (``event.type``, ``event.seq``, …), and
    ``event.payload``, its data as the event's model (``ChatText``, ``ToolCall``, … from
    ``mozaiks.protocol.events``; None for a type newer than this client). It also reads like the
    wire's JSON object (``event["data"]``), for code written against the raw protocol."""


class MessageAck(_WireFields, BaseModel):
    """The server's answer to a message this client sent (``ack.status``, ``ack.reason``)."""

    id: Any = None
    status: str  # accepted | duplicate | rejected (a str: a newer server may say more)
    reason: str | None = None


class ChatClosed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code, self.reason = code, reason


class ChatConnection:
    """Events arrive de-duplicated by ``seq``; ``last_seq`` is what to resume from after a drop."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._events: asyncio.Queue[ChatEvent | ChatClosed] = asyncio.Queue()
        self._acks: dict[str, asyncio.Future[MessageAck]] = {}
        self.last_seq = 0
        self.meta: dict[str, Any] = {}
        self.closed: ChatClosed | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, ws_url: str, token: str, last_seq: int | None = 0, open_timeout_s: float = 30.0,
                   **connect_kwargs: Any) -> "ChatConnection":
        url = ws_url if last_seq is None else f"{ws_url}?last_seq={last_seq}"
        ws = await websockets.connect(url, subprotocols=["mozaiks.v1", f"bearer.{token}"],  # type: ignore[list-item]
                                      open_timeout=open_timeout_s, max_size=None, **connect_kwargs)
        conn = cls(ws)
        if last_seq:
            conn.last_seq = last_seq
        first = await conn.next_event(timeout=open_timeout_s)
        if first.type != "chat_meta":
            raise RuntimeError(f"expected chat_meta first, got {first.type}")
        conn.meta = first.data
        return conn

    async def __aenter__(self) -> "ChatConnection":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                event = ChatEvent.model_validate_json(raw)
                if event.type == "ack":
                    future = self._acks.pop(str(event.data.get("id")), None)
                    if future is not None and not future.done():
                        future.set_result(MessageAck.model_validate(event.data))
                    continue
                seq = event.seq
                if seq is not None:
                    if seq <= self.last_seq:
                        continue  # at-least-once delivery across reconnects: drop what we have
                    self.last_seq = seq
                await self._events.put(event)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = ChatClosed(self._ws.close_code, self._ws.close_reason or "")
            for future in self._acks.values():
                if not future.done():
                    future.set_exception(self.closed)
            await self._events.put(self.closed)

    async def next_event(self, timeout: float | None = 30.0) -> ChatEvent:
        item = await asyncio.wait_for(self._events.get(), timeout)
        if isinstance(item, ChatClosed):
            await self._events.put(item)  # every later call sees the close too
            raise item
        return item

    async def wait_for(self, type_: str, timeout: float = 30.0) -> ChatEvent:
        """The next event of that type (others before it are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next_event(timeout=None)
                if event.type == type_:
                    return event

    async def events(self, timeout: float | None = 60.0) -> AsyncIterator[ChatEvent]:
        while True:
            try:
                yield await self.next_event(timeout)
            except ChatClosed:
                return

    async def send(self, message: dict[str, Any], wait_ack: bool = True, timeout: float = 30.0) -> MessageAck | None:
        message.setdefault("id", uuid.uuid4().hex)
        future: asyncio.Future[MessageAck] | None = None
        if wait_ack:
            future = asyncio.get_running_loop().create_future()
            self._acks[message["id"]] = future
        await self._ws.send(json.dumps(message))
        return await asyncio.wait_for(future, timeout) if future is not None else None

    async def say(self, text: str, input_request_id: str | None = None, message_id: str | None = None) -> MessageAck:
        message: dict[str, Any] = {"type": "user.input.submit", "text": text}
        if input_request_id:
            message["input_request_id"] = input_request_id
        if message_id:
            message["id"] = message_id
        ack = await self.send(message)
        assert ack is not None
        return ack

    async def respond_ui(self, call_id: str, response: Any) -> MessageAck:
        ack = await self.send({"type": "ui_tool_response", "call_id": call_id, "response": response})
        assert ack is not None
        return ack

    async def cancel(self, mode: str = "immediate") -> MessageAck:
        ack = await self.send({"type": "chat.cancel", "mode": mode})
        assert ack is not None
        return ack

    async def resume(self, last_seq: int) -> None:
        """Ask for every durable event after ``last_seq`` again (they arrive before a resume boundary)."""
        self.last_seq = min(self.last_seq, last_seq)
        await self.send({"type": "client.resume", "last_seq": last_seq}, wait_ack=False)
