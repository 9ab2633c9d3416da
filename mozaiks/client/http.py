"""The broker's HTTP API (PROTOCOL §2) for Python programs."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel

from mozaiks.client.connection import ChatConnection


class BrokerError(Exception):
    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body


class Session(BaseModel):
    chat_id: str
    workflow_name: str
    status: str
    ws_url: str
    runtime_token: str
    expires_at: str


class BrokerClient:
    """``async with BrokerClient(url, user_jwt) as broker: session = await broker.create_session("hello")``"""

    def __init__(self, base_url: str, user_token: str, timeout_s: float = 30.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                       headers={"Authorization": f"Bearer {user_token}"})

    async def __aenter__(self) -> "BrokerClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._http.request(method, path, **kwargs)
        body = response.json()
        if response.status_code >= 400:
            err = body.get("error", {})
            raise BrokerError(response.status_code, err.get("code", "error"), err.get("message", ""), body)
        return body

    async def create_session(self, workflow_name: str, chat_id: str | None = None,
                             context: dict[str, Any] | None = None, idempotency_key: str | None = None) -> Session:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = await self._call("POST", "/api/mozaiks/sessions", headers=headers,
                                json={"workflow_name": workflow_name, "chat_id": chat_id, "context": context})
        return Session.model_validate(body)

    async def list_sessions(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return await self._call("GET", "/api/mozaiks/sessions", params=params)

    async def list_workflows(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/api/mozaiks/workflows"))["workflows"]

    async def refresh_token(self, chat_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/api/mozaiks/sessions/{chat_id}/token")

    async def cancel(self, chat_id: str, mode: str = "immediate") -> dict[str, Any]:
        return await self._call("POST", f"/api/mozaiks/sessions/{chat_id}/cancel", json={"mode": mode})

    async def events(self, chat_id: str, after_seq: int = 0, limit: int = 200) -> dict[str, Any]:
        return await self._call("GET", f"/api/mozaiks/sessions/{chat_id}/events",
                                params={"after_seq": after_seq, "limit": limit})

    async def connect(self, session: Session, last_seq: int | None = 0) -> ChatConnection:
        """Open the chat's WebSocket. ``last_seq=0`` replays the whole log; ``None`` only live events."""
        return await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=last_seq)
