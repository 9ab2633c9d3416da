"""Hygiene: a full chat, a legacy client with its token in the URL and a forged token leave no
token and no message body in any log file of the runtime's Ray session (proxy, replicas, actors,
workers)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import ray

from mozaiks.client import BrokerClient
from tests.conftest import user_token
from tests.helpers import collect_until, refused_socket


def session_logs() -> str:
    # This process is the Ray driver; its node knows the session directory (not
    # /tmp/ray/session_latest, which any other Ray started on this machine moves).
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    return "\n".join(path.read_text(errors="replace") for path in sorted(logs.rglob("*")) if path.is_file())


async def test_no_token_or_message_body_reaches_the_logs(runtime: Any) -> None:
    user_jwt = user_token("log-user")
    name = f"Zq{uuid.uuid4().hex[:12]}"  # the user's message, unique to this run
    async with BrokerClient(runtime.http_url, user_jwt) as broker, \
            httpx.AsyncClient(base_url=runtime.http_url) as http:
        session = await broker.create_session("hello")
        # A legacy client puts its token in the query string, which request lines print.
        await refused_socket(f"{session.ws_url}?access_token={session.runtime_token}", first_frame={"type": "ping"})
        forged = user_jwt[:-4] + "AAAA"
        # Serve logs the request id it is given: the control that the lines we read are this test's.
        request_id = uuid.uuid4().hex
        refused = await http.get("/api/mozaiks/sessions", headers={"Authorization": f"Bearer {forged}",
                                                                   "X-Request-ID": request_id})
        assert refused.status_code == 401
        async with await broker.connect(session) as chat:
            request = await collect_until(chat, "chat.input_request")
            await chat.say(name, input_request_id=request[-1]["data"]["request_id"])
            await collect_until(chat, "chat.run_complete")
        refreshed = (await broker.refresh_token(session.chat_id))["runtime_token"]
    await asyncio.sleep(2)  # log lines reach their files asynchronously

    logs = session_logs()
    assert f"{request_id} -- GET /api/mozaiks/sessions 401" in logs
    secrets = {"user JWT": user_jwt, "forged JWT": forged, "runtime token": session.runtime_token,
               "refreshed runtime token": refreshed, "message body": name}
    for token_name in ("user JWT", "runtime token", "refreshed runtime token"):
        secrets[f"{token_name} signature"] = secrets[token_name].rsplit(".", 1)[1]
    leaked = [what for what, secret in secrets.items() if secret in logs]
    assert leaked == []
