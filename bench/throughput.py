"""Throughput: 10, 50 and 100 chats in a closed loop, each answering its agent as soon as it asks.

A turn is ``user.input.submit`` → the agent's ``chat.text`` (zero-latency scripted model); the
next turn starts when the agent's ``chat.input_request`` arrives. Baseline: the same number of
sockets in the same closed loop against the raw Serve echo deployment.
"""

from __future__ import annotations

import asyncio
import json
import time

import websockets

from bench.harness import Runtime, cpu_between, cpu_seconds, latency_summary, report, runtime
from bench.turn_overhead import agent_reply, next_request, submit
from mozaiks.client import ChatConnection

CONCURRENCY = (10, 50, 100)
WARMUP_S, MEASURE_S = 3.0, 15.0


async def _chat_loop(conn: ChatConnection, request_id: str, window: tuple[float, float],
                     latencies: list[float]) -> str:
    """Turns until the window closes; returns the input request the chat ends waiting on."""
    index = 0
    while time.perf_counter() < window[1]:
        began = time.perf_counter()
        await conn.send(submit(f"turn {index}", request_id), wait_ack=False)
        await agent_reply(conn, "Echo")
        if began >= window[0]:
            latencies.append(time.perf_counter() - began)
        request_id = await next_request(conn)
        index += 1
    return request_id


async def _echo_loop(url: str, window: tuple[float, float], latencies: list[float]) -> None:
    payload = json.dumps(submit("turn", "req"))
    async with websockets.connect(url) as ws:
        while time.perf_counter() < window[1]:
            began = time.perf_counter()
            await ws.send(payload)
            json.loads(await ws.recv())
            if began >= window[0]:
                latencies.append(time.perf_counter() - began)


def _window() -> tuple[float, float]:
    start = time.perf_counter() + WARMUP_S
    return start, start + MEASURE_S


async def _open_chats(rt: Runtime, count: int) -> list[tuple[ChatConnection, str]]:
    """Chats that have had their first turn: each waits with an open input request."""
    async with rt.broker("loop") as broker:
        async def one() -> tuple[ChatConnection, str]:
            session = await broker.create_session("bench_chat")
            conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None)
            await conn.send(submit("hello", None), wait_ack=False)
            return conn, await next_request(conn)

        chats = []
        for start in range(0, count, 10):  # in waves: each new chat may need a new actor process
            chats += await asyncio.gather(*(one() for _ in range(start, min(count, start + 10))))
        return chats


async def main(rt: Runtime) -> None:
    chats = await _open_chats(rt, max(CONCURRENCY))
    results, rows = {}, []
    for count in CONCURRENCY:
        latencies: list[float] = []
        window = _window()
        loops = asyncio.gather(*(_chat_loop(conn, request, window, latencies) for conn, request in chats[:count]))
        await asyncio.sleep(WARMUP_S)
        cpu_before = cpu_seconds()
        await asyncio.sleep(MEASURE_S)
        cpu_after = cpu_seconds()
        requests = await loops
        chats[:count] = [(conn, request) for (conn, _), request in zip(chats, requests, strict=False)]
        echo: list[float] = []
        echo_window = _window()
        await asyncio.gather(*(_echo_loop(rt.echo_url, echo_window, echo) for _ in range(count)))
        turn, base = latency_summary(latencies), latency_summary(echo)
        results[str(count)] = {"turns_per_s": round(len(latencies) / MEASURE_S, 1), "turn": turn,
                               "echo_msgs_per_s": round(len(echo) / MEASURE_S, 1), "echo": base,
                               "cpu_ms_per_turn": cpu_between(cpu_before, cpu_after, max(1, len(latencies)))}
        rows.append([count, results[str(count)]["turns_per_s"], turn["p50_ms"], turn["p99_ms"],
                     results[str(count)]["echo_msgs_per_s"], base["p50_ms"], base["p99_ms"]])
    for conn, _ in chats:
        await conn.close()
    report("throughput", f"Closed-loop throughput, zero-latency model ({MEASURE_S:.0f} s per row)",
           ["chats", "turns/s", "turn p50 ms", "turn p99 ms", "echo msgs/s", "echo p50 ms", "echo p99 ms"],
           rows, results, notes=["target: >= 50 turns/s with 100 concurrent chats",
                                 (f"CPU ms per turn at {CONCURRENCY[-1]} chats: "
                                  f"{results[str(CONCURRENCY[-1])]['cpu_ms_per_turn']}")])


if __name__ == "__main__":
    with runtime(warm_pool_size=4) as rt:
        asyncio.run(main(rt))
