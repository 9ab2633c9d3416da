"""Waits on the user (an input request, an open UI tool) and the one timer that ends them.

A wait's deadline lives in the snapshot as epoch seconds, so a re-activated session re-arms the
same deadline rather than starting a fresh timeout. A passivated chat's deadline is its store
wake-up (``Store.set_wakeup``), which a directory shard takes up when it starts; a resident chat's
wake-up is due at once (actors/chat_session.py:RESIDENT_MARK), so after a whole-runtime stop it is
re-activated at once and its session re-arms the deadline: it still times out on time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from actors.snapshot import SessionSnapshot


def deadline_at(timeout_s: float | None, now: float | None = None) -> float | None:
    return (now if now is not None else time.time()) + timeout_s if timeout_s else None


def remaining(deadline: float | None, now: float | None = None) -> float | None:
    return None if deadline is None else max(0.0, round(deadline - (now if now is not None else time.time()), 3))


def open_deadline(state: SessionSnapshot) -> float | None:
    wait = state.pending_input or state.pending_ui or state.pending_children
    return wait.timeout_at if wait is not None else None


def due(deadline: float | None, now: float) -> bool:
    return deadline is not None and deadline <= now


def pending_view(state: SessionSnapshot, now: float | None = None) -> dict[str, Any] | None:
    """The open wait as ``chat_meta`` describes it to a client that (re)attaches."""
    if state.pending_input:
        p = state.pending_input
        return {"kind": "input_request", "request_id": p.request_id, "agent": p.agent, "prompt": p.prompt,
                "timeout_s": remaining(p.timeout_at, now)}
    if state.pending_ui:
        u = state.pending_ui
        return {"kind": "ui_tool", "call_id": u.call_id, "name": u.name, "agent": u.agent,
                "component": u.component, "display": u.display, "props": u.props,
                "timeout_s": remaining(u.timeout_at, now)}
    return None


class WaitTimer:
    """At most one armed deadline; arming again replaces it."""

    def __init__(self, on_due: Callable[[], Awaitable[None]]) -> None:
        self._on_due = on_due
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, deadline: float | None) -> None:
        self.cancel()
        if deadline is not None:
            delay = max(0.0, deadline - time.time())
            self._handle = asyncio.get_running_loop().call_later(
                delay, lambda: asyncio.ensure_future(self._on_due()))

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def armed(self) -> bool:
        return self._handle is not None
