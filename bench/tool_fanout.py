"""Tool fan-out: what one tool call costs beyond its work, and the speed-up of N parallel calls.

The scripted agent of ``bench_tools`` answers each user message with tool calls of ``nap``:
first 20 single calls that return at once (per-task overhead: ``chat.tool_call`` received →
``chat.tool_response`` received), then batches of 1, 2, 4, 8 and 16 calls that each sleep 0.5 s
(speed-up = N × 0.5 s / wall time of the batch). A first chat runs the whole script once so the
worker processes exist. Baseline: the same with bare Ray tasks submitted from this process.
"""

from __future__ import annotations

import asyncio
import time

import ray

from bench.harness import Runtime, latency_summary, report, runtime
from bench.turn_overhead import next_request, submit
from mozaiks.client import ChatConnection

SINGLES, FANOUT, NAP_S = 20, (1, 2, 4, 8, 16), 0.5


@ray.remote(num_cpus=0.1)
def _bare_nap(seconds: float) -> float:
    time.sleep(seconds)
    return time.time()


async def _tool_turn(conn: ChatConnection, request_id: str | None) -> tuple[float, float, str]:
    """(first tool_call → last tool_response seconds, same for the first response, next request)."""
    await conn.send(submit("go", request_id), wait_ack=False)
    calls = responses = 0
    first_call = first_response = last_response = 0.0
    while calls == 0 or responses < calls:
        event = await conn.next_event(timeout=60)
        if event["type"] == "chat.tool_call":
            calls += 1
            first_call = first_call or time.perf_counter()
        elif event["type"] == "chat.tool_response":
            responses += 1
            last_response = time.perf_counter()
            first_response = first_response or last_response
    return last_response - first_call, first_response - first_call, await next_request(conn)


async def _run_script(rt: Runtime) -> tuple[list[float], dict[int, float]]:
    async with rt.broker("fanout") as broker:
        session = await broker.create_session("bench_tools")
    conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None)
    request_id, singles, batches = None, [], {}
    for _ in range(SINGLES):
        _, first, request_id = await _tool_turn(conn, request_id)
        singles.append(first)
    for count in FANOUT:
        batches[count], _, request_id = await _tool_turn(conn, request_id)
    await conn.close()
    return singles, batches


async def _bare() -> tuple[list[float], dict[int, float]]:
    singles = []
    for _ in range(SINGLES):
        began = time.perf_counter()
        await _bare_nap.remote(0)
        singles.append(time.perf_counter() - began)
    batches = {}
    for count in FANOUT:
        began = time.perf_counter()
        await asyncio.gather(*(_bare_nap.remote(NAP_S) for _ in range(count)))
        batches[count] = time.perf_counter() - began
    return singles, batches


async def main(rt: Runtime) -> None:
    await _run_script(rt)  # warm-up: the worker processes for 16 parallel tools
    singles, batches = await _run_script(rt)
    bare_singles, bare_batches = await _bare()
    overhead, bare_overhead = latency_summary(singles), latency_summary(bare_singles)
    results = {"per_task_overhead": overhead, "bare_ray_task_round_trip": bare_overhead, "fanout": {}}
    rows = [["1 tool call returning at once, p50 ms", overhead["p50_ms"], bare_overhead["p50_ms"]]]
    for count in FANOUT:
        speedup, bare_speedup = count * NAP_S / batches[count], count * NAP_S / bare_batches[count]
        results["fanout"][str(count)] = {"wall_s": round(batches[count], 3), "speedup": round(speedup, 2),
                                         "bare_wall_s": round(bare_batches[count], 3),
                                         "bare_speedup": round(bare_speedup, 2)}
        rows.append([f"{count} x {NAP_S:g} s in parallel: speed-up", round(speedup, 2), round(bare_speedup, 2)])
    report("tool_fanout", "Tool fan-out: per-task overhead and parallel speed-up", ["case", "mozaiks", "bare Ray tasks"],
           rows, results, notes=["overhead: chat.tool_call received → chat.tool_response received, at the client",
                                 "bare Ray: a task submitted from the driver, awaited"])


if __name__ == "__main__":
    with runtime() as rt:
        asyncio.run(main(rt))
