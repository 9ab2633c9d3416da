"""Coalesces streamed model text into fewer ``chat.text_delta`` events.

A fast model emits a fragment every few milliseconds; sending each as its own socket message
floods slow clients. Fragments are gathered and flushed at most every ``interval_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class DeltaBuffer:
    def __init__(self, publish: Callable[[str, bool], None], model_name: str, interval_s: float = 0.03) -> None:
        self._publish = publish
        self._interval = interval_s
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self.text = ""  # everything streamed for this message so far (kept if the run is cancelled)
        self.model_name = model_name

    async def on_delta(self, fragment: str, reset: bool = False) -> None:
        if reset:
            self._pending.clear()
            self.text = ""
            return
        if not fragment:
            return
        self.text += fragment
        self._pending.append(fragment)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self, more_coming: bool = False) -> None:
        """``more_coming``: the reply's commit follows at once (EventHub.publish)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            chunk = "".join(self._pending)
            self._pending.clear()
            self._publish(chunk, more_coming)
