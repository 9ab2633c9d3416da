"""Runs as a Ray task: anywhere in the cluster, in its own worker process."""

import os

import ray


def make_greeting(name: str, ctx) -> dict:
    clean = name.strip().split()[0].strip(".,!?").capitalize() if name.strip() else "friend"
    greeting = f"Nice to meet you, {clean}!"
    ctx.set_context("user_name", clean)
    ctx.set_context("greeting", greeting)
    ctx.progress(1.0, "greeting ready")
    return {"greeting": greeting, "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}
