"""Does permessage-deflate pay for itself on the runtime's WebSocket frames?

The same two-agent chats (real OpenAI provider against the local zero-latency server, deltas
streamed) run with sockets that offer permessage-deflate and with sockets that do not; the Serve
proxy's CPU per turn is compared (median of RUNS alternating runs, with spread). The frames the
clients received are then deflated again offline with the parameters uvicorn negotiates
(websockets' PerMessageDeflate, 12-bit windows, memLevel 5, context takeover), which gives the
bytes saved per frame and the deflate CPU per frame without the machine's load in it.

Usage: python -m bench.ws_deflate
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from typing import Any

import websockets
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from bench.harness import Runtime, cpu_seconds, report, runtime
from tests.fake_openai import FakeOpenAI, FakeResponse

RUNS = 3
CHATS = 10
TURNS = 20
WORKFLOW = "bench_duo_openai"


class Socket:
    """A chat's socket that keeps every frame as sent (the Python client parses them away)."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[str] = []
        self.request_id: str | None = None

    async def turn(self, text: str) -> None:
        message: dict[str, Any] = {"type": "user.input.submit", "id": uuid.uuid4().hex, "text": text}
        if self.request_id:
            message["input_request_id"] = self.request_id
        await self.ws.send(json.dumps(message))
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), 60)
            assert isinstance(raw, str)
            self.frames.append(raw)
            event = json.loads(raw)
            if event["type"] == "chat.input_request":
                self.request_id = event["data"]["request_id"]
                return


async def _open(rt: Runtime, broker: Any, compression: str | None) -> Socket:
    session = await broker.create_session(WORKFLOW)
    ws = await websockets.connect(session.ws_url, subprotocols=["mozaiks.v1", f"bearer.{session.runtime_token}"],  # type: ignore[list-item]
                                  compression=compression, max_size=None, open_timeout=60)
    negotiated = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
    assert bool(negotiated) == (compression is not None), negotiated
    socket = Socket(ws)
    socket.frames.append(str(await ws.recv()))  # chat_meta
    return socket


async def one_run(rt: Runtime, compression: str | None) -> tuple[dict[str, float], list[list[str]]]:
    async with rt.broker(f"deflate-{uuid.uuid4().hex[:6]}") as broker:
        sockets = [await _open(rt, broker, compression) for _ in range(CHATS)]
        await asyncio.gather(*(s.turn("warm up") for s in sockets))  # the runs' starts are not measured
        for s in sockets:
            s.frames.clear()
        before, began = cpu_seconds(), time.perf_counter()
        for index in range(TURNS):
            await asyncio.gather(*(s.turn(f"turn {index}") for s in sockets))
        elapsed, after = time.perf_counter() - began, cpu_seconds()
        for s in sockets:
            await s.ws.close()
    turns = CHATS * TURNS
    frames = sum(len(s.frames) for s in sockets) + turns  # + the message each turn sends
    proxy_ms = (after.get("Serve proxy", 0.0) - before.get("Serve proxy", 0.0)) * 1000
    return {"proxy_cpu_ms_per_turn": proxy_ms / turns, "proxy_cpu_us_per_frame": proxy_ms * 1000 / frames,
            "frames_per_turn": frames / turns, "turns_per_s": turns / elapsed}, [s.frames for s in sockets]


def deflated(connections: list[list[str]]) -> dict[str, float]:
    """Bytes and CPU of deflating these frames the way the proxy does, one compressor per socket."""
    raw = packed = 0
    spent = 0.0
    count = 0
    for frames in connections:
        extension = PerMessageDeflate(False, False, 12, 12, {"memLevel": 5})
        for text in frames:
            data = text.encode()
            began = time.perf_counter()
            frame = extension.encode(Frame(Opcode.TEXT, data))
            spent += time.perf_counter() - began
            raw, packed, count = raw + len(data), packed + len(frame.data), count + 1
    return {"frames": count, "bytes_per_frame_plain": round(raw / count, 1),
            "bytes_per_frame_deflated": round(packed / count, 1), "saved_fraction": round(1 - packed / raw, 3),
            "deflate_us_per_frame": round(spent * 1e6 / count, 1)}


def _spread(values: list[float]) -> list[float]:
    return [round(statistics.median(values), 2), round(min(values), 2), round(max(values), 2)]


async def main(rt: Runtime) -> int:
    runs: dict[str, list[dict[str, float]]] = {"deflate": [], "none": []}
    frames: list[list[str]] = []
    loads = []
    for _ in range(RUNS):  # alternating, so a change of the machine's load hits both alike
        for mode in ("deflate", "none"):
            figures, received = await one_run(rt, "deflate" if mode == "deflate" else None)
            runs[mode].append(figures)
            frames += received if mode == "deflate" else []
            loads.append(os.getloadavg()[0])
    offline = deflated(frames)
    rows, results = [], {"offline": offline, "load_average_1m": _spread(loads)}
    for key in ("proxy_cpu_ms_per_turn", "proxy_cpu_us_per_frame", "frames_per_turn", "turns_per_s"):
        with_, without = _spread([r[key] for r in runs["deflate"]]), _spread([r[key] for r in runs["none"]])
        rows.append([key, *with_, *without])
        results[key] = {"deflate": with_, "none": without}
    saved_us = results["proxy_cpu_ms_per_turn"]["deflate"][0] - results["proxy_cpu_ms_per_turn"]["none"][0]
    results["proxy_cpu_saved_ms_per_turn_without_deflate"] = round(saved_us, 3)
    report("ws_deflate", f"Serve proxy cost of permessage-deflate ({CHATS} chats x {TURNS} two-agent turns, "
           f"median [min, max] of {RUNS} runs)",
           ["figure", "deflate", "min", "max", "no deflate", "min", "max"], rows, results,
           notes=[f"{k}: {v}" for k, v in offline.items()] + [f"load average 1m: {results['load_average_1m']}"])
    return 0


if __name__ == "__main__":
    with FakeOpenAI(default=lambda body: FakeResponse(text=f"reply {len(body['messages'])}")) as server:
        with runtime(num_cpus=2, openai_base_url=server.base_url, openai_api_key="bench-key") as rt:
            code = asyncio.run(main(rt))
    sys.exit(code)
