import time
from pathlib import Path


def write_later(path: str, seconds: float, ctx) -> str:
    ctx.progress(0.0, "started")
    time.sleep(seconds)
    Path(path).write_text("done")
    return "written"
