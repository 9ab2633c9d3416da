"""Turn overhead with a zero-latency scripted model: ``user.input.submit`` → the agent's ``chat.text``.

One chat, one turn at a time. Everything a turn costs besides the model: the proxy, the ingress,
the session actor, four durable commits (user message + ack, speaker, reply, next input request),
and delivery back through the long-poll. Baseline: the same message through the raw Serve echo.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import websockets

from bench.harness import Runtime, cpu_between, cpu_seconds, latency_summary, report, runtime
from mozaiks.client import ChatConnection

WARMUP, TURNS = 20, 300


async def agent_reply(conn: ChatConnection, agent: str) -> dict[str, Any]:
    while True:
        event = await conn.next_event(timeout=30)
        if event["type"] == "chat.text" and event["agent"] == agent:
            return event


async def next_request(conn: ChatConnection) -> str:
    return str((await conn.wait_for("chat.input_request"))["data"]["request_id"])


def submit(text: str, request_id: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "user.input.submit", "id": uuid.uuid4().hex, "text": text}
    if request_id:
        message["input_request_id"] = request_id
    return message


async def measure_turns(rt: Runtime) -> list[float]:
    async with rt.broker("turner") as broker:
        session = await broker.create_session("bench_chat")
        conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None)
        request_id: str | None = None
        samples = []
        for index in range(WARMUP + TURNS):
            began = time.perf_counter()
            await conn.send(submit(f"turn {index}", request_id), wait_ack=False)
            await agent_reply(conn, "Echo")
            samples.append(time.perf_counter() - began)
            request_id = await next_request(conn)
        await conn.close()
        return samples[WARMUP:]


async def measure_echo(rt: Runtime) -> list[float]:
    payload = json.dumps(submit("turn 0", uuid.uuid4().hex))
    samples = []
    async with websockets.connect(rt.echo_url) as ws:
        for index in range(WARMUP + TURNS):
            began = time.perf_counter()
            await ws.send(payload)
            json.loads(await ws.recv())
            if index >= WARMUP:
                samples.append(time.perf_counter() - began)
    return samples


async def main(rt: Runtime) -> None:
    cpu_start = cpu_seconds()
    echo_first = await measure_echo(rt)
    cpu_echo = cpu_seconds()
    turns = await measure_turns(rt)
    cpu_turns = cpu_seconds()
    echo_after = await measure_echo(rt)  # before and after: the machine is shared, so is its noise
    turn, echo = latency_summary(turns), latency_summary(echo_first + echo_after)
    ratio = round(turn["p50_ms"] / echo["p50_ms"], 2)
    results = {"turn": turn, "echo_baseline": echo, "p50_ratio_to_echo": ratio,
               "cpu_ms_per_turn": cpu_between(cpu_echo, cpu_turns, WARMUP + TURNS),
               "cpu_ms_per_echo": cpu_between(cpu_start, cpu_echo, WARMUP + TURNS)}
    report("turn_overhead", "Turn overhead: user.input.submit → first agent chat.text, zero-latency model (ms)",
           ["path", "n", "p50", "p99", "mean"],
           [["mozaiks turn", turn["n"], turn["p50_ms"], turn["p99_ms"], turn["mean_ms"]],
            ["raw Serve WS echo", echo["n"], echo["p50_ms"], echo["p99_ms"], echo["mean_ms"]]],
           results, notes=[f"p50 ratio to echo: {ratio}x; targets: p50 <= 20 ms and <= 3x echo p50",
                           f"CPU ms per turn: {results['cpu_ms_per_turn']}",
                           f"CPU ms per echo: {results['cpu_ms_per_echo']}"])


if __name__ == "__main__":
    with runtime() as rt:
        asyncio.run(main(rt))
