"""The `meet` tool of the j_b and j_c test workflows, run as Ray tasks of two different chats.

Each member of the parallel step arrives, then waits for the other: both report ``met`` only if
both tools were running at the same moment, so a journey that ran the step's chats one after the
other fails the test instead of passing on lucky timing.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

WAIT_S = 20.0


def meet(me: str, partner: str, instance: str) -> dict[str, Any]:
    room = Path(tempfile.gettempdir()) / "mozaiks-journey-meetings" / instance
    room.mkdir(parents=True, exist_ok=True)
    (room / me).touch()
    arrived = time.time()
    while not (room / partner).exists():
        if time.time() - arrived > WAIT_S:
            return {"met": False, "arrived_at": arrived, "pid": os.getpid()}
        time.sleep(0.02)
    return {"met": True, "arrived_at": arrived, "met_at": time.time(), "pid": os.getpid()}
