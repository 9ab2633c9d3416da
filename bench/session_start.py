"""Session start: POST /api/mozaiks/sessions → WebSocket open → ``chat_meta``.

- warm: a pooled, prepared actor is waiting (the pool is refilled before each start);
- burst: starts back to back, the pool refilling as it can;
- cold: no pool, every chat waits for a new actor process;
- baseline: opening a WebSocket to the raw Serve echo deployment and getting one message back.
"""

from __future__ import annotations

import asyncio
import time

import websockets

from bench.harness import Runtime, latency_summary, report, runtime
from mozaiks.client import BrokerClient, ChatConnection

WARM, BURST, COLD, ECHO = 40, 20, 12, 40
POOL = 2


async def _start(broker: BrokerClient) -> tuple[float, float]:
    """(total, of which the POST) in seconds."""
    began = time.perf_counter()
    session = await broker.create_session("bench_chat")
    posted = time.perf_counter()
    conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None)
    total = time.perf_counter() - began
    await conn.close()
    return total, posted - began


async def _pool_full(rt: Runtime, size: int) -> None:
    while (await rt.directory().stats()).pool < size:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # let the new process finish settling before we measure


async def _echo_open(url: str) -> float:
    began = time.perf_counter()
    async with websockets.connect(url) as ws:
        await ws.send("hello")
        await ws.recv()
        return time.perf_counter() - began


async def main(rt: Runtime) -> None:
    async with rt.broker("starter") as broker:
        await _start(broker)  # first request warms the ingress and the broker's store
        warm = []
        for _ in range(WARM):
            await _pool_full(rt, POOL)
            warm.append(await _start(broker))
        await _pool_full(rt, POOL)
        burst = [await _start(broker) for _ in range(BURST)]
        await rt.directory().configure(warm_pool_size=0, warm_pool_max=0)  # no pool at all, however fast chats arrive
        cold = [await _start(broker) for _ in range(COLD)]
    echo = [await _echo_open(rt.echo_url) for _ in range(ECHO)]
    stats = rt.directory().stats()
    results = {name: {**latency_summary([t for t, _ in samples]),
                      "post_p50_ms": latency_summary([p for _, p in samples])["p50_ms"]}
               for name, samples in (("warm", warm), ("burst", burst), ("cold", cold))}
    results["echo_baseline"] = latency_summary(echo)
    results["directory"] = (await stats).model_dump()
    rows = [[name, r["n"], r["p50_ms"], r["p99_ms"], r.get("post_p50_ms", "-")] for name, r in results.items()
            if name != "directory"]
    report("session_start", "Session start: POST /sessions → WebSocket open → chat_meta (ms)",
           ["case", "n", "p50", "p99", "POST p50"], rows, results,
           notes=[f"warm pool size {POOL}; target: warm p50 <= 150 ms",
                  "echo_baseline: open a WebSocket to a raw Serve echo deployment and get one message back"])


if __name__ == "__main__":
    with runtime(warm_pool_size=POOL) as rt:
        asyncio.run(main(rt))
