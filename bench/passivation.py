"""Passivate and re-activate 10,000 chats; every one must continue correctly.

With at most RESIDENT sessions per node and a short idle timeout:
1. the chats each have a first turn (creating them evicts the least recently used idle ones);
2. the directory passivates every chat still resident once it has been idle IDLE_S;
3. every one of them is re-activated by a new connection: ``chat_meta`` must show the open input
   request and the log position they were left at, and a second message must get the second
   reply. The first SERIAL of them one at a time (the latency of a re-activation alone), the rest
   CONCURRENCY at a time (how many the node re-activates per second).
On a shared machine 10,000 may not fit in the time budget (``--budget-s``, 600 by default): phase 1
then stops starting chats once it has used FIRST_SHARE of the budget, every chat started goes
through phases 2 and 3 all the same, and the JSON says how many were measured and what 10,000
would take at the measured rates (an extrapolation, marked as such).
Baseline: re-activation (connect → ``chat_meta`` of a passivated chat) beside the connect of a
chat whose session is still resident, both one at a time.

    python -m bench.passivation                      # SQLite, up to 10,000 chats in ~10 minutes
    python -m bench.passivation --chats 1000         # the short form
    python -m bench.passivation --postgresql         # the same on a throw-away local PostgreSQL

Target (non-zero exit when missed): every chat measured continued correctly.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness import Runtime, cpu_between, cpu_seconds, latency_summary, report, runtime
from bench.turn_overhead import agent_reply, next_request, submit
from mozaiks.client import BrokerClient, ChatClosed, ChatConnection, Session
from tests import pg_server

TARGET, CONCURRENCY, RESIDENT, IDLE_S, SERIAL = 10_000, 20, 50, 2.0, 50
FIRST_SHARE = 0.6  # first turns cost about twice a re-activation: this share of the budget is theirs
OPEN_S = 120.0  # connect → chat_meta bound: a cold session start on a machine at load 80+ can take a minute


async def _first_turn(broker: BrokerClient, index: int) -> dict[str, Any] | None:
    """The chat after its first turn; None if that turn did not finish (the server closed the
    socket, or an event took longer than 30 s on an overloaded machine): counted, not re-tried."""
    session = await broker.create_session("bench_chat")
    conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None, open_timeout_s=OPEN_S)
    try:
        await conn.send(submit(f"first {index}", None), wait_ack=False)
        await agent_reply(conn, "Echo")
        request_id = await next_request(conn)
    except (ChatClosed, TimeoutError):
        await conn.close()
        return None
    last_seq = conn.last_seq
    await conn.close()
    return {"session": session, "request_id": request_id, "last_seq": last_seq}


async def _second_turn(chat: dict[str, Any], index: int) -> tuple[float, bool, str | None]:
    """(connect → chat_meta seconds, whether the chat continued exactly where it was left, and
    if the server closed the socket instead, its close code and reason)."""
    session: Session = chat["session"]
    began = time.perf_counter()
    conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None, open_timeout_s=OPEN_S)
    opened = time.perf_counter() - began
    meta = conn.meta
    pending = meta.get("pending") or {}
    try:
        await conn.send(submit(f"second {index}", pending.get("request_id")), wait_ack=False)
        reply = await agent_reply(conn, "Echo")
    except (ChatClosed, TimeoutError) as closed:  # counted as not continued: the run goes on to measure the rest
        return opened, False, f"{session.chat_id}: {closed}"
    await conn.close()
    ok = (pending.get("request_id") == chat["request_id"] and meta["last_seq"] == chat["last_seq"]
          and reply["data"]["content"] == f"echo: second {index}" and reply["seq"] > chat["last_seq"])
    return opened, ok, None


async def _bounded(indexes: range, work: Callable[[int], Awaitable[Any]], until: float | None = None) -> list[Any]:
    """``work`` of each index, CONCURRENCY at a time, in index order; none started after ``until``
    (a ``time.perf_counter()`` value), so the result may be a prefix."""
    pending = iter(indexes)
    done: dict[int, Any] = {}

    async def worker() -> None:
        for index in pending:
            if until is not None and time.perf_counter() > until:
                return
            done[index] = await work(index)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return [done[i] for i in sorted(done)]


async def _resident_connects(broker: BrokerClient) -> list[float]:
    samples = []
    session = await broker.create_session("bench_chat")
    for _ in range(50):
        began = time.perf_counter()
        conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None, open_timeout_s=OPEN_S)
        samples.append(time.perf_counter() - began)
        await conn.close()
    return samples


async def _idle_cpu(directory: Any, window_s: float = 10.0) -> dict[str, Any]:
    """CPU the resident sessions use while nobody talks to them: a fixed window of silence."""
    resident = (await directory.stats()).resident
    before = cpu_seconds()
    await asyncio.sleep(window_s)
    spent = cpu_between(before, cpu_seconds(), window_s)  # ms of CPU per second = millicores
    return {"resident": resident, "window_s": window_s, "millicores": spent,
            "session_millicores_each": round(spent.get("session actors", 0.0) / max(resident, 1), 2)}


async def _stored_size(url: str, chats: int) -> dict[str, Any]:
    """How much the store holds per chat (each with two turns and their events), for the
    capacity model: PostgreSQL's database size, or the SQLite file with its WAL."""
    if url.startswith("postgresql://"):
        conn = await asyncpg.connect(url)
        try:
            size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
        finally:
            await conn.close()
    else:
        path = Path(url.removeprefix("sqlite:///"))
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return {"bytes": size, "chats": chats, "bytes_per_chat": round(size / chats)}


async def main(rt: Runtime, target: int, budget_s: float, store: str) -> bool:
    directory = rt.directory()
    await directory.configure(idle_timeout_s=IDLE_S, max_resident_sessions=RESIDENT)
    async with rt.broker("thousand") as broker:
        began = time.perf_counter()
        started = await _bounded(range(target), lambda i: _first_turn(broker, i), until=began + budget_s * FIRST_SHARE)
        first_s = time.perf_counter() - began
        chats = [chat for chat in started if chat is not None]
        first_failed, measured = len(started) - len(chats), len(chats)
        if measured <= SERIAL:
            raise SystemExit(f"only {measured} chats fitted in the budget: too few to measure (> {SERIAL} needed)")
        after_first = await directory.stats()
        began = time.perf_counter()
        while (await directory.stats()).resident:
            await asyncio.sleep(0.1)
        drained_s = time.perf_counter() - began
        serial = [await _second_turn(chats[i], i) for i in range(SERIAL)]
        began, cpu_before = time.perf_counter(), cpu_seconds()
        second = await _bounded(range(SERIAL, measured), lambda i: _second_turn(chats[i], i))
        second_s, cpu_after = time.perf_counter() - began, cpu_seconds()
        await directory.configure(idle_timeout_s=300.0)
        resident = await _resident_connects(broker)
        idle = await _idle_cpu(directory)
    stats = await directory.stats()
    stored = await _stored_size(rt.settings.resolved_store_url, measured)
    continued = sum(ok for _, ok, _ in serial + second)
    closed = [why for _, _, why in serial + second if why]
    reactivation, warm = latency_summary([t for t, _, _ in serial]), latency_summary(resident)
    loaded = latency_summary([t for t, _, _ in second])
    first_rate, second_rate = measured / first_s, (measured - SERIAL) / second_s
    # What the target count would take at the rates measured here (equal to the measured times
    # when every chat fitted in the budget).
    extrapolated = {"chats": target, "measured_fraction": round(measured / target, 3),
                    "first_turns_s": round(target / first_rate, 1),
                    "reactivate_and_turn_s": round((target - SERIAL) / second_rate, 1)}
    results = {"store": store, "target_chats": target, "chats": measured, "budget_s": budget_s,
               "resident_cap": RESIDENT, "idle_timeout_s": IDLE_S, "concurrency": CONCURRENCY,
               "first_turns_s": round(first_s, 1), "first_turns_per_s": round(first_rate, 1),
               "passivate_rest_s": round(drained_s, 1), "reactivate_and_turn_s": round(second_s, 1),
               "reactivations_per_s": round(second_rate, 1), "continued_correctly": continued,
               "closed_by_server": closed, "first_turns_failed": first_failed,
               "reactivation_connect": reactivation, "resident_connect_baseline": warm,
               "reactivation_connect_under_load": loaded, "extrapolated_to_target": extrapolated,
               "cpu_ms_per_reactivation_and_turn": cpu_between(cpu_before, cpu_after, measured - SERIAL),
               "idle_resident_cpu": idle, "stored": stored,
               "after_first_turns": after_first.model_dump(), "directory": stats.model_dump()}
    rows = [[f"{measured:,} first turns, passivating behind them", round(first_s, 1), f"{first_rate:.1f} chats/s"],
            [f"passivate the last resident ones (idle {IDLE_S:g} s)", round(drained_s, 1), "-"],
            [f"re-activate {measured - SERIAL:,} + one turn each, {CONCURRENCY} at a time", round(second_s, 1),
             f"{second_rate:.1f} chats/s"],
            ["re-activation connect → chat_meta p50 / p99 ms, alone", "-",
             f"{reactivation['p50_ms']} / {reactivation['p99_ms']}"],
            [f"... with {CONCURRENCY} at a time", "-", f"{loaded['p50_ms']} / {loaded['p99_ms']}"],
            ["resident chat connect → chat_meta p50 / p99 ms, alone", "-", f"{warm['p50_ms']} / {warm['p99_ms']}"],
            ["chats that continued correctly", "-", f"{continued:,} / {measured:,}"]]
    notes = [f"store: {store}; session processes started in all: {stats.count('processes_started')}; "
             f"passivations: {stats.count('passivations')}; evictions: {stats.count('evictions')}",
             f"CPU ms per re-activation + turn: {results['cpu_ms_per_reactivation_and_turn']}",
             f"idle: {idle['resident']} resident sessions use {idle['session_millicores_each']} millicores each"]
    if first_failed:
        notes.append(f"MISSED: {first_failed} chats did not finish their first turn (not re-activated)")
    if closed:
        notes.append(f"MISSED: {len(closed)} re-activated chats were closed by the server mid-turn: {closed[:3]}")
    if measured < target:
        notes.append(f"only {measured:,} of {target:,} fitted in the {budget_s:g} s budget: {target:,} would take "
                     f"~{extrapolated['first_turns_s']:.0f} s of first turns and ~{extrapolated['reactivate_and_turn_s']:.0f} s "
                     "of re-activations at these rates (extrapolated, not measured)")
    report(f"passivation{'_postgresql' if store == 'postgresql' else ''}",
           f"Passivate and re-activate {measured:,} chats ({RESIDENT} resident at most, {CONCURRENCY} clients at a time)",
           ["phase", "seconds", "result"], rows, results, notes=notes)
    return continued == measured and not first_failed


def _run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chats", type=int, default=TARGET, help=f"how many chats (default {TARGET:,})")
    parser.add_argument("--budget-s", type=float, default=600.0, help="time budget of the measured phases")
    parser.add_argument("--postgresql", action="store_true", help="on a throw-away local PostgreSQL server")
    args = parser.parse_args()
    with ExitStack() as stack:
        store_url = ""
        if args.postgresql:
            if reason := pg_server.unavailable_reason():
                print(f"cannot run on PostgreSQL: {reason}", file=sys.stderr)
                return 2
            store_url = stack.enter_context(pg_server.postgres_url())
        rt = stack.enter_context(runtime(warm_pool_size=4, store_url=store_url))
        ok = asyncio.run(main(rt, args.chats, args.budget_s, "postgresql" if store_url else "sqlite"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(_run())
