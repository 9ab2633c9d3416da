"""The baseline every benchmark is measured against: a raw Serve WebSocket deployment that echoes.

Same proxy, same uvicorn, same client, same machine, same run — only the runtime (auth, session
actors, store, orchestration) is missing. A text ``burst:<n>:<size>`` makes it push ``n``
messages of ``size`` characters as fast as it can (the streaming baseline); anything else comes
straight back.
"""

from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from ray import serve

ECHO_PREFIX = "/echo"
_app = FastAPI()


@serve.deployment(name="EchoBaseline", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
@serve.ingress(_app)
class EchoBaseline:
    @_app.websocket("/ws")
    async def ws(self, ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                text = await ws.receive_text()
                if text.startswith("burst:"):
                    _, count, size = text.split(":")
                    payload = "x" * int(size)
                    for _ in range(int(count)):
                        await ws.send_text(payload)
                else:
                    await ws.send_text(text)
        except WebSocketDisconnect:
            pass


def echo_app() -> Any:
    return EchoBaseline.bind()
