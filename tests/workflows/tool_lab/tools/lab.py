import os
import time

import ray


def sleepy(label: str, seconds: float, ctx) -> dict:
    started = time.time()
    time.sleep(seconds)
    return {"label": label, "started_at": started, "ended_at": time.time(), "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id()}


def boom() -> dict:
    raise RuntimeError("the boom tool always fails")


def strict(count: int, ctx) -> dict:
    ctx.set_context("counted", count)
    return {"counted": count}


def progress_demo(ctx) -> str:
    for step in range(1, 5):
        ctx.progress(step / 4, f"step {step} of 4")
        time.sleep(0.05)
    return "progressed"


def slowpoke() -> str:
    time.sleep(5)
    return "too late"
