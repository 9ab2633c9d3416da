"""Tools that report where they ran. Each run also leaves a marker file (in the directory named by
MOZAIKS_CLUSTER_LAB_DIR, when set) so a test can count how often a call really ran."""

import os
import time
import uuid
from pathlib import Path

import ray


def _ran(tool: str, ctx) -> dict:
    node_id = ray.get_runtime_context().get_node_id()
    markers = os.environ.get("MOZAIKS_CLUSTER_LAB_DIR")
    if markers:
        Path(markers, f"{tool}.{ctx.chat_id}.{uuid.uuid4().hex}").write_text(node_id)
    return {"tool": tool, "node_id": node_id, "pid": os.getpid()}


def on_generator(ctx) -> dict:
    return _ran("on_generator", ctx)


def anywhere(label: str, ctx) -> dict:
    return {**_ran("anywhere", ctx), "label": label}


def crunch(seconds: float, ctx) -> dict:
    ran = _ran("crunch", ctx)
    time.sleep(seconds)
    return ran


def once(seconds: float, ctx) -> dict:
    ran = _ran("once", ctx)
    time.sleep(seconds)
    return ran
