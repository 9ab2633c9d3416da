"""The chaos suite's parts, shared by tests/chaos and bench/soak.py: a client that keeps one chat
going through any fault (reconnecting from its last seq, resending unacknowledged messages), a
seeded schedule that SIGKILLs session actors, the ingress replica and the directory, and the
invariants checked for every chat at the end."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import websockets

from actors.handles import DirectoryHandle
from mozaiks.client import BrokerClient, Session
from mozaiks.store import open_store

KINDS = ("sessions", "ingress", "directory")
SESSION_SEARCH_S = 10.0  # how long a sessions round looks for a resident chat to kill
QUIET_S = 20.0  # no frame for this long (pings come every 15 s): the link is dead, reconnect


@dataclass
class ChatDriver:
    """One user's chat of ``chaos_mix``: a message, then the answer to its input request."""

    session: Session
    marker: Path
    seqs: list[int] = field(default_factory=list)  # durable seqs in the order this client got them
    acks: dict[str, str] = field(default_factory=dict)
    request_id: str | None = None  # of the input request, once seen
    run_completed: bool = False  # its chat.run_complete arrived
    connections: int = 0

    @property
    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    @property
    def finished(self) -> bool:
        """The run ended and the answer's fate is known, in either order: a socket may die after
        the answer was processed and before its ack came, and the replay brings the run's end
        before the resent answer's ``duplicate``."""
        return self.run_completed and self._acked(2)

    def _message(self, n: int, request_id: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "user.input.submit", "id": f"{self.session.chat_id}-m{n}",
                                   "text": f"message {n}"}
        if request_id is not None:
            message["input_request_id"] = request_id
        return message

    def _acked(self, n: int) -> bool:
        return self.acks.get(f"{self.session.chat_id}-m{n}") in ("accepted", "duplicate")

    async def run(self) -> None:
        while not self.finished:
            try:
                await self._connection()
            except (OSError, websockets.WebSocketException, TimeoutError):
                pass  # the ingress is down or restarting: try again
            if not self.finished:
                await asyncio.sleep(0.3)

    async def _connection(self) -> None:
        url = f"{self.session.ws_url}?last_seq={self.last_seq}"
        async with websockets.connect(url, subprotocols=["mozaiks.v1", f"bearer.{self.session.runtime_token}"],  # type: ignore[list-item]
                                      open_timeout=15, max_size=None) as ws:
            self.connections += 1
            while True:
                async with asyncio.timeout(QUIET_S):
                    frame = json.loads(await ws.recv())
                await self._on(ws, frame)
                if self.finished:
                    return

    async def _on(self, ws: Any, frame: dict[str, Any]) -> None:
        kind, data = frame["type"], frame.get("data") or {}
        if frame.get("seq") is not None:
            self.seqs.append(frame["seq"])  # duplicates and gaps are kept: the invariants look for them
        if kind == "ack":
            self.acks[str(data.get("id"))] = data["status"]
        elif kind == "chat_meta":
            pending = data.get("pending") or {}
            if pending.get("kind") == "input_request":
                self.request_id = pending["request_id"]
            if not self._acked(1):
                await ws.send(json.dumps(self._message(1)))
            elif self.request_id is not None and not self._acked(2):
                # Pending still, or answered by a message whose ack was lost: resent, same id.
                await ws.send(json.dumps(self._message(2, self.request_id)))
        elif kind == "chat.input_request":
            self.request_id = data["request_id"]
            if not self._acked(2):
                await ws.send(json.dumps(self._message(2, self.request_id)))
        elif kind == "chat.run_complete":
            self.run_completed = True


@dataclass
class Kill:
    at_s: float
    kind: str
    targets: list[str]

    def __str__(self) -> str:
        return f"t+{self.at_s:.1f}s {self.kind} {','.join(self.targets)}"


def schedule(seed: int, rounds: int, span_s: float) -> list[tuple[float, str]]:
    """When and what to kill: every kind at least once, then random kinds, spread over ``span_s``.
    Sessions go first: after a directory kill the new directory knows no resident chat for a while,
    and the chats may all be done by the time it does."""
    rng = random.Random(seed)
    rest = [k for k in KINDS if k != "sessions"] + [rng.choice(KINDS) for _ in range(max(0, rounds - len(KINDS)))]
    rng.shuffle(rest)
    kinds = ["sessions", *rest]
    times = sorted(rng.uniform(1.0, span_s) for _ in kinds)
    return list(zip(times, kinds, strict=True))


def actor_pids(class_part: str) -> list[int]:
    """Live actors of this Ray cluster (the GCS's table, not the process list: other Ray clusters
    may run on the machine) whose class name contains ``class_part``."""
    table = ray._private.state.actors()  # noqa: SLF001 - the one place Ray lists actor pids without a dashboard
    return [info["Pid"] for info in table.values() if info["State"] == "ALIVE" and class_part in info["ActorClassName"]]


async def kill(kind: str, drivers: list[ChatDriver], rng: random.Random) -> list[str]:
    """SIGKILL what ``kind`` names; returns what was killed."""
    directory = DirectoryHandle.lookup()
    if kind == "directory":
        pids = await directory.pids()
        pid = pids[0] if len(pids) == 1 else rng.choice(pids)  # one shard; one alone draws nothing (seeds replay)
        os.kill(pid, signal.SIGKILL)
        return [f"directory:{pid}"]
    if kind == "ingress":
        pids = actor_pids("MozaiksIngress")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return [f"ingress:{pid}" for pid in pids]
    wanted = rng.randint(2, 5)
    deadline = time.monotonic() + SESSION_SEARCH_S
    # A directory restarted by an earlier round knows no resident chat until the chats come back
    # to it: look again until some running chat is resident, or every chat is done.
    while not (killed := await _kill_resident(directory, drivers, rng, wanted)):
        if time.monotonic() > deadline or all(d.finished for d in drivers):
            break
        await asyncio.sleep(0.2)
    return killed


async def _kill_resident(directory: DirectoryHandle, drivers: list[ChatDriver], rng: random.Random,
                         wanted: int) -> list[str]:
    killed: list[str] = []
    for driver in rng.sample(drivers, k=len(drivers)):  # in random order, skipping chats that are done
        if len(killed) == wanted:
            break
        try:
            session = await directory.peek(driver.session.chat_id) if not driver.finished else None
            pid = await session.pid() if session is not None else None
        except Exception:  # the directory is restarting, or the session died meanwhile
            continue
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            killed.append(f"session:{driver.session.chat_id[:8]}")
    return killed


async def run_schedule(plan: list[tuple[float, str]], drivers: list[ChatDriver], seed: int) -> list[Kill]:
    rng = random.Random(seed + 1)
    started = time.monotonic()
    done: list[Kill] = []
    for at_s, kind in plan:
        await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
        try:
            targets = await kill(kind, drivers, rng)
        except Exception as exc:  # the directory may be restarting from the round before
            targets = [f"skipped ({type(exc).__name__})"]
        done.append(Kill(time.monotonic() - started, kind, targets))
    return done


async def violations(broker: BrokerClient, store_url: str, app_id: str, user_id: str,
                     driver: ChatDriver) -> list[str]:
    """What broke, for one chat: an empty list when every invariant held."""
    chat_id = driver.session.chat_id
    events = (await broker.events(chat_id, limit=1000))["events"]
    found: list[str] = []
    log_seqs = [e["seq"] for e in events]
    if log_seqs != list(range(1, len(log_seqs) + 1)):
        found.append(f"log seqs not 1..N: {log_seqs}")
    if driver.seqs != log_seqs:
        found.append(f"client saw {driver.seqs}, log has 1..{len(log_seqs)}")
    for message_id, status in driver.acks.items():
        if status in ("accepted", "duplicate"):
            texts = [e for e in events if e["type"] == "chat.text" and e["data"].get("message_id") == message_id]
            if len(texts) != 1:
                found.append(f"acked message {message_id} processed {len(texts)} times")
    runs = [e["data"]["run_id"] for e in events if e["type"] == "chat.run_start"]
    ends = [e["data"]["run_id"] for e in events if e["type"] == "chat.run_complete"]
    if sorted(runs) != sorted(ends) or len(set(ends)) != len(ends):
        found.append(f"runs {runs} ended {ends}")
    ran = driver.marker.read_text().count("ran") if driver.marker.exists() else 0
    if ran > 1:
        found.append(f"the non-idempotent tool ran {ran} times")
    store = open_store(store_url)
    try:
        stored = await store.usage_totals(app_id, user_id, chat_id)
    finally:
        await store.close()
    summed = sum(e["data"]["usage"]["total_tokens"] for e in events if e["type"] == "chat.run_complete")
    if stored["total_tokens"] != summed:
        found.append(f"usage stored {stored['total_tokens']} != sum of run deltas {summed}")
    return found
