"""Typed handles over the runtime's two actors, as ``ray.util.queue.Queue`` is over its actor: the
only code that names their remote methods. Callers (the socket, the broker, journeys, tools) get
typed methods and pydantic results, and one exception, ``SessionGone``, for "that session no longer
serves this chat" however Ray or the session said it.

A handle pickles with its Ray handle inside, so it may be passed to actors and tasks as it is.
"""

from __future__ import annotations

from typing import Any

import ray
from pydantic import BaseModel
from ray.actor import ActorHandle

from actors.names import DIRECTORY_NAME, NAMESPACE
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


class LifecyclePolicy(BaseModel):
    idle_timeout_s: float
    max_resident_sessions: int
    warm_pool_size: int


class DirectoryStats(BaseModel):
    resident: int
    pool: int
    wakeups: int
    per_node: dict[str, int]
    pool_per_node: dict[str, int] = {}  # warm-pool actors by node
    policy: LifecyclePolicy
    counters: dict[str, int]  # activations, passivations, crashes, fenced, evictions, … (absent = 0)

    def count(self, name: str) -> int:
        return self.counters.get(name, 0)


class SessionHandle:
    """One session actor process. It serves one chat at a time, so every call names the chat it
    is meant for; a call that reaches it after it let the chat go raises ``SessionGone``."""

    def __init__(self, actor: ActorHandle) -> None:
        self.actor = actor

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SessionHandle) and self.actor._actor_id == other.actor._actor_id

    def __hash__(self) -> int:
        return hash(self.actor._actor_id)

    def __repr__(self) -> str:
        return f"SessionHandle({self.actor._actor_id.hex()})"

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
    """The cluster's session directory: finds or activates a chat's session."""

    def __init__(self, actor: ActorHandle) -> None:
        self.actor = actor

    @classmethod
    def lookup(cls) -> DirectoryHandle:
        """The running directory (raises ValueError if none was started)."""
        return cls(ray.get_actor(DIRECTORY_NAME, namespace=NAMESPACE))

    async def session(self, app_id: str, user_id: str, chat_id: str,
                      dead: SessionHandle | None = None) -> SessionHandle | None:
        """The chat's live session, activating one if needed; None if this app and user have no
        such chat. ``dead`` is a session the caller saw die: it is replaced."""
        actor = await self.actor.get.remote(app_id, user_id, chat_id, dead.actor if dead else None)
        return SessionHandle(actor) if actor is not None else None

    async def follow(self, app_id: str, user_id: str, chat_id: str, gone: SessionHandle, crashed: bool,
                     wait_s: float) -> SessionHandle | None:
        """The chat's session after ``gone`` stopped serving it: re-activated after a crash, else
        waited for (up to ``wait_s``, then None) until a message or a connection activates it."""
        exists, actor = await self.actor.follow.remote(app_id, user_id, chat_id, gone.actor, crashed, wait_s)
        if not exists:
            raise ChatNotFound(chat_id)
        return SessionHandle(actor) if actor is not None else None

    async def peek(self, chat_id: str) -> SessionHandle | None:
        """The chat's resident session, without activating one."""
        actor = await self.actor.peek.remote(chat_id)
        return SessionHandle(actor) if actor is not None else None

    async def passivate(self, chat_id: str, session: SessionHandle) -> bool:
        """``session`` has been idle long enough and asks to go; True if it was released."""
        result: bool = await self.actor.passivate.remote(chat_id, session.actor)
        return result

    async def fenced(self, chat_id: str, session: SessionHandle) -> None:
        """``session`` found a newer owner of the chat and let it go."""
        await self.actor.fenced.remote(chat_id, session.actor)

    async def ready(self) -> int:
        """Fill the warm pool; returns its size."""
        result: int = await self.actor.ready.remote()
        return result

    async def configure(self, idle_timeout_s: float | None = None, max_resident_sessions: int | None = None,
                        warm_pool_size: int | None = None) -> LifecyclePolicy:
        """Change the lifecycle policy at run time; returns the previous one."""
        result: LifecyclePolicy = await self.actor.configure.remote(idle_timeout_s, max_resident_sessions,
                                                                    warm_pool_size)
        return result

    async def stats(self) -> DirectoryStats:
        result: DirectoryStats = await self.actor.stats.remote()
        return result
