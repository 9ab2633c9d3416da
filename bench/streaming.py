"""Streaming throughput: model deltas delivered per second, to one client and to 50 at once.

The scripted model streams the user's message back in 4-character fragments as fast as it can
(``stream_delay_s: 0``). The session coalesces fragments into ``chat.text_delta`` messages (at
most one per 30 ms), so two rates are reported: model deltas per second (the fragments the
client received, whatever message carried them) and socket messages per second. Baseline: the
raw Serve echo deployment pushing 16-character messages as fast as it can, to the same number
of clients.
"""

from __future__ import annotations

import asyncio
import time

import websockets

from bench.harness import Runtime, report, runtime
from bench.turn_overhead import next_request, submit
from mozaiks.client import ChatConnection

FRAGMENT, TEXT_CHARS, REPLIES = 4, 20000, 3
ECHO_MESSAGES, ECHO_SIZE = 4000, 16
CLIENTS = (1, 50)


async def _stream_replies(conn: ChatConnection, request_id: str | None) -> tuple[int, int]:
    """(model fragments, delta messages) received over REPLIES streamed replies."""
    fragments = messages = 0
    for index in range(REPLIES):
        text = f"{index:04d}" + "x" * (TEXT_CHARS - 4)
        await conn.send(submit(text, request_id), wait_ack=False)
        while True:
            event = await conn.next_event(timeout=60)
            if event["type"] == "chat.text_delta":
                fragments += len(event["data"]["delta"]) // FRAGMENT
                messages += 1
            elif event["type"] == "chat.text" and event["agent"] == "Streamer":
                break
        request_id = await next_request(conn)
    return fragments, messages


async def _echo_burst(url: str) -> tuple[int, float]:
    async with websockets.connect(url) as ws:
        await ws.send(f"burst:{ECHO_MESSAGES}:{ECHO_SIZE}")
        await ws.recv()
        began = time.perf_counter()
        for _ in range(ECHO_MESSAGES - 1):
            await ws.recv()
        return ECHO_MESSAGES - 1, time.perf_counter() - began


async def _chats(rt: Runtime, count: int) -> list[ChatConnection]:
    async with rt.broker("streamer") as broker:
        sessions = [await broker.create_session("bench_stream") for _ in range(count)]
    return list(await asyncio.gather(*(ChatConnection.open(s.ws_url, s.runtime_token, last_seq=None)
                                       for s in sessions)))


async def main(rt: Runtime) -> None:
    results, rows = {}, []
    for clients in CLIENTS:
        conns = await _chats(rt, clients)
        began = time.perf_counter()
        runs = await asyncio.gather(*(_stream_replies(conn, None) for conn in conns))
        wall = time.perf_counter() - began
        for conn in conns:
            await conn.close()
        fragments, messages = sum(r[0] for r in runs), sum(r[1] for r in runs)
        bursts = await asyncio.gather(*(_echo_burst(rt.echo_url) for _ in range(clients)))
        echo_rate = sum(n for n, _ in bursts) / max(seconds for _, seconds in bursts)
        row = {"model_deltas_per_s": round(fragments / wall), "messages_per_s": round(messages / wall),
               "echo_msgs_per_s": round(echo_rate), "ratio_to_echo": round(fragments / wall / echo_rate, 2),
               "seconds": round(wall, 2)}
        results[str(clients)] = row
        rows.append([clients, row["model_deltas_per_s"], row["messages_per_s"], row["echo_msgs_per_s"],
                     row["ratio_to_echo"]])
    report("streaming", f"Streaming: {TEXT_CHARS:,}-character replies in {FRAGMENT}-character model deltas",
           ["clients", "model deltas/s", "socket msgs/s", "echo msgs/s", "deltas / echo"], rows, results,
           notes=[f"{REPLIES} replies per client, timed from the first message sent to the last reply received;",
                  "with 50 clients the rates are sums over all of them",
                  "target: to one client >= 50% of the echo baseline's messages per second"])


if __name__ == "__main__":
    with runtime() as rt:
        asyncio.run(main(rt))
