"""The widget's edges played from a script, for what the runtime cannot be made to send on demand
(an input request with an ``input_schema``, child-workflow events): the Session Broker's
``POST /api/mozaiks/sessions`` through Playwright routing, and a local WebSocket server speaking
PROTOCOL v1 that answers the auth frame with ``chat_meta``, the chat's log and the resume boundary,
then whatever the test pushes. Every broker request and client frame is recorded for the test.
The events endpoint answers 404, as a host's own broker may, so these chats replay over the socket.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import websockets

DIST = Path(__file__).resolve().parents[2] / "chatui" / "dist"
ORIGIN = "http://scripted.local"
HOST_JWT = "host-user-jwt"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>scripted host</title>
<script type="module" src="/chat/mozaiks-chat.js"></script></head>
<body style="margin:0;height:100vh;font-family:sans-serif">
<mozaiks-chat presentation="inline" heading="Scripted" style="height:100vh"></mozaiks-chat></body></html>"""


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class ScriptedChat:
    chat_id: str
    workflow: str
    phase: str = "idle"
    status: str = "active"
    log: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)  # the client's frames after auth
    auths: list[dict[str, Any]] = field(default_factory=list)
    sockets: set[Any] = field(default_factory=set)

    def event(self, type_: str, data: dict[str, Any], agent: str | None = None) -> dict[str, Any]:
        """Append a durable event to the log (the next seq) and return it."""
        event = {"type": type_, "seq": len(self.log) + 1, "chat_id": self.chat_id, "timestamp": now(),
                 "agent": agent, "data": data}
        self.log.append(event)
        return event

    async def push(self, type_: str, data: dict[str, Any], agent: str | None = None) -> None:
        """A live durable event: logged, and sent to every open socket of this chat."""
        payload = json.dumps(self.event(type_, data, agent))
        for ws in list(self.sockets):
            await ws.send(payload)

    async def next_frame(self, type_: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The first client frame of ``type_`` (waits for it by polling the recorded frames)."""
        async with asyncio.timeout(timeout_s):
            while True:
                for frame in self.received:
                    if frame.get("type") == type_:
                        return frame
                await asyncio.sleep(0.02)


class ScriptedRuntime:
    def __init__(self, *chats: ScriptedChat) -> None:
        self.chats = {chat.chat_id: chat for chat in chats}
        self.sessions: list[dict[str, Any]] = []  # each POST /api/mozaiks/sessions: body and auth header
        self.port = 0

    async def __aenter__(self) -> ScriptedRuntime:
        self.server = await websockets.serve(self._serve, "127.0.0.1", 0, subprotocols=["mozaiks.v1"])
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, ws: Any) -> None:
        chat = self.chats[ws.request.path.rsplit("/", 1)[-1]]
        auth = json.loads(await ws.recv())
        chat.auths.append(auth)
        if auth.get("token") != f"rt-{chat.chat_id}":
            await ws.close(4401, "bad token")
            return
        after = int(auth.get("last_seq") or 0)
        await ws.send(json.dumps({"type": "chat_meta", "seq": None, "chat_id": chat.chat_id, "data": {
            "chat_id": chat.chat_id, "workflow_name": chat.workflow, "status": chat.status, "phase": chat.phase,
            "last_seq": len(chat.log), "pending": None}}))
        replayed = [e for e in chat.log if e["seq"] > after]
        for event in replayed:
            await ws.send(json.dumps(event))
        await ws.send(json.dumps({"type": "chat.resume_boundary", "seq": None, "chat_id": chat.chat_id,
                                  "data": {"replayed": len(replayed), "last_seq": len(chat.log)}}))
        chat.sockets.add(ws)
        try:
            async for raw in ws:
                frame = json.loads(raw)
                chat.received.append(frame)
                await ws.send(json.dumps({"type": "ack", "seq": None, "chat_id": chat.chat_id,
                                          "data": {"id": frame.get("id"), "status": "accepted"}}))
        finally:
            chat.sockets.discard(ws)

    async def open(self, page: Any, chat: ScriptedChat) -> Any:
        """Load the host page on ``page`` and reopen ``chat`` in its widget; returns the element."""
        await page.route(f"{ORIGIN}/**", self._route)
        await page.goto("/")
        await page.evaluate("""([chatId, workflow, jwt]) => customElements.whenDefined('mozaiks-chat').then(() => {
          const el = document.querySelector('mozaiks-chat');
          el.getToken = () => jwt;
          return el.resume(chatId, workflow);
        })""", [chat.chat_id, chat.workflow, HOST_JWT])
        return page.locator("mozaiks-chat")

    async def _route(self, route: Any) -> None:
        request = route.request
        path = request.url.removeprefix(ORIGIN)
        if path == "/":
            await route.fulfill(status=200, content_type="text/html", body=PAGE)
        elif path.startswith("/chat/"):
            await route.fulfill(status=200, content_type="text/javascript", body=(DIST / path[6:]).read_bytes())
        elif path == "/api/mozaiks/sessions" and request.method == "POST":
            body = request.post_data_json
            self.sessions.append({"body": body, "authorization": request.headers.get("authorization")})
            chat = self.chats.get(body.get("chat_id") or "")
            if chat is None or chat.workflow != body.get("workflow_name"):
                await route.fulfill(status=404, content_type="application/json", body=json.dumps(
                    {"error": {"code": "chat_not_found", "message": "Chat not found"}}))
                return
            await route.fulfill(status=200, content_type="application/json", body=json.dumps({
                "chat_id": chat.chat_id, "workflow_name": chat.workflow, "status": "resumed",
                "ws_url": f"ws://127.0.0.1:{self.port}/ws/{chat.chat_id}", "runtime_token": f"rt-{chat.chat_id}",
                "expires_at": "2099-01-01T00:00:00Z"}))
        else:
            await route.fulfill(status=404, content_type="application/json",
                                body=json.dumps({"error": {"code": "not_found", "message": "Not found"}}))
