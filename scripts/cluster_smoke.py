"""Smoke-test a deployed runtime: run `hello` chats end to end through the broker and the WebSocket.

    python scripts/cluster_smoke.py http://HEAD:8000 --chats 4

The user JWT comes from $MOZAIKS_SMOKE_TOKEN, or is minted (HS256, five minutes) from
$MOZAIKS_USER_JWT_SECRET when the runtime verifies user JWTs with that secret. Prints each chat's
outcome and the node its greeting tool ran on, then one JSON line summing it up; exits 1 unless
every chat completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import jwt

from mozaiks.client import BrokerClient


def user_token(user: str, app_id: str | None) -> str:
    if token := os.environ.get("MOZAIKS_SMOKE_TOKEN"):
        return token
    secret = os.environ.get("MOZAIKS_USER_JWT_SECRET")
    if not secret:
        sys.exit("set MOZAIKS_SMOKE_TOKEN (a user JWT) or MOZAIKS_USER_JWT_SECRET")
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 300, **({"app_id": app_id} if app_id else {})}
    return jwt.encode(claims, secret, algorithm="HS256")


async def hello_chat(broker: BrokerClient, name: str) -> dict[str, Any]:
    session = await broker.create_session("hello")
    tool_node = None
    async with await broker.connect(session) as chat:
        async for event in chat.events(timeout=60):
            if event["type"] == "chat.input_request":
                await chat.say(name, input_request_id=event["data"]["request_id"])
            elif event["type"] == "chat.tool_response":
                tool_node = (event["data"].get("result") or {}).get("node_id")
            elif event["type"] == "chat.run_complete":
                return {"chat_id": session.chat_id, "status": event["data"]["status"], "tool_node": tool_node,
                        "events": chat.last_seq}
    return {"chat_id": session.chat_id, "status": "disconnected", "tool_node": tool_node, "events": chat.last_seq}


async def main(url: str, chats: int, user: str, app_id: str | None) -> int:
    started = time.monotonic()
    async with BrokerClient(url, user_token(user, app_id)) as broker:
        results = await asyncio.gather(*(hello_chat(broker, f"smoke{i}") for i in range(chats)))
    for r in results:
        print(f"chat {r['chat_id']}: {r['status']} after {r['events']} events; greeting tool ran on node "
              f"{(r['tool_node'] or '?')[:12]}")
    completed = sum(r["status"] == "completed" for r in results)
    print(json.dumps({"chats": chats, "completed": completed, "tool_nodes": sorted({r["tool_node"] for r in results
                                                                                    if r["tool_node"]}),
                      "seconds": round(time.monotonic() - started, 2)}))
    return 0 if completed == chats else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the runtime's HTTP address, e.g. http://127.0.0.1:8000")
    parser.add_argument("--chats", type=int, default=1)
    parser.add_argument("--user", default="smoke-test")
    parser.add_argument("--app", default=None, help="app_id claim (default: the runtime's default app)")
    options = parser.parse_args()
    sys.exit(asyncio.run(main(options.url, options.chats, options.user, options.app)))
