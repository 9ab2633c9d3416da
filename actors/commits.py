"""The only writer path of a session: events and the new snapshot in one store write, then out.

Persisting before publishing is what lets a client trust every durable event it sees: it is
already in the store, with its seq, when it reaches the session's EventHub.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actors.event_hub import EventHub
from actors.history import History
from mozaiks import metrics
from mozaiks.errors import StaleOwnerError
from mozaiks.protocol import events as ev
from mozaiks.protocol.events import EventData, utc_now_iso
from mozaiks.store.base import ChatRecord, FencedError, Store, StoredEvent, UsageRecord

# A durable event before it has a seq: the agent it is about (the envelope's), and its payload.
EventSpec = tuple[str | None, EventData]


class SessionState:
    """What a commit writes next to its events: the snapshot, the chat status and phase."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], status: Callable[[], str],
                 phase: Callable[[], str | None]) -> None:
        self.snapshot, self.status, self.phase = snapshot, status, phase


class Committer:
    def __init__(self, store: Store, chat: ChatRecord, epoch: int, hub: EventHub, history: History,
                 state: SessionState) -> None:
        self.store, self.chat, self.epoch, self.hub, self.history = store, chat, epoch, hub, history
        self._state = state
        self.lock = asyncio.Lock()
        self.stale = False
        self.commits = 0  # durable store transactions since activation (SessionStatus.commits)

    async def commit(self, events: list[EventSpec], *, client_message_id: str | None = None,
                     usage: list[UsageRecord] | None = None) -> None:
        """Persist events with the current snapshot, then publish them."""
        if self.stale:
            raise StaleOwnerError(self.chat.chat_id)
        async with self.lock:
            first = self.chat.last_seq + 1
            stored = [StoredEvent(seq=first + i, type=p.TYPE, timestamp=utc_now_iso(), agent=a, data=p.dump())
                      for i, (a, p) in enumerate(events)]
            try:
                await metrics.store_commit(self.store.append(self.chat.app_id, self.chat.user_id, self.chat.chat_id, self.epoch,
                                        stored, snapshot=self._state.snapshot(), status=self._state.status(),
                                        phase=self._state.phase(), client_message_id=client_message_id,
                                        usage=usage))
            except FencedError as exc:
                self.stale = True
                metrics.FENCING_REFUSALS.inc(app_id=self.chat.app_id)
                raise StaleOwnerError(self.chat.chat_id) from exc
            self.commits += 1
            if stored:
                self.chat.last_seq = stored[-1].seq
            # A turn's announcement is followed by its model call: the burst goes on (EventHub).
            more_coming = any(isinstance(payload, ev.SelectSpeaker) for _, payload in events)
            for event, (agent, payload) in zip(stored, events, strict=True):
                self.history.apply(agent, payload)
                self.hub.publish(event.seq, stored_wire(self.chat.chat_id, event), more_coming)

    def publish_ephemeral(self, agent: str | None, payload: EventData, more_coming: bool = False) -> None:
        assert not payload.DURABLE, payload.TYPE
        self.hub.publish(None, ev.envelope(self.chat.chat_id, payload, agent=agent), more_coming)


def stored_wire(chat_id: str, event: StoredEvent) -> str:
    """The envelope of a durable event read back from the store."""
    return ev.wire(chat_id, event.type, event.data, agent=event.agent, seq=event.seq, timestamp=event.timestamp)


def error_event(agent: str | None, code: str, message: str, retryable: bool = False) -> EventSpec:
    return (agent, ev.ChatError(code=code, message=message, retryable=retryable))
