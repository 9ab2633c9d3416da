"""ChatUI benchmark, in headless Debian chromium: the widget alone, fed by a small local WebSocket
server in this process speaking the runtime's protocol (so the runtime's own cost is not in the
numbers; bench/streaming.py and friends measure that).

- replay: reopening a 2,000-event chat, from ``resume()`` until every message is in the DOM and the newest
  shows its Markdown (≤ 500 ms). The widget reads the log from the events endpoint; also reported: the
  same replay over the socket (a broker without that endpoint) and the bare floor of Chromium receiving
  2,000 frames, which alone is near the target on a small machine
- stream: 20,000 ``chat.text_delta`` events at ~4,000/s; frame intervals while it streams
  (p95 ≤ 50 ms: the page stays responsive)
- bundle: the built mozaiks-chat.js gzipped (≤ 150 KB, dependencies included)

    python -m bench.chatui [--runs 3]     # needs chatui/dist (scripts/run.sh builds it) and /usr/bin/chromium
Median of the runs with min/max; JSON in bench/results/chatui.json; exit 1 on a missed target.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import socket
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import websockets
from playwright.async_api import async_playwright

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "chatui" / "dist"
RESULTS = REPO / "bench" / "results"
ORIGIN = "http://bench.local"
# The page is fulfilled by Playwright (no IP address space), so Local Network Access checks would
# refuse its socket to 127.0.0.1.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-features=LocalNetworkAccessChecks"]
TARGETS = {"replay_ms": 500.0, "stream_frame_p95_ms": 50.0, "bundle_gzip_kb": 150.0}

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script type="module" src="/chat/mozaiks-chat.js"></script></head>
<body style="margin:0;height:100vh"><mozaiks-chat presentation="inline" style="height:100vh"></mozaiks-chat></body></html>"""


def _log(n: int) -> list[dict[str, Any]]:
    """A realistic mix: per turn a speaker, a message, a tool call and its response, a handoff."""
    events: list[dict[str, Any]] = []
    kinds = ["select", "text", "tool_call", "tool_response", "handoff"]
    for seq in range(1, n + 1):
        turn, kind = divmod(seq - 1, len(kinds))
        agent = f"Agent{turn % 4}"
        data: dict[str, Any]
        if kinds[kind] == "select":
            type_, data = "chat.select_speaker", {"agent": agent}
        elif kinds[kind] == "text":
            type_, data = "chat.text", {"message_id": f"m{turn}", "agent": agent, "role": "assistant",
                                        "visibility": "user",
                                        "content": f"Turn **{turn}**: some `code` and a [link](https://example.com).\n\n"
                                                   "```py\nprint('hello')\n```"}
        elif kinds[kind] == "tool_call":
            type_, data = "chat.tool_call", {"call_id": f"c{turn}", "name": "lookup", "agent": agent,
                                             "arguments": {"q": f"question {turn}"}, "kind": "agent_tool",
                                             "awaiting_response": False}
        elif kinds[kind] == "tool_response":
            type_, data = "chat.tool_response", {"call_id": f"c{turn}", "name": "lookup", "status": "ok",
                                                 "result": {"answer": turn}, "duration_ms": 12}
        else:
            type_, data = "chat.handoff", {"from_agent": agent, "to_agent": f"Agent{(turn + 1) % 4}",
                                           "reason": "after_work"}
        events.append({"type": type_, "seq": seq, "chat_id": "bench", "agent": agent,
                       "timestamp": "2026-01-01T00:00:00Z", "data": data})
    return events


def _meta(last_seq: int, phase: str) -> str:
    return json.dumps({"type": "chat_meta", "seq": None, "chat_id": "bench", "data": {
        "chat_id": "bench", "workflow_name": "bench", "status": "active", "phase": phase, "last_seq": last_seq,
        "pending": None}})


Feed = Callable[[Any], Awaitable[None]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _page(browser: Any, ws_url: str, history: list[dict[str, Any]] | None = None) -> Any:
    """The widget on a page of its own; ``history`` is served by the events endpoint (None: 404, as a
    host's broker without that endpoint answers, so the socket replays the log)."""
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    page = await context.new_page()
    events_body = None if history is None else json.dumps(
        {"chat_id": "bench", "events": history, "next_after_seq": None})

    async def static(route: Any) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        if path == "/":
            await route.fulfill(status=200, content_type="text/html", body=PAGE)
        elif path.startswith("/chat/"):
            await route.fulfill(status=200, content_type="text/javascript", body=(DIST / path[6:]).read_bytes())
        elif path == "/api/mozaiks/sessions":
            await route.fulfill(status=201, content_type="application/json", body=json.dumps({
                "chat_id": "bench", "workflow_name": "bench", "status": "resumed", "ws_url": ws_url,
                "runtime_token": "t", "expires_at": "2099-01-01T00:00:00Z"}))
        elif path.startswith("/api/mozaiks/sessions/bench/events") and events_body is not None:
            await route.fulfill(status=200, content_type="application/json", body=events_body)
        else:
            await route.fulfill(status=404, body="")

    await page.route(f"{ORIGIN}/**", static)
    await page.goto(f"{ORIGIN}/")
    await page.evaluate("customElements.whenDefined('mozaiks-chat').then(() => "
                        "{ document.querySelector('mozaiks-chat').getToken = () => 'user-jwt'; })")
    return page


async def replay_once(browser: Any, events: list[dict[str, Any]], over_http: bool) -> float:
    """Reopening a chat of ``len(events)`` events: from ``resume()`` until every message is in the DOM
    and the newest one shows its Markdown. Over HTTP the widget reads the log from the events endpoint
    and the socket sends nothing more; otherwise the socket replays the whole log."""
    payloads = [] if over_http else [json.dumps(e) for e in events]
    messages = sum(1 for e in events if e["type"] == "chat.text")

    async def feed(ws: Any) -> None:
        await ws.recv()  # the auth frame: answer with meta, the log after last_seq, the boundary
        await ws.send(_meta(len(events), "idle"))
        for payload in payloads:
            await ws.send(payload)
        await ws.send(json.dumps({"type": "chat.resume_boundary", "seq": None, "data": {"replayed": len(payloads)}}))
        await ws.wait_closed()

    return await _measure(browser, feed, REPLAY_JS, messages, events if over_http else None)


REPLAY_JS = "(expected) => new Promise((resolve) => {" + """
      const chat = document.querySelector('mozaiks-chat');
      const t0 = performance.now();
      const check = () => {
        const msgs = chat.shadowRoot.querySelectorAll('.msg');
        if (msgs.length >= expected && msgs[msgs.length - 1].querySelector('.md:not(.deferred) .code')) {
          resolve(performance.now() - t0);
        } else requestAnimationFrame(check);
      };
      chat.resume('bench', 'bench');
      requestAnimationFrame(check);
    })"""


async def socket_floor_once(browser: Any, events: list[dict[str, Any]]) -> float:
    """What Chromium alone needs to receive the log as one frame per event (a bare WebSocket, JSON.parse
    and nothing else): the floor under the socket replay."""
    payloads = [json.dumps(e) for e in events]

    async def feed(ws: Any) -> None:
        await ws.recv()
        for payload in payloads:
            await ws.send(payload)
        await ws.wait_closed()

    return await _measure(browser, feed, """(count) => new Promise((resolve) => {
      const ws = new WebSocket(window.__ws_url, ['mozaiks.v1']);
      let n = 0, t0 = 0;
      ws.onopen = () => { t0 = performance.now(); ws.send('{}'); };
      ws.onmessage = (m) => { JSON.parse(m.data); if (++n === count) { resolve(performance.now() - t0); ws.close(); } };
    })""", len(events))


async def _measure(browser: Any, feed: Feed, script: str, arg: Any = None,
                   history: list[dict[str, Any]] | None = None) -> Any:
    port = _free_port()
    async with websockets.serve(feed, "127.0.0.1", port, max_size=None, subprotocols=["mozaiks.v1"]):
        page = await _page(browser, f"ws://127.0.0.1:{port}/ws", history)
        await page.evaluate(f"window.__ws_url = 'ws://127.0.0.1:{port}/ws'")
        try:
            return await page.evaluate(script, arg)
        finally:
            await page.context.close()


async def stream_once(browser: Any, deltas: int) -> dict[str, float]:
    async def feed(ws: Any) -> None:
        await ws.recv()
        await ws.send(_meta(0, "running"))
        for start in range(0, deltas, 40):  # 40 deltas every 10 ms: ~4,000 per second
            for i in range(start, min(start + 40, deltas)):
                await ws.send(json.dumps({"type": "chat.text_delta", "seq": None, "chat_id": "bench", "data": {
                    "message_id": f"s{i // 2000}", "agent": "Streamer", "delta": f"tok{i} "}}))
            await asyncio.sleep(0.01)
        await ws.send(json.dumps({"type": "chat.run_complete", "seq": 1, "chat_id": "bench",
                                  "data": {"run_id": "r", "status": "completed"}}))
        await ws.wait_closed()

    frames = await _measure(browser, feed, """() => new Promise((resolve) => {
      const chat = document.querySelector('mozaiks-chat');
      const gaps = [];
      let last = null, done = false;
      chat.addEventListener('mozaiks-run-complete', () => { done = true; });
      const frame = (now) => {
        if (last !== null) gaps.push(now - last);
        last = now;
        if (done) resolve(gaps); else requestAnimationFrame(frame);
      };
      chat.openWorkflow('bench');
      requestAnimationFrame(frame);
    })""")
    frames.sort()
    return {"frame_p50_ms": statistics.median(frames), "frame_p95_ms": frames[int(len(frames) * 0.95)],
            "frame_max_ms": frames[-1], "frames": float(len(frames))}


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def main(runs: int) -> int:
    bundle = DIST / "mozaiks-chat.js"
    if not bundle.exists():
        print("chatui/dist/mozaiks-chat.js is missing: run scripts/run.sh (or npm run build in chatui/)")
        return 2
    gz_kb = len(gzip.compress(bundle.read_bytes(), 9)) / 1024
    events = _log(2000)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
        await replay_once(browser, events, over_http=True)  # warm-up: first compile of the bundle
        replays = [await replay_once(browser, events, over_http=True) for _ in range(runs)]
        socket_replays = [await replay_once(browser, events, over_http=False) for _ in range(runs)]
        floors = [await socket_floor_once(browser, events) for _ in range(runs)]
        streams = [await stream_once(browser, 20_000) for _ in range(runs)]
        await browser.close()
    result = {
        "replay_2000_events_ms": _spread(replays),
        "replay_2000_events_over_socket_ms": _spread(socket_replays),
        "bare_socket_2000_frames_ms": _spread(floors),
        "stream_20000_deltas": {key: _spread([s[key] for s in streams]) for key in streams[0]},
        "bundle_bytes": bundle.stat().st_size,
        "bundle_gzip_kb": round(gz_kb, 1),
        "targets": TARGETS,
        "runs": runs,
        "load_average_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    checks = {
        "replay_ms": result["replay_2000_events_ms"]["median"] <= TARGETS["replay_ms"],
        "stream_frame_p95_ms": result["stream_20000_deltas"]["frame_p95_ms"]["median"] <= TARGETS["stream_frame_p95_ms"],
        "bundle_gzip_kb": gz_kb <= TARGETS["bundle_gzip_kb"],
    }
    result["passed"] = checks
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chatui.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    sys.exit(asyncio.run(main(parser.parse_args().runs)))
