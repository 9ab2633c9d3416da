"""Research tools: each call runs as its own Ray task, so the two calls of one reply overlap."""

import time


def market_research(topic: str, ctx) -> dict:
    started = time.time()
    for step in range(1, 4):
        time.sleep(0.2)  # stands in for calls to a search API
        ctx.progress(step / 3, f"market research {step}/3")
    ctx.set_context("research_done", True)
    return {"topic": topic, "demand": "growing", "started_at": started, "ended_at": time.time()}


def competitor_scan(product: str, limit: int = 3, ctx=None) -> dict:
    started = time.time()
    time.sleep(0.6)
    competitors = [f"{product} rival {i}" for i in range(1, limit + 1)]
    return {"product": product, "competitors": competitors, "started_at": started, "ended_at": time.time()}
