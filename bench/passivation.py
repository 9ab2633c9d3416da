"""Passivate and re-activate 1,000 chats; every one must continue correctly.

With at most RESIDENT sessions per node and a short idle timeout:
1. 1,000 chats each have a first turn (creating them evicts the least recently used idle ones);
2. the directory passivates every chat still resident once it has been idle IDLE_S;
3. all 1,000 are re-activated by a new connection: ``chat_meta`` must show the open input request
   and the log position they were left at, and a second message must get the second reply. The
   first SERIAL of them one at a time (the latency of a re-activation alone), the rest
   CONCURRENCY at a time (how many the node re-activates per second).
Baseline: re-activation (connect → ``chat_meta`` of a passivated chat) beside the connect of a
chat whose session is still resident, both one at a time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import Runtime, latency_summary, report, runtime
from bench.turn_overhead import agent_reply, next_request, submit
from mozaiks.client import BrokerClient, ChatConnection, Session

CHATS, CONCURRENCY, RESIDENT, IDLE_S, SERIAL = 1000, 20, 50, 2.0, 50


async def _first_turn(broker: BrokerClient, index: int) -> dict[str, Any]:
    session = await broker.create_session("bench_chat")
    conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None)
    await conn.send(submit(f"first {index}", None), wait_ack=False)
    await agent_reply(conn, "Echo")
    request_id = await next_request(conn)
    last_seq = conn.last_seq
    await conn.close()
    return {"session": session, "request_id": request_id, "last_seq": last_seq}


async def _second_turn(chat: dict[str, Any], index: int) -> tuple[float, bool]:
    """(connect → chat_meta seconds, whether the chat continued exactly where it was left)."""
    session: Session = chat["session"]
    began = time.perf_counter()
    conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None)
    opened = time.perf_counter() - began
    meta = conn.meta
    pending = meta.get("pending") or {}
    await conn.send(submit(f"second {index}", pending.get("request_id")), wait_ack=False)
    reply = await agent_reply(conn, "Echo")
    await conn.close()
    ok = (pending.get("request_id") == chat["request_id"] and meta["last_seq"] == chat["last_seq"]
          and reply["data"]["content"] == f"echo: second {index}" and reply["seq"] > chat["last_seq"])
    return opened, ok


async def _bounded(indexes: range, work: Any) -> list[Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> Any:
        async with gate:
            return await work(index)

    return await asyncio.gather(*(one(i) for i in indexes))


async def _resident_connects(broker: BrokerClient) -> list[float]:
    samples = []
    session = await broker.create_session("bench_chat")
    for _ in range(50):
        began = time.perf_counter()
        conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None)
        samples.append(time.perf_counter() - began)
        await conn.close()
    return samples


async def main(rt: Runtime) -> None:
    directory = rt.directory()
    await directory.configure(idle_timeout_s=IDLE_S, max_resident_sessions=RESIDENT)
    async with rt.broker("thousand") as broker:
        began = time.perf_counter()
        chats = await _bounded(range(CHATS), lambda i: _first_turn(broker, i))
        first_s = time.perf_counter() - began
        after_first = await directory.stats()
        began = time.perf_counter()
        while (await directory.stats()).resident:
            await asyncio.sleep(0.1)
        drained_s = time.perf_counter() - began
        serial = [await _second_turn(chats[i], i) for i in range(SERIAL)]
        began = time.perf_counter()
        second = await _bounded(range(SERIAL, CHATS), lambda i: _second_turn(chats[i], i))
        second_s = time.perf_counter() - began
        await directory.configure(idle_timeout_s=300.0)
        resident = await _resident_connects(broker)
    stats = await directory.stats()
    continued = sum(ok for _, ok in serial + second)
    reactivation, warm = latency_summary([t for t, _ in serial]), latency_summary(resident)
    loaded = latency_summary([t for t, _ in second])
    results = {"chats": CHATS, "resident_cap": RESIDENT, "idle_timeout_s": IDLE_S, "concurrency": CONCURRENCY,
               "first_turns_s": round(first_s, 1), "passivate_rest_s": round(drained_s, 1),
               "reactivate_and_turn_s": round(second_s, 1), "continued_correctly": continued,
               "reactivation_connect": reactivation, "resident_connect_baseline": warm,
               "reactivation_connect_under_load": loaded,
               "after_first_turns": after_first.model_dump(), "directory": stats.model_dump()}
    rows = [[f"{CHATS:,} first turns, passivating behind them", round(first_s, 1), f"{CHATS / first_s:.0f} chats/s"],
            [f"passivate the last resident ones (idle {IDLE_S:g} s)", round(drained_s, 1), "-"],
            [f"re-activate {CHATS - SERIAL} + one turn each, {CONCURRENCY} at a time", round(second_s, 1),
             f"{(CHATS - SERIAL) / second_s:.0f} chats/s"],
            ["re-activation connect → chat_meta p50 / p99 ms, alone", "-",
             f"{reactivation['p50_ms']} / {reactivation['p99_ms']}"],
            [f"... with {CONCURRENCY} at a time", "-", f"{loaded['p50_ms']} / {loaded['p99_ms']}"],
            ["resident chat connect → chat_meta p50 / p99 ms, alone", "-", f"{warm['p50_ms']} / {warm['p99_ms']}"],
            ["chats that continued correctly", "-", f"{continued} / {CHATS}"]]
    report("passivation", f"Passivate and re-activate {CHATS:,} chats ({RESIDENT} resident at most, "
                          f"{CONCURRENCY} clients at a time)", ["phase", "seconds", "result"], rows, results,
           notes=[(f"session processes started in all: {stats.count('processes_started')}; "
                   f"passivations: {stats.count('passivations')}; evictions: {stats.count('evictions')}")])


if __name__ == "__main__":
    with runtime(warm_pool_size=4) as rt:
        asyncio.run(main(rt))
