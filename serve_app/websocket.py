"""One WebSocket connection (PROTOCOL §4): authenticate, attach to the chat's session actor, replay,
then pump live events out and client messages in until either side goes away."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from actors.handles import Attached, DirectoryHandle, SessionHandle
from broker.errors import AuthError
from broker.runtime_token import RuntimeTokenClaims, RuntimeTokenVerifier
from mozaiks import logs, metrics
from mozaiks.errors import ChatNotFound, InvalidClientMessage, SessionGone
from mozaiks.protocol import client_messages as messages
from mozaiks.protocol.client_messages import MAX_SEQ, parse_client_message
from mozaiks.protocol.events import Ack, Ping, ResumeBoundary, envelope
from mozaiks.settings import Settings
from serve_app import close_codes

log = logging.getLogger("mozaiks.ws")

SUBPROTOCOL = "mozaiks.v1"
POLL_TIMEOUT_S = 20.0
# How long one wait for a passivated chat lasts before it is asked again (the directory keeps it
# as a parked future, so a long one costs nothing while the chat sleeps).
FOLLOW_WAIT_S = 300.0
MAX_RATE_VIOLATIONS = 20
CALL_ATTEMPTS = 4  # a call into the session, and its retries on a replaced session (SessionLink.call)

T = TypeVar("T")


class Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.capacity, self.tokens, self.stamp = rate, float(burst), float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class SessionLink:
    """The socket's current session actor, replaced through the directory when it dies."""

    def __init__(self, directory: DirectoryHandle, app_id: str, user_id: str, chat_id: str) -> None:
        self.directory, self.app_id, self.user_id, self.chat_id = directory, app_id, user_id, chat_id
        self.session: SessionHandle | None = None
        self._lock = asyncio.Lock()

    async def connect(self, dead: SessionHandle | None = None) -> SessionHandle | None:
        async with self._lock:
            if dead is not None and self.session is not None and self.session != dead:
                return self.session  # someone already replaced it
            self.session = await self.directory.session(self.app_id, self.user_id, self.chat_id, dead)
            return self.session

    async def current(self) -> SessionHandle:
        """The session to call now: the last one found, or the chat's again if that one died."""
        session = self.session if self.session is not None else await self.connect()
        if session is None:
            raise Close(close_codes.CHAT_NOT_FOUND, "chat not found")
        return session

    async def call(self, method: Callable[[SessionHandle], Awaitable[T]]) -> T:
        """Call the session about this chat; if it died, or no longer serves the chat (passivated,
        fenced), find the chat's actor through the directory and call again. More than once: on
        a loaded node the chat activated for this call can idle out its keep-alive and passivate
        again before the call reaches it (seen with a burst of 100 chats at load average 140)."""
        session = await self.current()
        for _ in range(CALL_ATTEMPTS - 1):
            try:
                return await method(session)
            except SessionGone:
                replaced = await self.connect(dead=session)
                if replaced is None:
                    raise Close(close_codes.CHAT_NOT_FOUND, "chat not found") from None
                session = replaced
        return await method(session)

    async def follow(self, gone: SessionHandle, crashed: bool) -> SessionHandle:
        """The chat's session after ``gone`` stopped serving it. A passivated chat is waited for,
        not activated: the socket stays open and idle until a message (from this socket or any
        other) or a wake-up activates the chat again."""
        if not crashed and self.session == gone:
            # It no longer serves the chat: the next message goes to the directory at once instead
            # of being refused by ``gone`` first (a Ray round trip on every passivated reply).
            self.session = None
        while True:
            current = self.session
            if current is not None and current != gone:
                return current  # this socket's own message activated it already
            try:
                session = await self.directory.follow(self.app_id, self.user_id, self.chat_id, gone, crashed,
                                                      FOLLOW_WAIT_S)
            except ChatNotFound:
                raise Close(close_codes.CHAT_NOT_FOUND, "chat not found") from None
            if session is not None:
                self.session = session
                return session


# (app_id, user_id, chat_id, after_seq) -> the chat's durable (seq, envelope) after it, from the store.
LogReader = Callable[[str, str, str, int], Awaitable[list[tuple[int, str]]]]


class SocketSession:
    def __init__(self, ws: WebSocket, settings: Settings, verifier: RuntimeTokenVerifier, directory: DirectoryHandle,
                 read_log: LogReader, workflow_name: str, app_id: str, chat_id: str, user_id: str) -> None:
        self.ws, self.settings, self.verifier, self.read_log = ws, settings, verifier, read_log
        self.path = {"workflow_name": workflow_name, "app_id": app_id, "chat_id": chat_id, "user_id": user_id}
        self.link = SessionLink(directory, app_id, user_id, chat_id)
        self.watcher_id = uuid.uuid4().hex
        self.send_lock = asyncio.Lock()
        self.delivered_seq = 0  # highest durable seq sent on this socket
        self.token_exp = 0.0
        self.bucket = TokenBucket(settings.ws_rate_per_s, settings.ws_rate_burst)
        self.violations = 0

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        logs.bind(chat_id=self.path["chat_id"], app_id=self.path["app_id"], workflow=self.path["workflow_name"])
        offered = [p.strip() for p in self.ws.scope.get("subprotocols", [])]
        await self.ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        metrics.ws_open.add(1)
        try:
            last_seq = await self._authenticate(offered)
            if await self.link.connect() is None:
                raise Close(close_codes.CHAT_NOT_FOUND, "chat not found")
            await self._serve(last_seq)
        except Close as close:
            await self._close(close.code, close.reason)
        except WebSocketDisconnect as gone:
            metrics.WS_CLOSES.inc(code=gone.code, by="client")
        except Exception:
            log.exception("websocket for chat %s failed", self.path["chat_id"])
            await self._close(close_codes.INTERNAL_ERROR, "internal error")
        finally:
            metrics.ws_open.add(-1)
            if self.link.session is not None:
                try:
                    await self.link.session.detach(self.link.chat_id, self.watcher_id)
                except Exception:  # the session may be gone already; nothing to detach from
                    pass

    async def _close(self, code: int, reason: str) -> None:
        metrics.WS_CLOSES.inc(code=code, by="server")
        try:
            await self.ws.close(code=code, reason=reason)
        except RuntimeError:
            pass  # already closed by the peer

    # ------------------------------------------------------------------ authentication
    async def _authenticate(self, offered: list[str]) -> int | None:
        origin = self.ws.headers.get("origin")
        allowed = self.settings.ws_allowed_origins
        # Browsers always send Origin, so this stops other sites' pages; programs send none, and
        # could forge any, so for them the runtime token is the whole check.
        # The runtime's own pages (/chat/) are same-origin: always allowed.
        if allowed and origin is not None and origin not in allowed and not _same_origin(origin, self.ws):
            raise Close(close_codes.FORBIDDEN, "origin not allowed")
        token = next((p.removeprefix("bearer.") for p in offered if p.startswith("bearer.")), None)
        last_seq: int | None = None
        if token is None and self.settings.ws_allow_query_token:
            token = self.ws.query_params.get("access_token")
        if token is None:
            try:
                message = await asyncio.wait_for(self.ws.receive(), self.settings.ws_auth_timeout_s)
            except TimeoutError:
                raise Close(close_codes.AUTH_TIMEOUT, "authentication timeout") from None
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("text") is None:
                raise Close(close_codes.MALFORMED, "the auth frame must be a text frame")
            auth = _auth_frame(message["text"])
            token, last_seq = auth.token, auth.last_seq
        await self._verify(token)
        raw_seq = self.ws.query_params.get("last_seq")
        if last_seq is None and raw_seq:
            # Bounded before int(): Python refuses (ValueError) to parse over 4300 digits.
            last_seq = _seq(int(raw_seq) if raw_seq.isdigit() and len(raw_seq) <= 20 else raw_seq)
        return last_seq

    async def _verify(self, token: str) -> RuntimeTokenClaims:
        try:
            claims = await self.verifier.verify(token)
        except AuthError:
            raise Close(close_codes.UNAUTHENTICATED, "invalid or expired token") from None
        actual = {"workflow_name": claims.workflow_name, "app_id": claims.app_id, "chat_id": claims.chat_id,
                  "user_id": claims.sub}
        if actual != self.path:
            raise Close(close_codes.FORBIDDEN, "token does not match this chat")
        self.token_exp = float(claims.exp)
        return claims

    # ------------------------------------------------------------------ serving
    async def _serve(self, last_seq: int | None) -> None:
        attached = await self._attach()
        await self._send(envelope(self.path["chat_id"], attached.meta))
        self.delivered_seq = attached.meta.last_seq if last_seq is None else last_seq
        if last_seq is not None:
            await self._replay(last_seq, attached.meta.last_seq)
        tasks = [asyncio.create_task(self._pump(attached.offset)), asyncio.create_task(self._read()),
                 asyncio.create_task(self._watch_expiry()), asyncio.create_task(self._heartbeat())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()

    async def _attach(self) -> Attached:
        return await self.link.call(lambda session: session.attach(self.link.chat_id, self.watcher_id))

    async def _read_events(self, after_seq: int, upto_seq: int | None) -> list[tuple[int, str]]:
        return await self.link.call(lambda session: session.read_events(self.link.chat_id, after_seq, upto_seq))

    async def _replay(self, after_seq: int, upto_seq: int | None) -> None:
        events = await self._read_events(after_seq, upto_seq)
        for seq, payload in events:
            await self._send(payload)
            self.delivered_seq = max(self.delivered_seq, seq)
        await self._send(envelope(self.path["chat_id"],
                                  ResumeBoundary(replayed=len(events), last_seq=self.delivered_seq)))

    async def _pump(self, offset: int) -> None:
        while True:
            session = await self.link.current()
            try:
                poll = await session.poll(self.link.chat_id, self.watcher_id, offset, POLL_TIMEOUT_S)
            except SessionGone as gone:
                offset = await self._recover(session, crashed=gone.crashed)
                continue
            offset = poll.offset
            if poll.gap:
                await self._catch_up()
            for seq, payload in poll.items:
                if seq is not None:
                    if seq <= self.delivered_seq:
                        continue
                    if seq > self.delivered_seq + 1:
                        await self._catch_up(upto=seq - 1)
                    self.delivered_seq = seq
                await self._send(payload)

    async def _recover(self, gone: SessionHandle, crashed: bool) -> int:
        """The session crashed, passivated or was replaced: follow the next one from its own
        offsets, and take what we missed from the log, so the client sees no gap and no duplicate.
        Returns the new session's event offset.

        A passivated chat is waited for as long as it sleeps. A crashed one must be back within
        ``ws_session_recovery_s``; if not (its re-activation is stuck behind a busy directory or a
        loaded node), the socket closes with SESSION_RESTARTING rather than going silent, and the
        client reconnects with its last seq."""
        if not crashed:
            # What the session committed after this socket's last poll went with it: a chat that
            # sleeps (or has completed) for good would otherwise keep it from the client forever.
            await self._deliver(await self.read_log(self.link.app_id, self.link.user_id, self.link.chat_id,
                                                    self.delivered_seq))
            await self.link.follow(gone, crashed=False)
            offset = (await self._attach()).offset
        else:
            try:
                async with asyncio.timeout(self.settings.ws_session_recovery_s):
                    await self.link.follow(gone, crashed=True)
                    offset = (await self._attach()).offset
            except TimeoutError:
                raise Close(close_codes.SESSION_RESTARTING, "session restarting; reconnect with last_seq") from None
        await self._catch_up()
        return offset

    async def _catch_up(self, upto: int | None = None) -> None:
        await self._deliver(await self._read_events(self.delivered_seq, upto))

    async def _deliver(self, events: list[tuple[int, str]]) -> None:
        for seq, payload in events:
            if seq > self.delivered_seq:
                await self._send(payload)
                self.delivered_seq = seq

    async def _read(self) -> None:
        limit = self.settings.ws_max_frame_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            raw = message.get("text") if message.get("text") is not None else (message.get("bytes") or b"").decode(
                "utf-8", "replace")
            if len(raw.encode("utf-8")) > limit:
                raise Close(close_codes.FRAME_TOO_LARGE, "frame too large")
            metrics.WS_MESSAGES.inc(direction="in")
            await self._handle(raw)

    async def _handle(self, raw: str) -> None:
        frame = _parse(raw)
        if frame is None:
            await self._ack(None, "rejected", "invalid_json")
            return
        try:
            message = parse_client_message(frame)
        except InvalidClientMessage as invalid:
            if await self._within_rate(frame):
                await self._ack(frame.get("id"), "rejected", invalid.reason)
            return
        if isinstance(message, messages.Ping):  # never rate limited: it is how a client tells the link is alive
            await self._send(envelope(self.path["chat_id"], Ping()))
            return
        if not await self._within_rate(frame):
            return
        match message:
            case messages.Auth(token=token):
                try:
                    await self._verify(token)
                except Close as close:
                    await self._ack(frame.get("id"), "rejected", close.reason)
                    return
                await self._ack(frame.get("id"), "accepted", None)
            case messages.ClientResume(last_seq=last_seq):
                await self._replay(last_seq, None)
            case messages.UserInputSubmit() | messages.UiToolResponse() | messages.ChatCancel():
                chat_message = message
                ack = await self.link.call(lambda session: session.submit(self.link.chat_id, chat_message))
                await self._send(envelope(self.path["chat_id"], ack))

    async def _within_rate(self, frame: dict[str, Any]) -> bool:
        """Take a token for this frame; acks a refusal, and closes the socket after too many."""
        if self.bucket.take():
            return True
        self.violations += 1
        if self.violations > MAX_RATE_VIOLATIONS:
            raise Close(close_codes.RATE_LIMITED, "rate limited")
        await self._ack(frame.get("id"), "rejected", "rate_limited")
        return False

    async def _heartbeat(self) -> None:
        """An unsolicited ping now and then, so a client can tell a quiet chat from a dead link."""
        while True:
            await asyncio.sleep(self.settings.ws_ping_interval_s)
            await self._send(envelope(self.path["chat_id"], Ping()))

    async def _watch_expiry(self) -> None:
        while True:
            remaining = self.token_exp - time.time()
            if remaining <= 0:
                raise Close(close_codes.UNAUTHENTICATED, "token expired")
            await asyncio.sleep(min(remaining, 30.0))

    async def _ack(self, message_id: Any, status: str, reason: str | None) -> None:
        await self._send(envelope(self.path["chat_id"], Ack(id=message_id, status=status, reason=reason)))

    async def _send(self, payload: str) -> None:
        async with self.send_lock:
            await self.ws.send_text(payload)
        metrics.WS_MESSAGES.inc(direction="out")


def _is_seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


def _seq(value: Any) -> int:
    if not _is_seq(value):
        raise Close(close_codes.MALFORMED, "invalid last_seq")
    return int(value)


def _auth_frame(raw: str) -> messages.Auth:
    try:
        return messages.Auth.model_validate(_parse(raw))
    except ValidationError as exc:
        if any(error["loc"][:1] == ("last_seq",) for error in exc.errors()):
            raise Close(close_codes.MALFORMED, "invalid last_seq") from None
        raise Close(close_codes.UNAUTHENTICATED, "expected an auth frame") from None


def _parse(raw: str) -> dict[str, Any] | None:
    try:
        frame = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return None
    return frame if isinstance(frame, dict) else None


def _same_origin(origin: str, ws: WebSocket) -> bool:
    host = ws.headers.get("host")
    return host is not None and origin in (f"http://{host}", f"https://{host}")
