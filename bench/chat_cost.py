"""What a chat costs: turn latency and session CPU at turn 5 and at turn 100 of a two-agent chat
(a handoff per user message), through the real OpenAI provider against a local zero-latency
OpenAI-protocol server and through the scripted provider; then the price of chats that are open
and waiting for their users (resident sessions, whole-system PSS, CPU), and the reply latency of
a chat that passivated while its socket stayed open against one that is resident.

Each figure is the median of RUNS runs, with the spread (min..max). Exits 1 on a missed target.
Usage: python -m bench.chat_cost [open_chats]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import Runtime, _descendants, cpu_between, cpu_seconds, report, runtime
from mozaiks.client import ChatConnection
from tests.fake_openai import FakeOpenAI, FakeResponse

RUNS = 3
TURNS = 105  # turn 5 = the median of turns 1..10, turn 100 = the median of turns 95..104
KEEP_ALIVE_S = 2.0
POOL_TRIM_WAIT_S = 70.0  # the pool ends processes beyond its size after POOL_KEEP_S (60 s)
IDLE_WINDOW_S = 10.0
OPEN_WAVE = 10


def _message(text: str, request_id: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "user.input.submit", "id": uuid.uuid4().hex, "text": text}
    if request_id:
        message["input_request_id"] = request_id
    return message


async def _turn(conn: ChatConnection, text: str, request_id: str | None) -> str:
    """Send one message; return when the second agent has answered and the next input request is open."""
    await conn.send(_message(text, request_id), wait_ack=False)
    while True:
        event = await conn.next_event(timeout=60)
        if event["type"] == "chat.input_request":
            return str(event["data"]["request_id"])


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process: the chat's own session actor, not the pool
    processes booting beside it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_chat(rt: Runtime, workflow: str) -> dict[str, float]:
    async with rt.broker(f"turner-{uuid.uuid4().hex[:6]}") as broker:
        session = await broker.create_session(workflow)
        conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None)
        actor = await rt.directory().peek(session.chat_id)
        assert actor is not None
        pid = await actor.pid()
        request_id: str | None = None
        latency, cpu = [], []
        for index in range(TURNS):
            if index == 1:
                first = await actor.status(session.chat_id)
            cpu_before, began = _process_cpu(pid), time.perf_counter()
            request_id = await _turn(conn, f"turn {index}", request_id)
            latency.append(time.perf_counter() - began)
            cpu.append(_process_cpu(pid) - cpu_before)
        last = await actor.status(session.chat_id)
        await conn.close()
    # Turn 0 pays one-time costs (the provider SDK's import, the first connection): reported apart.
    early, late = slice(1, 11), slice(TURNS - 10, TURNS)
    return {"turn0_ms": latency[0] * 1000, "turn0_cpu_ms": cpu[0] * 1000,
            "turn5_p50_ms": statistics.median(latency[early]) * 1000,
            "turn100_p50_ms": statistics.median(latency[late]) * 1000,
            # CPU ticks are 10 ms: the mean over ten turns, not the median of one-tick samples.
            "turn5_cpu_ms": statistics.mean(cpu[early]) * 1000, "turn100_cpu_ms": statistics.mean(cpu[late]) * 1000,
            # Round trips of a steady turn, as the session counted them (SessionStatus).
            "commits_per_turn": (last.commits - first.commits) / (TURNS - 1),
            "ray_calls_per_turn": (last.calls - first.calls) / (TURNS - 1)}


def _pss_mb() -> float:
    total = 0
    for pid in _descendants(os.getpid()):
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in lines if line.startswith("Pss:"))
    return total / 1024


async def _idle_cores() -> tuple[float, dict[str, float]]:
    """Cores used by the whole system over a quiet window, and by which component (millicores)."""
    before = cpu_seconds()
    await asyncio.sleep(IDLE_WINDOW_S)
    by_role = cpu_between(before, cpu_seconds(), IDLE_WINDOW_S)
    return sum(by_role.values()) / 1000, by_role  # per component: a process that ended does not count negative


async def _reply_ms(conn: ChatConnection, request_id: str) -> tuple[float, str]:
    began = time.perf_counter()
    request_id = await _turn(conn, "again", request_id)
    return (time.perf_counter() - began) * 1000, request_id


async def open_chats(rt: Runtime, count: int) -> dict[str, Any]:
    directory = rt.directory()
    await asyncio.sleep(5)
    base_pss, (base_cores, base_by_role) = _pss_mb(), await _idle_cores()
    chats: list[tuple[ChatConnection, str]] = []
    async with rt.broker("idler") as broker:
        async def one(index: int) -> tuple[ChatConnection, str]:
            session = await broker.create_session("bench_duo_openai")
            conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None, open_timeout_s=120)
            return conn, await _turn(conn, f"hello {index}", None)

        for wave in range(0, count, OPEN_WAVE):  # a few minutes for 100 chats on this machine, not ten
            chats += await asyncio.gather(*(one(i) for i in range(wave, min(count, wave + OPEN_WAVE))))
        await asyncio.sleep(KEEP_ALIVE_S + POOL_TRIM_WAIT_S)
        stats = await directory.stats()
        open_pss, (open_cores, open_by_role) = _pss_mb(), await _idle_cores()
        resident, passivated = [], []
        for _ in range(RUNS):
            for position, (conn, request_id) in enumerate(chats[:5]):
                ms, request_id = await _reply_ms(conn, request_id)  # passivated while connected
                passivated.append(ms)
                ms, request_id = await _reply_ms(conn, request_id)  # resident: it just ran a turn
                resident.append(ms)
                chats[position] = (conn, request_id)
            await asyncio.sleep(KEEP_ALIVE_S * 2)
        for conn, _ in chats:
            await conn.close()
    return {"open_chats": count, "resident_while_idle": stats.resident, "pool_while_idle": stats.pool,
            "pss_mb_0_chats": round(base_pss), "pss_mb_open_chats": round(open_pss),
            "pss_ratio": round(open_pss / base_pss, 2), "idle_cores_0_chats": round(base_cores, 3),
            "idle_cores_open_chats": round(open_cores, 3),
            "idle_millicores_by_component_0_chats": base_by_role,
            "idle_millicores_by_component_open_chats": open_by_role,
            "reply_p50_ms_resident": round(statistics.median(resident), 1),
            "reply_p50_ms_passivated": round(statistics.median(passivated), 1)}


def _spread(runs: list[dict[str, float]], key: str) -> list[float]:
    values = [r[key] for r in runs]
    return [round(statistics.median(values), 1), round(min(values), 1), round(max(values), 1)]


async def main(rt: Runtime, count: int) -> int:
    turns = {workflow: [await one_chat(rt, workflow) for _ in range(RUNS)]
             for workflow in ("bench_duo_openai", "bench_duo_scripted")}
    idle = await open_chats(rt, count)
    rows, results = [], {"idle": idle, "load_average_1m_after": round(os.getloadavg()[0], 2)}
    for key in ("turn0_ms", "turn0_cpu_ms", "turn5_p50_ms", "turn100_p50_ms", "turn5_cpu_ms", "turn100_cpu_ms",
                "commits_per_turn", "ray_calls_per_turn"):
        openai_, scripted = _spread(turns["bench_duo_openai"], key), _spread(turns["bench_duo_scripted"], key)
        rows.append([key, *openai_, *scripted])
        results[key] = {"openai": openai_, "scripted": scripted}
    o = {k: results[k]["openai"][0] for k in ("turn5_p50_ms", "turn100_p50_ms", "turn5_cpu_ms", "turn100_cpu_ms",
                                              "commits_per_turn", "ray_calls_per_turn")}
    targets = {
        "<= 4 durable commits per two-agent turn (openai)": o["commits_per_turn"] <= 4,
        "<= 3 Ray calls per two-agent turn (openai)": o["ray_calls_per_turn"] <= 3,
        "turn-100 session CPU <= 1.3x turn 5 (openai)": o["turn100_cpu_ms"] <= 1.3 * max(o["turn5_cpu_ms"], 1e-9),
        "turn-100 latency p50 <= 60 ms (openai)": o["turn100_p50_ms"] <= 60,
        f"{count} open chats: PSS <= 2x 0 chats": idle["pss_ratio"] <= 2.0,
        f"{count} open chats: CPU <= 0.05 cores above 0 chats":
            idle["idle_cores_open_chats"] - idle["idle_cores_0_chats"] <= 0.05,
        "no resident session after the keep-alive": idle["resident_while_idle"] == 0,
        "passivated reply p50 <= resident + 50 ms":
            idle["reply_p50_ms_passivated"] <= idle["reply_p50_ms_resident"] + 50,
    }
    results["targets"] = targets
    report("chat_cost", "Two-agent turn (submit -> next input request): median [min, max] of 3 chats",
           ["figure", "openai p50", "min", "max", "scripted p50", "min", "max"], rows, results,
           notes=[f"{k}: {v}" for k, v in idle.items()] + [f"{'met' if ok else 'MISSED'}: {name}"
                                                          for name, ok in targets.items()])
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    chats = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with FakeOpenAI(default=lambda body: FakeResponse(text=f"reply {len(body['messages'])}")) as server:
        with runtime(num_cpus=2, openai_base_url=server.base_url, openai_api_key="bench-key",
                     idle_timeout_s=KEEP_ALIVE_S) as rt:
            code = asyncio.run(main(rt, chats))
    sys.exit(code)
