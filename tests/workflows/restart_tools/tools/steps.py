import time


def safe_step(seconds: float, ctx) -> str:
    ctx.progress(0.0, "started")
    time.sleep(seconds)
    return "safe done"


def unsafe_step(seconds: float, ctx) -> str:
    ctx.progress(0.0, "started")
    time.sleep(seconds)
    return "unsafe done"
