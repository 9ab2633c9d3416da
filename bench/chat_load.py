"""Chats under load, two agents per user message (a handoff between them, then the user's turn),
through the real OpenAI provider against a local zero-latency OpenAI-protocol server and through
the scripted provider (the second column):

1. steady arrivals: chats started STEADY_GAP_S apart, each timed from its POST /sessions through
   the socket's opening and its first message to the first agent text (delta or text);
2. a burst of BURST creates at once, with no waiting for the pool in between: how long each
   create took to be answered, and when the last chat's first agent text arrived;
3. a closed loop with 10 / 50 / 100 of those chats, each sending its next message as soon as
   the second agent has asked for it: turns/s and the turn's p50/p99.

Each figure is the median of RUNS runs with its spread (min, max); the load average is noted
beside each run. Exits 1 on a missed target.
Usage: python -m bench.chat_load [--quick]   (--quick: 3 steady chats a run, 30 burst chats, loops
of 10 and 30 chats, 5 s windows: for a loaded machine)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from typing import Any

from bench.harness import Runtime, percentile, report, runtime
from mozaiks.client import BrokerClient, ChatConnection
from tests.fake_openai import FakeOpenAI, FakeResponse

RUNS = 3
STEADY_CHATS, STEADY_GAP_S = 5, 2.0  # per run
BURST = 100
LOOPS = (10, 50, 100)
LOOP_WARMUP_S, LOOP_MEASURE_S = 2.0, 6.0
KEEP_ALIVE_S = 10.0  # the default idle_timeout_s
WORKFLOWS = {"openai": "bench_duo_openai", "scripted": "bench_duo_scripted"}
AGENT_TEXT = ("chat.text_delta", "chat.text")


def _message(text: str, request_id: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "user.input.submit", "id": uuid.uuid4().hex, "text": text}
    if request_id:
        message["input_request_id"] = request_id
    return message


async def _until_input_request(conn: ChatConnection, first_text: list[float] | None = None) -> str:
    """The next input request's id; ``first_text`` gets the time the first agent text arrived."""
    while True:
        event = await conn.next_event(timeout=120)
        if first_text is not None and not first_text and event.type in AGENT_TEXT and event.agent != "user":
            first_text.append(time.perf_counter())
        if event.type == "chat.input_request":
            return str(event.data["request_id"])


class Chat:
    def __init__(self, conn: ChatConnection, request_id: str) -> None:
        self.conn, self.request_id = conn, request_id

    async def turn(self, text: str) -> float:
        began = time.perf_counter()
        await self.conn.send(_message(text, self.request_id), wait_ack=False)
        self.request_id = await _until_input_request(self.conn)
        return time.perf_counter() - began


async def _start(broker: BrokerClient, workflow: str, began: float) -> tuple[Chat, dict[str, float]]:
    """Create a chat, open its socket, send its first message; times from ``began`` (seconds)."""
    session = await broker.create_session(workflow)
    created = time.perf_counter()
    conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None, open_timeout_s=120)
    opened = time.perf_counter()
    await conn.send(_message("hello", None), wait_ack=False)
    first: list[float] = []
    request_id = await _until_input_request(conn, first)
    return Chat(conn, request_id), {"create_s": created - began, "meta_s": opened - began,
                                    "first_text_s": first[0] - began}


async def steady(rt: Runtime, workflow: str) -> dict[str, float]:
    """One run: STEADY_CHATS chats started STEADY_GAP_S apart; p50 of HTTP -> first agent text."""
    times: list[float] = []
    async with rt.broker(f"steady-{uuid.uuid4().hex[:6]}") as broker:
        chats = []
        for _ in range(STEADY_CHATS):
            chat, timing = await _start(broker, workflow, time.perf_counter())
            chats.append(chat)
            times.append(timing["first_text_s"])
            await asyncio.sleep(STEADY_GAP_S)
        for chat in chats:
            await chat.conn.close()
    return {"first_text_p50_ms": statistics.median(times) * 1000, "first_text_max_ms": max(times) * 1000,
            "load_1m": os.getloadavg()[0]}


async def burst(rt: Runtime, workflow: str, count: int) -> tuple[list[Chat], dict[str, float]]:
    async with rt.broker(f"burst-{uuid.uuid4().hex[:6]}") as broker:
        began = time.perf_counter()
        outcomes = await asyncio.gather(*(_start(broker, workflow, began) for _ in range(count)),
                                        return_exceptions=True)
    # A create or first text that never came (the client gave up after its timeout) is a miss, not
    # the end of the benchmark: it counts as failed, and the other chats go on to the loops.
    started = [o for o in outcomes if not isinstance(o, BaseException)]
    for error in {type(o).__name__ for o in outcomes if isinstance(o, BaseException)}:
        print(f"burst of {count}: some chats failed to start: {error}", file=sys.stderr)
    timings = [t for _, t in started] or [{"create_s": float("nan"), "meta_s": float("nan"), "first_text_s": float("nan")}]
    return [c for c, _ in started], {"failed": float(count - len(started)),
        "create_p50_ms": statistics.median(t["create_s"] for t in timings) * 1000,
        "create_max_ms": max(t["create_s"] for t in timings) * 1000,
        "meta_max_s": max(t["meta_s"] for t in timings),
        "first_text_p50_s": statistics.median(t["first_text_s"] for t in timings),
        "first_text_max_s": max(t["first_text_s"] for t in timings), "load_1m": os.getloadavg()[0]}


async def closed_loop(chats: list[Chat]) -> dict[str, float]:
    """One window of every chat turning as fast as it is answered."""
    latencies: list[float] = []
    window_start = time.perf_counter() + LOOP_WARMUP_S
    window_end = window_start + LOOP_MEASURE_S

    async def loop(chat: Chat) -> None:
        index = 0
        while time.perf_counter() < window_end:
            took = await chat.turn(f"turn {index}")
            if window_start <= time.perf_counter() <= window_end:  # the turns that ended in the window
                latencies.append(took)
            index += 1

    await asyncio.gather(*(loop(chat) for chat in chats))
    if not latencies:  # not one turn ended in the window: slower than the window itself
        return {"turns_per_s": 0.0, "p50_ms": LOOP_MEASURE_S * 1000, "p99_ms": LOOP_MEASURE_S * 1000,
                "load_1m": os.getloadavg()[0]}
    return {"turns_per_s": len(latencies) / LOOP_MEASURE_S, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "load_1m": os.getloadavg()[0]}


def _spread(runs: list[dict[str, float]], key: str) -> list[float]:
    values = [r[key] for r in runs]
    return [round(statistics.median(values), 2), round(min(values), 2), round(max(values), 2)]


async def measure(rt: Runtime, workflow: str, burst_size: int, loops: tuple[int, ...]) -> dict[str, Any]:
    steady_runs = [await steady(rt, workflow) for _ in range(RUNS)]
    burst_runs, loop_runs = [], {n: [] for n in loops}
    for _ in range(RUNS):
        chats, figures = await burst(rt, workflow, burst_size)
        burst_runs.append(figures)
        for count in loops:
            loop_runs[count].append(await closed_loop(chats[:count]))
        for chat in chats:
            await chat.conn.close()
        await asyncio.sleep(KEEP_ALIVE_S + 2)  # the run's chats passivate before the next burst
    out: dict[str, Any] = {f"steady_{k}": _spread(steady_runs, k) for k in steady_runs[0]}
    out |= {f"burst_{k}": _spread(burst_runs, k) for k in burst_runs[0]}
    for count, runs in loop_runs.items():
        out |= {f"loop{count}_{k}": _spread(runs, k) for k in runs[0]}
    return out


async def main(rt: Runtime, burst_size: int, loops: tuple[int, ...]) -> int:
    results = {name: await measure(rt, workflow, burst_size, loops) for name, workflow in WORKFLOWS.items()}
    keys = list(results["openai"])
    rows = [[key, *results["openai"][key], *results["scripted"][key]] for key in keys]
    o = {k: v[0] for k, v in results["openai"].items()}
    floors = {10: 15, 50: 30, 100: 20}
    targets = {"steady arrivals: HTTP -> first agent text p50 <= 250 ms (openai)": o["steady_first_text_p50_ms"] <= 250,
               f"burst of {burst_size}: every chat started": o["burst_failed"] == 0,
               f"burst of {burst_size}: every create answered <= 2 s": o["burst_create_max_ms"] <= 2000,
               f"burst of {burst_size}: every first agent text within 30 s": o["burst_first_text_max_s"] <= 30}
    for count in loops:
        floor = floors.get(count, floors[min(floors, key=lambda n: abs(n - count))])
        targets[f"closed loop {count}: >= {floor} turns/s (openai)"] = o[f"loop{count}_turns_per_s"] >= floor
        targets[f"closed loop {count}: p99 <= 3x p50 (openai)"] = o[f"loop{count}_p99_ms"] <= 3 * o[f"loop{count}_p50_ms"]
    results["targets"] = targets
    report("chat_load", f"Two-agent chats under load: median [min, max] of {RUNS} runs",
           ["figure", "openai", "min", "max", "scripted", "min", "max"], rows, results,
           notes=[f"{'met' if ok else 'MISSED'}: {name}" for name, ok in targets.items()]
           + [f"steady: {STEADY_CHATS} chats {STEADY_GAP_S:.0f} s apart per run; loops: {LOOP_MEASURE_S:.0f} s windows"])
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if quick:
        STEADY_CHATS, LOOP_MEASURE_S = 3, 5.0
    with FakeOpenAI(default=lambda body: FakeResponse(text=f"reply {len(body['messages'])}")) as server:
        with runtime(num_cpus=2, openai_base_url=server.base_url, openai_api_key="bench-key") as rt:
            code = asyncio.run(main(rt, 30 if quick else BURST, (10, 30) if quick else LOOPS))
    sys.exit(code)
