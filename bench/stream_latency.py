"""Streaming as a user sees it: time to the first delta, and how far each later word lags behind
the model that produced it.

The model streams WORDS five-character words, one every DELAY_S (the real OpenAI provider against
the local OpenAI-protocol server, and the scripted provider paced the same way as the second
column). Time to first delta: message sent -> first ``chat.text_delta``. Word lag: the arrival of
word k minus (message sent + k * DELAY_S), i.e. how far behind an ideal model started at the
send each word reaches the client (the session coalesces deltas for up to 30 ms). With one chat
and with CONCURRENT chats streaming at once; median of RUNS runs with spread. Exits 1 on a missed
target.
Usage: python -m bench.stream_latency
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
from mozaiks.client import ChatConnection
from tests.fake_openai import FakeOpenAI, FakeResponse

RUNS, REPLIES = 3, 4
WORDS, DELAY_S = 40, 0.02
CONCURRENT = 10
TEXT = "".join(f"w{k:03d} " for k in range(WORDS))
WORKFLOWS = {"openai": "bench_stream_openai", "scripted": "bench_stream_paced"}
TTFD_TARGET_MS, LAG_P99_TARGET_MS = 100, 150
KEEP_ALIVE_S = 300.0


async def _reply(conn: ChatConnection, request_id: str | None) -> tuple[float, list[float], str]:
    """(time to first delta, each word's lag, the next input request) of one streamed reply."""
    message: dict[str, Any] = {"type": "user.input.submit", "id": uuid.uuid4().hex, "text": TEXT}
    if request_id:
        message["input_request_id"] = request_id
    sent = time.perf_counter()
    await conn.send(message, wait_ack=False)
    first: float | None = None
    lags: list[float] = []
    seen: list[str] = []
    while True:
        event = await conn.next_event(timeout=60)
        now = time.perf_counter()
        seen.append(f"{event.type}:{event.agent}")
        if event.type == "chat.text_delta":
            first = now if first is None else first
            lags += [now - (sent + int(word[1:]) * DELAY_S) for word in event.data["delta"].split()]
        elif event.type == "chat.input_request":
            assert first is not None, f"the reply was not streamed: {seen}"
            return first - sent, lags, str(event.data["request_id"])


async def _open(rt: Runtime, workflow: str) -> tuple[ChatConnection, str]:
    async with rt.broker(f"stream-{uuid.uuid4().hex[:6]}") as broker:
        session = await broker.create_session(workflow)
    conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None, open_timeout_s=120)
    _, _, request_id = await _reply(conn, None)  # the first reply pays the chat's start
    return conn, request_id


async def one_run(chats: list[tuple[ChatConnection, str]], count: int) -> dict[str, float]:
    """REPLIES streamed replies in each of the first ``count`` chats at once (their input
    requests updated in place)."""
    ttfd: list[float] = []
    lags: list[float] = []

    async def replies(index: int) -> None:
        conn, request_id = chats[index]
        for _ in range(REPLIES):
            first, lag, request_id = await _reply(conn, request_id)
            ttfd.append(first)
            lags.extend(lag)
        chats[index] = (conn, request_id)

    await asyncio.gather(*(replies(i) for i in range(count)))
    return {"ttfd_p50_ms": statistics.median(ttfd) * 1000, "ttfd_p99_ms": percentile(ttfd, 99) * 1000,
            "word_lag_p50_ms": percentile(lags, 50) * 1000, "word_lag_p99_ms": percentile(lags, 99) * 1000,
            "load_1m": os.getloadavg()[0]}


def _spread(runs: list[dict[str, float]], key: str) -> list[float]:
    values = [r[key] for r in runs]
    return [round(statistics.median(values), 1), round(min(values), 1), round(max(values), 1)]


async def main(rt: Runtime) -> int:
    results: dict[str, Any] = {}
    for name, workflow in WORKFLOWS.items():
        chats = list(await asyncio.gather(*(_open(rt, workflow) for _ in range(CONCURRENT))))
        for count in (1, CONCURRENT):
            runs = [await one_run(chats, count) for _ in range(RUNS)]
            results[f"{name}_{count}"] = {k: _spread(runs, k) for k in runs[0]}
        for conn, _ in chats:
            await conn.close()
    keys = list(results["openai_1"])
    rows = [[f"{key} ({chats} chat{'s' if chats > 1 else ''})", *results[f"openai_{chats}"][key],
             *results[f"scripted_{chats}"][key]] for chats in (1, CONCURRENT) for key in keys]
    targets = {f"time to first delta p50 <= {TTFD_TARGET_MS} ms (openai, 1 chat)":
               results["openai_1"]["ttfd_p50_ms"][0] <= TTFD_TARGET_MS,
               f"word lag p99 <= {LAG_P99_TARGET_MS} ms (openai, 1 chat)":
               results["openai_1"]["word_lag_p99_ms"][0] <= LAG_P99_TARGET_MS}
    results["targets"] = targets
    report("stream_latency", f"Streaming: {WORDS} words, one every {DELAY_S * 1000:.0f} ms; median [min, max] of {RUNS} runs",
           ["figure", "openai", "min", "max", "scripted", "min", "max"], rows, results,
           notes=[f"{'met' if ok else 'MISSED'}: {name}" for name, ok in targets.items()])
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    paced = FakeResponse(text=TEXT, chunks=WORDS, chunk_delay_s=DELAY_S)
    with FakeOpenAI(default=lambda body: paced) as server:
        # Resident chats: this measures streaming, not the way back from passivation.
        with runtime(num_cpus=2, openai_base_url=server.base_url, openai_api_key="bench-key",
                     idle_timeout_s=KEEP_ALIVE_S) as rt:
            code = asyncio.run(main(rt))
    sys.exit(code)
