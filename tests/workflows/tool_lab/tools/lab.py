import os
import tempfile
import time
from pathlib import Path

import ray


def meet(label: str, partner: str, ctx) -> dict:
    """Wait (up to 20 s) for the partner call to be running too: both meet only if they run at once,
    however long the machine takes to give each its worker."""
    started = time.time()
    place = Path(tempfile.gettempdir()) / f"mozaiks-meet-{ctx.chat_id}"
    place.mkdir(exist_ok=True)
    (place / label).touch()
    while not (met := (place / partner).exists()) and time.time() - started < 20:
        time.sleep(0.02)
    return {"label": label, "met": met, "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}


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
