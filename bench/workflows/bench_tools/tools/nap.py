import time


def nap(seconds: float, ctx) -> dict:
    """Stands in for a tool that waits on I/O: it holds a worker but not a CPU."""
    started = time.time()
    time.sleep(seconds)
    return {"started_at": started, "ended_at": time.time()}
