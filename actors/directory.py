"""Finds or activates the one session actor of a chat; passivates, caps and recycles them.

One shard of the cluster's directory: a named actor serving the chats that hash to it
(actors/names.py:shard_of; ``settings.directory_shards`` of them), placed off the head when
there are other nodes and restarted by Ray (elsewhere, if its node died). It does not own its
session actors: they are detached and named with the shard's prefix, so they keep serving their
chats while the shard is down, and the restarted shard adopts the live ones (``_restore``). Each
shard keeps its own warm pool and its share of the per-node cap.

- **Activation** of a chat is serialised by a per-chat lock: any number of concurrent connects and
  broker calls end with one live actor. The store's epoch fences out any actor this directory
  lost track of.
- **Warm pool** (``actors.warm_pool``): blank, prepared actors, so starting a chat does not wait
  for a process to boot; it takes back every passivated session's process too.
- **Passivation**: a session that has been idle for ``idle_timeout_s`` (a keep-alive of seconds)
  asks to be passivated; the directory releases it under the chat's lock and recycles the process
  into the pool. Open sockets do not keep a chat resident: a socket whose chat passivated stays
  open on the ingress and ``follow``s the chat, which waits here, without activating it, until
  the next message, UI answer, cancel or reconnect activates it again. When a
  node holds ``max_resident_sessions``, activating another chat there first
  passivates the least recently used idle one. A chat whose open wait has a timeout is woken
  again at that moment; the session writes that moment to the store as it passivates, and
  ``ready`` takes the stored ones up, so a whole-runtime restart keeps them.
- **Crash recovery**: the directory keeps a ``lifetime`` call open on every resident session;
  when the process dies, the chat is re-activated from its log at once, so a turn in progress
  continues even with nobody connected. A session marks its chat resident in the store as it
  activates (a wake-up due at once, replaced as it passivates): a session that died while its
  shard was down is found that way, and its chat re-activated, when the shard comes back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.coordination import KeyedLocks, WakeupTimer
from actors.handles import DirectoryHandle, DirectoryStats, LifecyclePolicy, actor_id
from actors.names import DIRECTORY_PREFIX, NAMESPACE, SESSION_PREFIX, directory_name, session_prefix, shard_of
from actors.usage import prune_usage
from actors.warm_pool import PoolLimits, SessionProcess, WarmPool
from mozaiks import logs, metrics
from mozaiks.settings import Settings
from mozaiks.store import open_store

log = logging.getLogger("mozaiks.directory")

HEAD_NODE_RESOURCE = "node:__internal_head__"  # what Ray's head node offers and no other node does

# How many least-recently-used chats one activation asks before it gives up making room.
EVICTION_CANDIDATES = 8
# A chat whose session keeps crashing is re-activated automatically at most this often; after
# that it waits for its next connection or message.
AUTO_RESTART_EVERY_S = 30.0
RETENTION_EVERY_S = 24 * 3600.0  # how often usage older than usage_retention_days is deleted
GAUGES_EVERY_S = 2.0
PLACEMENT_ATTEMPTS, PLACEMENT_RETRY_S = 5, 1.0  # a shard started on the head is started again  # how often the per-node residency gauges are set (Ray exports every few seconds)


@dataclass(eq=False)
class _Resident:
    actor: SessionProcess
    app_id: str
    user_id: str


# Every open socket of a passivated chat parks a ``follow`` call here, and every resident chat a
# ``lifetime`` call: far more than the default 1,000 concurrent calls of an async actor.
@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3, max_concurrency=100_000)
class SessionDirectory:
    def __init__(self, settings: Settings, shard: int = 0) -> None:
        logs.configure(settings.log_format, settings.log_level)
        self.settings = settings
        self.shard = shard
        self.policy = LifecyclePolicy(idle_timeout_s=settings.idle_timeout_s,
                                      activation_grace_s=settings.activation_grace_s,
                                      max_resident_sessions=settings.max_resident_sessions,
                                      warm_pool_size=settings.warm_pool_size,
                                      warm_pool_max=settings.warm_pool_max,
                                      warm_pool_window_s=settings.warm_pool_window_s)
        self.resident: OrderedDict[str, _Resident] = OrderedDict()  # least recently used first
        self.per_node: Counter[str] = Counter()
        self.locks = KeyedLocks()
        self.wakeups: WakeupTimer[tuple[str, str, str]] = WakeupTimer(
            lambda key: self._spawn(self._wake(*key)))
        self.restarted_at: dict[str, float] = {}
        # Sockets following a passivated chat: resolved at its next activation.
        self.activated: dict[str, asyncio.Future[None]] = {}
        self.followers: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        # What this shard's sessions call back (passivate, fenced): they serve only its chats.
        self.handle = DirectoryHandle(settings.directory_shards, {shard: ray.get_runtime_context().current_actor})
        self._tasks: set[asyncio.Task[Any]] = set()
        # When the pool is empty, a node at its cap lends its least recently used idle session.
        self.pool = WarmPool(settings, self.handle, session_prefix(shard), self._pool_limits,
                             lambda: self._evict(None), self._spawn, self.counters)
        self._gauges_task: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._restoring: asyncio.Future[None] | None = None

    async def ready(self) -> int:
        """Fill the warm pool before the first chat needs it, and take up the wake-ups of chats
        that passivated before this directory started; returns the pool size."""
        await self._restored()  # first: adopting ends the blank actors it finds, which must not be new ones
        await self.pool.filled()
        return len(self.pool)

    async def _restored(self) -> None:
        """Once per directory process, before it answers anything about a chat: after a start
        (``ready``) or a restart Ray made (the first call)."""
        if self._restoring is None:
            self._restoring = asyncio.ensure_future(self._restore())
        await asyncio.shield(self._restoring)

    async def _restore(self) -> None:
        await self._adopt()
        await self._load_wakeups()  # after adopting: a chat whose session lives needs no wake-up
        self._gauges_task = self._spawn(self._report_gauges())
        if self.settings.usage_retention_days is not None and self.shard == 0:
            self._retention_task = self._spawn(self._keep_usage_retention(self.settings.usage_retention_days))

    async def _adopt(self) -> None:
        """Take over the live session actors this shard started before it (re)started: those
        serving a chat become resident again, under a new crash watch; blank ones are ended (the
        pool refills), as their preparation may not have finished."""
        handles = await asyncio.to_thread(session_actors, self.shard)
        serving = await asyncio.gather(*(handle.serving.remote() for handle in handles), return_exceptions=True)
        for handle, found in zip(handles, serving, strict=True):
            if isinstance(found, BaseException):
                continue  # died meanwhile: its chat's resident mark wakes it below
            if found.chat_id is None or found.chat_id in self.resident:
                ray.kill(handle)
                continue
            entry = _Resident(SessionProcess(handle, found.node_id), found.app_id, found.user_id)
            self.resident[found.chat_id] = entry
            self.per_node[found.node_id] += 1
            self._spawn(self._watch(found.chat_id, entry))
        self.counters["adopted"] += len(self.resident)
        if self.resident:
            log.warning("directory shard %d (re)started: adopted %d live sessions", self.shard, len(self.resident))

    async def _load_wakeups(self) -> None:
        store = open_store(self.settings.resolved_store_url)
        try:
            await store.init()
            for wakeup in await store.list_wakeups():
                if self._mine(wakeup.chat_id):
                    self.wakeups.add(wakeup.wake_at, (wakeup.app_id, wakeup.user_id, wakeup.chat_id))
        except Exception:  # activation must not depend on it: those chats time out when next opened
            log.exception("the stored wake-ups could not be read; passivated chats' timeouts wait for a visit")
        finally:
            await store.close()

    async def _keep_usage_retention(self, days: int) -> None:
        store = open_store(self.settings.resolved_store_url)
        try:
            while True:
                pruned = await prune_usage(store, days)
                if pruned:
                    log.info("pruned %d usage records older than %d days", pruned, days)
                await asyncio.sleep(RETENTION_EVERY_S)
        finally:
            await store.close()

    async def _report_gauges(self) -> None:
        known: set[str] = set()
        while True:
            metrics.residency(self.shard, self.per_node, self.pool.node_ids(), known)
            await asyncio.sleep(GAUGES_EVERY_S)

    # ------------------------------------------------------------------ activation
    async def get(self, app_id: str, user_id: str, chat_id: str, dead: str | None = None) -> ActorHandle | None:
        """The chat's live session actor, activating one if needed; None if the chat does not exist
        for this app and user. ``dead`` is the actor id of a session the caller saw die: it is replaced."""
        await self._restored()
        async with self.locks.hold(chat_id):
            entry = self.resident.get(chat_id)
            if entry is not None and dead is not None and actor_id(entry.actor.handle) == dead:
                # Perhaps only unreachable: it must not live on beside its replacement.
                self._drop(chat_id)
                ray.kill(entry.actor.handle, no_restart=True)
                entry = None
            if entry is not None:
                if (entry.app_id, entry.user_id) != (app_id, user_id):
                    return None  # another tenant's chat id looks exactly like a missing one
                self.resident.move_to_end(chat_id)
                return entry.actor.handle
            return await self._activate(app_id, user_id, chat_id)

    async def follow(self, app_id: str, user_id: str, chat_id: str, gone: str, crashed: bool,
                     wait_s: float) -> tuple[bool, ActorHandle | None]:
        """For a socket whose session went away: the chat's session now. Only a crash activates it
        again from here; a passivated chat is waited for (up to ``wait_s``) until a message or a
        connection activates it, so a socket alone does not keep a chat resident. Returns whether
        the chat exists, and its session actor (None after waiting in vain)."""
        if crashed:
            handle = await self.get(app_id, user_id, chat_id, gone)
            return handle is not None, handle
        await self._restored()
        async with self.locks.hold(chat_id):
            entry = self.resident.get(chat_id)
            if entry is not None:
                if (entry.app_id, entry.user_id) != (app_id, user_id):
                    return False, None
                return True, entry.actor.handle
            activated = self.activated.get(chat_id)
            if activated is None:
                activated = self.activated[chat_id] = asyncio.get_running_loop().create_future()
            self.followers[chat_id] += 1
        try:
            await asyncio.wait_for(asyncio.shield(activated), wait_s)
        except TimeoutError:
            return True, None
        finally:
            self.followers[chat_id] -= 1
            if not self.followers[chat_id]:
                del self.followers[chat_id]
                if self.activated.get(chat_id) is activated:
                    del self.activated[chat_id]  # nobody follows it any more
        entry = self.resident.get(chat_id)
        return True, entry.actor.handle if entry is not None else None

    async def peek(self, chat_id: str) -> ActorHandle | None:
        """The chat's resident session actor, without activating one."""
        await self._restored()
        entry = self.resident.get(chat_id)
        return entry.actor.handle if entry is not None else None

    async def _activate(self, app_id: str, user_id: str, chat_id: str) -> ActorHandle | None:
        self.pool.arrived()
        # Pooled actors may have died meanwhile (all of them, when their node died): drop each
        # dead one and take the next, and at last a fresh one, which SPREAD may still place on
        # a node that is dying but not yet known dead.
        for _ in range(len(self.pool) + 2):
            try:
                actor, kind = await self.pool.take()
            except RayActorError:
                continue
            await self._make_room(actor.node_id)
            try:
                meta = await actor.handle.activate.remote(app_id, user_id, chat_id, self.policy.idle_timeout_s,
                                                         self.policy.activation_grace_s)
            except RayActorError:
                ray.kill(actor.handle)  # perhaps only unreachable: it must not linger as a blank process
                await self._drop_pool_on_dead_nodes()
                continue
            except Exception:
                self.pool.recycle(actor)  # a failed activation leaves the actor blank
                raise
            if meta is None:
                self.pool.recycle(actor)
                return None
            entry = _Resident(actor, app_id, user_id)
            self.resident[chat_id] = entry
            self.per_node[actor.node_id] += 1
            self.counters["activations"] += 1
            metrics.ACTIVATIONS.inc(app_id=app_id, kind=kind)
            if (activated := self.activated.pop(chat_id, None)) is not None and not activated.done():
                activated.set_result(None)
            self._spawn(self._watch(chat_id, entry))
            return actor.handle
        raise RuntimeError(f"no session actor could be started for chat {chat_id}")

    def _mine(self, chat_id: str) -> bool:
        return shard_of(chat_id, self.settings.directory_shards) == self.shard

    def _cap(self) -> int:
        """This shard's share of a node's resident sessions: the shards split the per-node cap
        evenly (chats hash evenly over them), so together they stay within it."""
        return max(1, self.policy.max_resident_sessions // self.settings.directory_shards)

    def _share(self, pool_size: int) -> int:
        """This shard's part of the warm pool: the size is the cluster's, split over the shards
        (rounded up, so that no shard of a non-empty pool starts every chat cold)."""
        return -(-pool_size // self.settings.directory_shards)

    def _pool_limits(self) -> PoolLimits:
        """This shard's part of the warm pool's policy: its floor and ceiling split over the shards,
        and the ceiling within this shard's share of a node's resident cap."""
        policy = self.policy
        return PoolLimits(floor=self._share(policy.warm_pool_size),
                          ceiling=min(self._share(policy.warm_pool_max), self._cap()),
                          window_s=policy.warm_pool_window_s)

    def _drop(self, chat_id: str) -> _Resident:
        entry = self.resident.pop(chat_id)
        self.per_node[entry.actor.node_id] -= 1
        return entry

    # ------------------------------------------------------------------ passivation
    async def passivate(self, chat_id: str, actor: str) -> bool:
        """A session that has been idle long enough asks to go."""
        await self._restored()
        async with self.locks.hold(chat_id):
            entry = self.resident.get(chat_id)
            if entry is None or actor_id(entry.actor.handle) != actor:
                # Passivated for room meanwhile: the process already serves the pool, or another chat.
                return False
            if not await self._release(chat_id, entry):
                return False
            self.pool.recycle(entry.actor)
            return True

    async def _make_room(self, node_id: str) -> None:
        while self.per_node[node_id] >= self._cap():
            freed = await self._evict(node_id)
            if freed is None:
                # Every resident chat there is busy: the cap yields rather than making a user wait.
                self.counters["over_cap"] += 1
                return
            self.pool.recycle(freed)

    async def _evict(self, node_id: str | None) -> SessionProcess | None:
        """Passivate the least recently used idle chat on ``node_id`` (any node at its cap if None);
        returns its now blank actor."""
        asked = 0
        for chat_id, entry in list(self.resident.items()):
            node = entry.actor.node_id
            if ((node_id is not None and node != node_id) or self.per_node[node] < self._cap()
                    or self.locks.busy(chat_id)):
                continue
            if asked == EVICTION_CANDIDATES:
                break
            asked += 1
            async with self.locks.hold(chat_id):
                if self.resident.get(chat_id) is not entry:
                    continue
                if await self._release(chat_id, entry):
                    self.counters["evictions"] += 1
                    metrics.EVICTIONS.inc()
                    return entry.actor
                if chat_id in self.resident:
                    self.resident.move_to_end(chat_id)  # busy: ask the others first next time
        return None

    async def _release(self, chat_id: str, entry: _Resident) -> bool:
        """Unbind the chat's session if it is idle (the caller holds the chat's lock)."""
        try:
            released, wake_at = await entry.actor.handle.release.remote(chat_id)
        except RayActorError:
            self._drop(chat_id)  # died meanwhile; its lifetime watch finds it gone
            return False
        if released:
            self._drop(chat_id)
            self.counters["passivations"] += 1
            metrics.PASSIVATIONS.inc(app_id=entry.app_id)
            if wake_at is not None:
                self.wakeups.add(wake_at, (entry.app_id, entry.user_id, chat_id))
        return bool(released)

    async def _wake(self, app_id: str, user_id: str, chat_id: str) -> None:
        """A passivated chat's wait timed out: activating it lets the session apply the timeout."""
        if chat_id not in self.resident:
            await self.get(app_id, user_id, chat_id)

    # ------------------------------------------------------------------ crashes and fencing
    async def _watch(self, chat_id: str, entry: _Resident) -> None:
        while True:
            try:
                await entry.actor.handle.lifetime.remote(chat_id)
                break
            except ActorUnavailableError:
                await asyncio.sleep(1.0)  # unreachable for now, maybe not dead
                if self.resident.get(chat_id) is not entry:
                    return
            except RayActorError:
                return await self._crashed(chat_id, entry)
        # Released normally: by this shard (which dropped it, holding the lock), or on its own, as
        # an adopted session whose activation failed does.
        async with self.locks.hold(chat_id):
            if self.resident.get(chat_id) is entry:
                self._drop(chat_id)
                self.pool.recycle(entry.actor)

    async def _crashed(self, chat_id: str, entry: _Resident) -> None:
        async with self.locks.hold(chat_id):
            if self.resident.get(chat_id) is not entry:
                return  # already replaced by a caller that saw it die
            self._drop(chat_id)
            self.counters["crashes"] += 1
            metrics.CRASHES.inc(app_id=entry.app_id)
        await self._drop_pool_on_dead_nodes()  # so the re-activation below does not pick one of them
        now = time.monotonic()
        self.restarted_at = {c: t for c, t in self.restarted_at.items() if now - t < AUTO_RESTART_EVERY_S}
        if chat_id not in self.restarted_at:
            self.restarted_at[chat_id] = now
            log.warning("session of chat %s died; re-activating it from its log", chat_id)
            metrics.CRASH_REACTIVATIONS.inc(app_id=entry.app_id)
            await self.get(entry.app_id, entry.user_id, chat_id)

    async def _drop_pool_on_dead_nodes(self) -> None:
        """A dead actor may mean a dead node: forget the pooled actors Ray knows died with theirs."""
        self.pool.forget_lost({node["NodeID"] for node in await asyncio.to_thread(ray.nodes) if node["Alive"]})

    async def fenced(self, chat_id: str, actor: str) -> None:
        """A session found a newer owner of its chat in the store and let go of the chat; the
        next call for the chat activates it afresh (and fences out whoever else claimed it)."""
        self.counters["fenced"] += 1
        await self._restored()
        async with self.locks.hold(chat_id):
            entry = self.resident.get(chat_id)
            if entry is None or actor_id(entry.actor.handle) != actor:
                return  # released meanwhile (it had let go already): the process may serve another chat now
            self._drop(chat_id)
            self.pool.recycle(entry.actor)

    # ------------------------------------------------------------------ operations
    async def configure(self, idle_timeout_s: float | None = None, max_resident_sessions: int | None = None,
                        warm_pool_size: int | None = None, warm_pool_max: int | None = None,
                        warm_pool_window_s: float | None = None,
                        activation_grace_s: float | None = None) -> LifecyclePolicy:
        """Change the lifecycle policy at run time (new activations use the new idle timeout).
        Returns the previous policy."""
        await self._restored()
        previous = self.policy.model_copy()
        changes = {"idle_timeout_s": idle_timeout_s, "max_resident_sessions": max_resident_sessions,
                   "warm_pool_size": warm_pool_size, "warm_pool_max": warm_pool_max,
                   "warm_pool_window_s": warm_pool_window_s, "activation_grace_s": activation_grace_s}
        for name, value in changes.items():
            if value is not None:
                setattr(self.policy, name, value)
        self.pool.reconfigured()
        return previous

    async def pid(self) -> int:
        return os.getpid()

    async def node(self) -> str:
        """The node this shard runs on."""
        return ray.get_runtime_context().get_node_id()

    async def stats(self) -> DirectoryStats:
        await self._restored()
        return DirectoryStats(resident=len(self.resident), pool=len(self.pool), wakeups=len(self.wakeups),
                              per_node={node: n for node, n in self.per_node.items() if n},
                              pool_per_node=dict(Counter(self.pool.node_ids())), pool_target=self.pool.target(),
                              arrivals_per_s=self.pool.arrivals_per_s(), boot_s=self.pool.boot_s,
                              policy=self.policy.model_copy(), counters=dict(self.counters))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("directory background task failed", exc_info=task.exception())


def get_directory(settings: Settings) -> DirectoryHandle:
    """The cluster's directory shards, created on first use (detached, so they outlive the caller)."""
    shards = settings.directory_shards
    placements = _placements(shards)
    return DirectoryHandle(shards, {
        index: SessionDirectory.options(name=directory_name(index), namespace=NAMESPACE, get_if_exists=True,
                                        lifetime="detached", scheduling_strategy=placements[index]
                                        ).remote(settings, index)
        for index in range(shards)})


def start_directory(settings: Settings) -> DirectoryHandle:
    """The runtime's start: the directory's shards, none on the head while another node lives.

    Soft node affinity falls back to any node when the raylet placing the shard does not know
    its target node yet, as on a cluster whose workers registered a moment ago: such a shard is
    ended and started again, a few times. Done only here, at start (a shard that already serves
    chats is never moved); shards that a running ingress finds are left where they are."""
    directory = get_directory(settings)
    for _ in range(PLACEMENT_ATTEMPTS):
        nodes: list[str] = ray.get([directory.shard(i).node.remote() for i in range(directory.shards)])
        misplaced = [i for i, node in enumerate(nodes) if node in _head_nodes()] if _worker_nodes() else []
        if not misplaced:
            break
        log.warning("directory shards %s started on the head; starting them again elsewhere", misplaced)
        for index in misplaced:
            ray.kill(directory.shard(index), no_restart=True)
        _until_names_free([directory_name(index) for index in misplaced])
        time.sleep(PLACEMENT_RETRY_S)  # the raylets' view of the workers catches up
        directory = get_directory(settings)
    return directory


def _until_names_free(names: list[str]) -> None:
    for name in names:
        while True:
            try:
                ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.1)


def _head_nodes() -> set[str]:
    return {node["NodeID"] for node in ray.nodes() if node["Alive"] and HEAD_NODE_RESOURCE in node["Resources"]}


def _worker_nodes() -> list[str]:
    return sorted(node["NodeID"] for node in ray.nodes()
                  if node["Alive"] and HEAD_NODE_RESOURCE not in node["Resources"])


def _placements(shards: int) -> list[Any]:
    """Where each shard starts: the nodes other than the head, in turn, so that a head restart
    (docs/cluster.md) interrupts no shard; the head only when there is nothing else. Soft: a shard
    whose node died is restarted wherever Ray finds room."""
    workers = _worker_nodes()
    if not workers:
        return ["DEFAULT"] * shards
    return [NodeAffinitySchedulingStrategy(workers[index % len(workers)], soft=True) for index in range(shards)]


def _named(prefix: str) -> list[ActorHandle]:
    """The live actors of the runtime's namespace whose names start with ``prefix``."""
    handles = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == NAMESPACE and entry["name"].startswith(prefix):
            try:
                handles.append(ray.get_actor(entry["name"], namespace=NAMESPACE))
            except ValueError:
                continue  # ended meanwhile
    return handles


def session_actors(shard: int) -> list[ActorHandle]:
    """The live session actors ``shard`` started (in any of its lives)."""
    return _named(session_prefix(shard))


def end_directory() -> None:
    """End the directory's shards and every session actor: all are detached, so nothing else
    would (a runtime that joined a cluster leaves it as it found it)."""
    for shard in _named(DIRECTORY_PREFIX):
        ray.kill(shard, no_restart=True)
    for session in _named(SESSION_PREFIX):
        ray.kill(session)
