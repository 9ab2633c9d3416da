"""Typed handles over the runtime's two actors, as ``ray.util.queue.Queue`` is over its actor: the
only code that names their remote methods. Callers (the socket, the broker, journeys, tools) get
typed methods and pydantic results, and one exception, ``SessionGone``, for "that session no longer
serves this chat" however Ray or the session said it.

A handle pickles with its Ray handle inside, so it may be passed to actors and tasks as it is.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import ray
from pydantic import BaseModel
from ray.actor import ActorHandle

from actors.names import NAMESPACE, directory_name, shard_of
from mozaiks.errors import ChatNotFound, SessionGone, StaleOwnerError
from mozaiks.protocol.client_messages import ChatMessage
from mozaiks.protocol.events import Ack, ChatMeta

# Ray's way of saying "that actor is gone": the session crashed, or its node is unreachable.
_ACTOR_GONE = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


class Attached(BaseModel):
    """A watcher's start: the chat as it is now, and the live-event offset to poll from."""

    meta: ChatMeta
    offset: int


class Poll(BaseModel):
    """What a watcher's long poll brought: (seq, envelope JSON) items, seq None for ephemeral
    events; the next offset; and whether the hub dropped items this watcher had not read yet
    (then it reads the durable ones from the log)."""

    items: list[tuple[int | None, str]]
    offset: int
    gap: bool


class SessionStatus(ChatMeta):
    """A session's view of its chat, with its residency details."""

    watchers: int
    idle_s: float
    passivatable: bool
    # Since activation, what a turn costs in round trips: durable store commits, and Ray calls
    # the session served about the chat (attach, poll, submit, ...; ``status`` itself not counted).
    commits: int = 0
    calls: int = 0


class Serving(BaseModel):
    """What a session actor tells a restarted directory shard: the chat it serves (None while
    blank) and the node it lives on."""

    node_id: str
    chat_id: str | None = None
    app_id: str = ""
    user_id: str = ""


class LifecyclePolicy(BaseModel):
    idle_timeout_s: float
    activation_grace_s: float  # how long an activated chat waits for its caller before idle_timeout_s applies
    max_resident_sessions: int
    warm_pool_size: int  # the warm pool's floor
    warm_pool_max: int  # and its ceiling
    warm_pool_window_s: float  # the arrival rate's averaging window, and how long extra pooled actors are kept


class DirectoryStats(BaseModel):
    resident: int
    pool: int
    wakeups: int
    per_node: dict[str, int]
    pool_per_node: dict[str, int] = {}  # warm-pool actors by node
    pool_target: int = 0  # what the warm pool is refilled to now, from the arrival rate
    arrivals_per_s: float = 0.0  # activations per second, averaged over the policy's window
    boot_s: float = 0.0  # how long starting and preparing a session process takes lately
    policy: LifecyclePolicy
    counters: dict[str, int]  # activations, passivations, crashes, fenced, evictions, … (absent = 0)
    shards: list[DirectoryStats] = []  # each shard's own figures (the handle's sum only)

    def count(self, name: str) -> int:
        return self.counters.get(name, 0)


def actor_id(actor: ActorHandle) -> str:
    """How the directory is told which session a caller means: by id, not by handle. A handle
    passed to the directory is borrowed by it, and Ray's reference counting fails a check (and
    kills the directory) when a detached actor borrowed so has died meanwhile."""
    return str(actor._actor_id.hex())


class SessionHandle:
    """One session actor process. It serves one chat at a time, so every call names the chat it
    is meant for; a call that reaches it after it let the chat go raises ``SessionGone``."""

    def __init__(self, actor: ActorHandle) -> None:
        self.actor = actor
        self.actor_id = actor_id(actor)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SessionHandle) and self.actor_id == other.actor_id

    def __hash__(self) -> int:
        return hash(self.actor_id)

    def __repr__(self) -> str:
        return f"SessionHandle({self.actor_id})"

    async def _call(self, chat_id: str, ref: Any) -> Any:
        try:
            return await ref
        except StaleOwnerError:
            raise SessionGone(chat_id, crashed=False) from None
        except _ACTOR_GONE:
            raise SessionGone(chat_id, crashed=True) from None

    async def attach(self, chat_id: str, watcher_id: str) -> Attached:
        result: Attached = await self._call(chat_id, self.actor.attach.remote(chat_id, watcher_id))
        return result

    async def detach(self, chat_id: str, watcher_id: str) -> None:
        await self._call(chat_id, self.actor.detach.remote(chat_id, watcher_id))

    async def poll(self, chat_id: str, watcher_id: str, after: int, timeout: float) -> Poll:
        result: Poll = await self._call(chat_id, self.actor.poll.remote(chat_id, watcher_id, after, timeout))
        return result

    async def read_events(self, chat_id: str, after_seq: int, upto_seq: int | None = None) -> list[tuple[int, str]]:
        """Durable events with after_seq < seq <= upto_seq, as (seq, envelope JSON)."""
        result: list[tuple[int, str]] = await self._call(
            chat_id, self.actor.read_events.remote(chat_id, after_seq, upto_seq))
        return result

    async def submit(self, chat_id: str, message: ChatMessage) -> Ack:
        """A client message for the chat; its ack comes back once it is persisted (or refused)."""
        result: Ack = await self._call(chat_id, self.actor.submit.remote(chat_id, message))
        return result

    async def cancel(self, chat_id: str, mode: str) -> bool:
        result: bool = await self._call(chat_id, self.actor.cancel.remote(chat_id, mode))
        return result

    async def start(self, chat_id: str) -> None:
        await self._call(chat_id, self.actor.start.remote(chat_id))

    async def start_child(self, chat_id: str, seed_id: str, text: str) -> None:
        await self._call(chat_id, self.actor.start_child.remote(chat_id, seed_id, text))

    async def children_changed(self, chat_id: str) -> None:
        await self._call(chat_id, self.actor.children_changed.remote(chat_id))

    async def status(self, chat_id: str) -> SessionStatus:
        result: SessionStatus = await self._call(chat_id, self.actor.status.remote(chat_id))
        return result

    async def ping(self) -> str:
        """The chat this actor serves, or "" while blank."""
        result: str = await self.actor.ping.remote()
        return result

    async def pid(self) -> int:
        result: int = await self.actor.pid.remote()
        return result

    def install_workflow(self, chat_id: str, name: str, files: dict[str, str],
                         capability: dict[str, Any] | None) -> dict[str, Any]:
        """A generator tool's install, waited for (called from inside a tool's Ray task): the
        install summary, or ``{"error": {code, message, details}}``."""
        result: dict[str, Any] = ray.get(self.actor.install_workflow.remote(chat_id, name, files, capability))
        return result

    def report_progress(self, chat_id: str, call_id: str, name: str, fraction: float,
                        message: str) -> ray.ObjectRef:
        """A running tool's progress, not waited for (called from inside a tool's Ray task); the
        reference lets the task see its last report taken before it returns."""
        ref: ray.ObjectRef = self.actor.tool_progress.remote(chat_id, call_id, name, fraction, message)
        return ref


class DirectoryHandle:
    """The cluster's session directory: its shards, each the directory of the chats that hash to
    it (actors/names.py:shard_of). Every call goes straight to the chat's shard; the shards'
    actors are looked up by name on first use, so a handle can be built (and pickled) anywhere."""

    def __init__(self, shards: int, actors: dict[int, ActorHandle] | None = None) -> None:
        if shards < 1:
            raise ValueError("a directory has at least one shard")
        self.shards = shards
        self._actors = dict(actors or {})

    @classmethod
    def lookup(cls) -> DirectoryHandle:
        """The running directory (raises ValueError if none was started). Its shard count is
        that of the shards started; it is looked up once per process and cluster."""
        cluster = ray.get_runtime_context().gcs_address
        found = _looked_up.get(cluster)
        if found is None:
            actors: dict[int, ActorHandle] = {}
            while True:
                try:
                    actors[len(actors)] = ray.get_actor(directory_name(len(actors)), namespace=NAMESPACE)
                except ValueError:
                    break
            if not actors:
                raise ValueError("no session directory runs on this Ray cluster")
            found = _looked_up[cluster] = cls(len(actors), actors)
        return found

    @staticmethod
    def forget() -> None:
        """Drop the looked-up directories (the runtime that ran them stopped)."""
        _looked_up.clear()

    def shard(self, index: int) -> ActorHandle:
        actor = self._actors.get(index)
        if actor is None:
            actor = self._actors[index] = ray.get_actor(directory_name(index), namespace=NAMESPACE)
        return actor

    def of(self, chat_id: str) -> ActorHandle:
        """The shard that serves the chat."""
        return self.shard(shard_of(chat_id, self.shards))

    def _all(self) -> list[ActorHandle]:
        return [self.shard(index) for index in range(self.shards)]

    async def session(self, app_id: str, user_id: str, chat_id: str,
                      dead: SessionHandle | None = None) -> SessionHandle | None:
        """The chat's live session, activating one if needed; None if this app and user have no
        such chat. ``dead`` is a session the caller saw die: it is replaced."""
        actor = await self.of(chat_id).get.remote(app_id, user_id, chat_id, dead.actor_id if dead else None)
        return SessionHandle(actor) if actor is not None else None

    async def follow(self, app_id: str, user_id: str, chat_id: str, gone: SessionHandle, crashed: bool,
                     wait_s: float) -> SessionHandle | None:
        """The chat's session after ``gone`` stopped serving it: re-activated after a crash, else
        waited for (up to ``wait_s``, then None) until a message or a connection activates it."""
        exists, actor = await self.of(chat_id).follow.remote(app_id, user_id, chat_id, gone.actor_id, crashed, wait_s)
        if not exists:
            raise ChatNotFound(chat_id)
        return SessionHandle(actor) if actor is not None else None

    async def peek(self, chat_id: str) -> SessionHandle | None:
        """The chat's resident session, without activating one."""
        actor = await self.of(chat_id).peek.remote(chat_id)
        return SessionHandle(actor) if actor is not None else None

    async def passivate(self, chat_id: str, session: SessionHandle) -> bool:
        """``session`` has been idle long enough and asks to go; True if it was released."""
        result: bool = await self.of(chat_id).passivate.remote(chat_id, session.actor_id)
        return result

    async def fenced(self, chat_id: str, session: SessionHandle) -> None:
        """``session`` found a newer owner of the chat and let it go."""
        await self.of(chat_id).fenced.remote(chat_id, session.actor_id)

    async def ready(self) -> int:
        """Fill every shard's warm pool; returns their sizes together."""
        sizes: list[int] = await asyncio.gather(*(actor.ready.remote() for actor in self._all()))
        return sum(sizes)

    async def configure(self, idle_timeout_s: float | None = None, max_resident_sessions: int | None = None,
                        warm_pool_size: int | None = None, warm_pool_max: int | None = None,
                        warm_pool_window_s: float | None = None,
                        activation_grace_s: float | None = None) -> LifecyclePolicy:
        """Change the lifecycle policy of every shard at run time; returns the previous one."""
        previous: list[LifecyclePolicy] = await asyncio.gather(*(
            actor.configure.remote(idle_timeout_s, max_resident_sessions, warm_pool_size, warm_pool_max,
                                   warm_pool_window_s, activation_grace_s) for actor in self._all()))
        return previous[0]

    async def stats(self) -> DirectoryStats:
        """The shards' figures added up (the policy is the same in all of them)."""
        shards: list[DirectoryStats] = await asyncio.gather(*(actor.stats.remote() for actor in self._all()))
        return DirectoryStats(resident=sum(s.resident for s in shards), pool=sum(s.pool for s in shards),
                              wakeups=sum(s.wakeups for s in shards),
                              per_node=dict(sum((Counter(s.per_node) for s in shards), Counter())),
                              pool_per_node=dict(sum((Counter(s.pool_per_node) for s in shards), Counter())),
                              pool_target=sum(s.pool_target for s in shards),
                              arrivals_per_s=sum(s.arrivals_per_s for s in shards),
                              boot_s=max(s.boot_s for s in shards),
                              policy=shards[0].policy,
                              counters=dict(sum((Counter(s.counters) for s in shards), Counter())),
                              shards=[s.model_copy(update={"shards": []}) for s in shards])

    async def pids(self) -> list[int]:
        """Each shard's process id, by shard (for tests that kill or freeze one)."""
        pids: list[int] = await asyncio.gather(*(actor.pid.remote() for actor in self._all()))
        return pids


_looked_up: dict[str, DirectoryHandle] = {}  # gcs address -> the directory running there
