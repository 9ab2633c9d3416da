"""Kills its own worker process on the first attempt, as a node or OOM failure would."""

import os
import tempfile
from pathlib import Path


def _attempt(marker: str) -> int:
    path = Path(tempfile.gettempdir()) / f"mozaiks-crash-{marker}"
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


def retried(marker: str) -> dict:
    attempt = _attempt(marker)
    if attempt == 1:
        os._exit(1)
    return {"attempt": attempt}


def fragile(marker: str) -> dict:
    attempt = _attempt(marker)
    if attempt == 1:
        os._exit(1)
    return {"attempt": attempt}
