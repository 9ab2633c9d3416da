"""A host app, as its author would write one, driving the installed mozaiks wheel through the hello
chat (scripts/wheel_smoke.sh runs it from a folder holding a ``settings.py`` and a ``store/`` of the
host's own, which Ray also puts first on every worker's path)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import mozaiks
from broker.keys import dev_token
from mozaiks.client import BrokerClient
from mozaiks.settings import Settings
from serve_app.launch import start_runtime, stop_runtime


async def hello_chat(url: str, token: str) -> str:
    async with BrokerClient(url, token) as broker:
        session = await broker.create_session("hello")
        conn = await broker.connect(session)
        request = await conn.wait_for("chat.input_request", timeout=120)
        await conn.say("Ada", input_request_id=request.data["request_id"])
        done = await conn.wait_for("chat.run_complete", timeout=120)
        await conn.close()
        return str(done.data["status"])


def main() -> int:
    data_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    print(f"mozaiks from {Path(mozaiks.__file__).parent}", flush=True)
    settings = Settings(mode="local", data_dir=data_dir, port=port, warm_pool_size=1).with_local_secrets()
    info = start_runtime(settings, num_cpus=2)
    try:
        status = asyncio.run(hello_chat(info.http_url, dev_token(settings, "smoke")))
    finally:
        stop_runtime()
    print(f"hello chat: {status}", flush=True)
    return 0 if status == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
