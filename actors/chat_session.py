"""The ChatSession Ray actor: the single writer of one chat's state and log while it is bound to it.

Lifecycle. The directory starts actors blank and ``prepare``s them off the user's critical path
(store open, workflows loaded); ``activate`` binds one to a chat, taking ownership in the store
with a new epoch and rebuilding the chat from its log; ``release`` unbinds it again once the chat
is idle (passivation: the store already holds everything), after which the directory may bind
the same process to another chat. All per-chat state lives in one ``_Binding`` that is dropped
whole, so nothing of one chat survives into the next.

Because a process may serve several chats over its life, every call names the chat it is meant
for; a caller whose handle predates a release gets ``StaleOwnerError`` and asks the directory
again. Sockets watch the chat by long-polling ``poll`` (a poll is not activity: it does not keep
the chat resident); client messages arrive through ``submit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import ray

from actors import children, waits
from actors.agent_turn import resolve_model
from actors.commits import stored_wire
from actors.engine import SessionEngine
from actors.event_hub import EventHub
from actors.handles import Attached, DirectoryHandle, Poll, Serving, SessionHandle, SessionStatus
from actors.journeys import advance_journeys
from mozaiks.protocol.client_messages import ChatCancel, ChatMessage, UiToolResponse, UserInputSubmit
from mozaiks import logs
from mozaiks.errors import ChatNotFound, StaleOwnerError
from mozaiks.protocol.events import Ack, ChatMeta, ToolProgress
from mozaiks.providers.registry import ProviderRegistry
from mozaiks.settings import Settings
from mozaiks.store import DuplicateMessageError, open_store
from capabilities.installs import InstalledWorkflows, summary
from mozaiks.protocol.errors import ApiError
from workflows.catalog import WorkflowCatalog
from workflows.loader import WorkflowError
from workflows.model import ModelConfig

log = logging.getLogger("mozaiks.session")

# The wake-up a resident chat has in the store: due at once, whenever a directory shard reads it.
RESIDENT_MARK = 0.0
# A watcher that has not polled for this long is considered gone (its ingress replica died).
WATCHER_LEASE_S = 60.0


@dataclass(eq=False)
class _Binding:
    """Everything the actor holds for the one chat it serves."""

    engine: SessionEngine
    hub: EventHub
    idle_timeout_s: float
    activation_grace_s: float  # LifecyclePolicy.activation_grace_s
    watchers: dict[str, float] = field(default_factory=dict)  # watcher id -> last poll (monotonic)
    in_flight: int = 0  # client calls being handled right now
    last_touch: float = field(default_factory=time.monotonic)
    ended: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    lifecycle: asyncio.Task[None] | None = None
    nudge: asyncio.Event = field(default_factory=asyncio.Event)  # look now, not at the next tick
    calls: int = 0  # Ray calls served about this chat (SessionStatus.calls)
    reached: bool = False  # a caller attached or called since the activation

    @property
    def chat_id(self) -> str:
        return self.engine.chat.chat_id

    def active_watchers(self) -> int:
        cutoff = time.monotonic() - WATCHER_LEASE_S
        for watcher, seen in list(self.watchers.items()):
            if seen < cutoff:
                del self.watchers[watcher]  # its next poll, if any, re-attaches
        return len(self.watchers)

    def idle_for(self) -> float:
        return time.monotonic() - max(self.last_touch, self.hub.last_publish)

    def keep_alive_s(self) -> float:
        """How long the chat may be idle before it passivates: the activation's grace at least until
        a caller reaches it (unless it is to go at once)."""
        if self.reached or self.idle_timeout_s == 0.0:
            return self.idle_timeout_s
        return max(self.idle_timeout_s, self.activation_grace_s)

    def passivatable(self) -> bool:
        """Nothing running: waiting for a user is not work, even with the user's socket open (it
        stays open on the ingress and follows the chat through the directory)."""
        return self.in_flight == 0 and self.engine.settled()

    def release_soon(self) -> None:
        """Passivate as soon as nothing runs, without waiting out the idle timeout."""
        self.idle_timeout_s = 0.0
        self.nudge.set()

    def wake_at(self) -> float | None:
        """When a durable wait of this chat times out (epoch seconds): the chat must be resident then."""
        return waits.open_deadline(self.engine.state)


@ray.remote(num_cpus=0, max_restarts=0)
class ChatSession:
    def __init__(self, settings: Settings, directory: DirectoryHandle) -> None:
        logs.configure(settings.log_format, settings.log_level)
        self.settings = settings
        self.directory = directory
        self.store = open_store(settings.resolved_store_url, single_chat=True)
        self.catalog = WorkflowCatalog(settings.workflows_dir)
        self.workflows = InstalledWorkflows(settings, self.catalog, self.store)
        self.providers = ProviderRegistry(settings)
        self.binding: _Binding | None = None
        self.handle = SessionHandle(ray.get_runtime_context().current_actor)

    # ------------------------------------------------------------------ lifecycle
    async def prepare(self) -> str:
        """Do the slow part of activation while blank: open the store, parse the workflows, build
        and warm the model providers their agents use, so a chat's first reply in this process pays
        none of it (a passivated chat comes back to any pooled process).
        Returns the node this actor lives on (the directory caps resident sessions per node)."""
        await self.store.init()
        try:
            models = await asyncio.to_thread(self._models)
        except WorkflowError:
            log.exception("a workflow failed to load; it is reported again when a chat uses it")
        else:
            await self.providers.preload(models)
        return ray.get_runtime_context().get_node_id()

    def _models(self) -> list[ModelConfig]:
        """Every agent's model in the deployed workflows (parsing them is file IO: off the loop)."""
        return [resolve_model(workflow, agent.name, self.settings)
                for workflow in self.catalog.all().values() for agent in workflow.agents]

    async def pid(self) -> int:
        return os.getpid()

    async def serving(self) -> Serving:
        """The chat this actor serves, for a directory shard that restarted and adopts it."""
        node_id = ray.get_runtime_context().get_node_id()
        if self.binding is None:
            return Serving(node_id=node_id)
        chat = self.binding.engine.chat
        return Serving(node_id=node_id, chat_id=chat.chat_id, app_id=chat.app_id, user_id=chat.user_id)

    async def ping(self) -> str:
        """The chat this actor serves, or "" while blank."""
        return self.binding.chat_id if self.binding else ""

    async def activate(self, app_id: str, user_id: str, chat_id: str, idle_timeout_s: float,
                       activation_grace_s: float) -> ChatMeta | None:
        """Bind this blank actor to a chat. Returns chat_meta data, or None if no such chat."""
        if self.binding is not None:
            raise RuntimeError(f"session actor already serves chat {self.binding.chat_id}")
        try:
            epoch = await self.store.claim(app_id, user_id, chat_id)
        except ChatNotFound:
            return None
        # Read after the claim: from here on the previous owner can no longer move last_seq. The
        # mark says "resident" until release() replaces it: if this process dies while the
        # directory shard is down too, the shard's next life re-activates the chat from it.
        chat, _ = await asyncio.gather(self.store.get_chat(app_id, user_id, chat_id),
                                       self.store.set_wakeup(app_id, user_id, chat_id, RESIDENT_MARK))
        assert chat is not None
        workflow = await self.workflows.get(chat.app_id, chat.workflow_name)
        hub = EventHub()
        binding: _Binding

        async def on_run_end(status: str) -> None:
            await advance_journeys(engine, self.catalog, status)
            if await children.report_to_parent(engine, status):
                binding.release_soon()  # a child that ended gives its process back at once

        engine = SessionEngine(self.settings, self.store, workflow, chat, epoch, hub, self.providers, self.handle,
                               on_run_end=on_run_end, workflows=self.workflows)
        binding = _Binding(engine, hub, idle_timeout_s, activation_grace_s)
        self.binding = binding
        try:
            await engine.load()
            await engine.resume()
        except BaseException:
            await self._unbind(binding, "failed")
            raise
        binding.lifecycle = asyncio.create_task(self._lifecycle(binding))
        return engine.meta()

    async def release(self, chat_id: str) -> tuple[bool, float | None]:
        """Unbind from the chat if it is idle (the directory calls this, holding the chat's lock).
        Returns whether it did, and when the chat's open wait times out, so the directory can
        wake it then."""
        binding = self.binding
        if binding is None or binding.chat_id != chat_id:
            return True, None
        if not binding.passivatable():
            return False, None
        wake_at = binding.wake_at()
        chat = binding.engine.chat
        # In the store, not only in the directory's memory: a whole-runtime restart must still
        # time the wait out on time.
        await self.store.set_wakeup(chat.app_id, chat.user_id, chat_id, wake_at)
        await self._unbind(binding, "released")
        return True, wake_at

    async def lifetime(self, chat_id: str) -> str:
        """Returns when this actor stops serving the chat; fails with RayActorError if it dies first.
        The directory keeps one such call open per resident chat to notice crashes."""
        binding = self.binding
        if binding is None or binding.chat_id != chat_id:
            return "released"
        return await asyncio.shield(binding.ended)

    async def _unbind(self, binding: _Binding, reason: str) -> None:
        if self.binding is binding:
            self.binding = None
        await binding.engine.stop()
        binding.hub.wake()  # polls in progress return and find the chat gone
        if binding.lifecycle is not None and binding.lifecycle is not asyncio.current_task():
            binding.lifecycle.cancel()
        if not binding.ended.done():
            binding.ended.set_result(reason)

    async def _lifecycle(self, binding: _Binding) -> None:
        """Passivate after the idle timeout; leave at once when a newer owner fenced us out."""
        tick = min(max(binding.idle_timeout_s / 10, 0.05), 5.0)
        while self.binding is binding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(binding.nudge.wait(), tick)
            binding.nudge.clear()
            if binding.engine.stale:
                await self._retire(binding)
                return
            if binding.passivatable() and binding.idle_for() >= binding.keep_alive_s():
                # The directory decides, under the chat's lock, and calls release() back.
                await self.directory.passivate(binding.chat_id, self.handle)

    async def _retire(self, binding: _Binding) -> None:
        log.warning("chat %s has a newer owner; this session stops", binding.chat_id)
        await self._unbind(binding, "fenced")
        await self.directory.fenced(binding.chat_id, self.handle)

    def _bound(self, chat_id: str, counted: bool = True) -> _Binding:
        binding = self.binding
        if binding is None or binding.chat_id != chat_id or binding.engine.stale:
            raise StaleOwnerError(f"this session actor does not serve chat {chat_id}")
        binding.calls += counted
        return binding

    @contextmanager
    def _serving(self, chat_id: str) -> Iterator[_Binding]:
        """A client call: the chat is not idle while it runs, nor can it passivate under it."""
        binding = self._bound(chat_id)
        binding.in_flight += 1
        binding.reached = True
        try:
            yield binding
        except StaleOwnerError:
            binding.nudge.set()  # fenced out: no need to wait for the next tick to leave
            raise
        finally:
            binding.in_flight -= 1
            binding.last_touch = time.monotonic()

    # ------------------------------------------------------------------ watchers
    async def attach(self, chat_id: str, watcher_id: str) -> Attached:
        with self._serving(chat_id) as binding:
            binding.watchers[watcher_id] = time.monotonic()
            attached = Attached(meta=binding.engine.meta(), offset=binding.hub.offset)
            await binding.engine.on_attach()
            return attached

    async def detach(self, chat_id: str, watcher_id: str) -> None:
        binding = self.binding
        if binding is not None and binding.chat_id == chat_id:
            binding.watchers.pop(watcher_id, None)
            binding.last_touch = time.monotonic()

    async def poll(self, chat_id: str, watcher_id: str, after: int, timeout: float) -> Poll:
        binding = self._bound(chat_id)
        if watcher_id not in binding.watchers:
            raise StaleOwnerError(f"watcher {watcher_id} is not attached to chat {chat_id}")
        binding.watchers[watcher_id] = time.monotonic()
        items, offset, gap = await binding.hub.wait(after, timeout)
        if self.binding is not binding or binding.engine.stale:
            raise StaleOwnerError(f"this session actor no longer serves chat {chat_id}")
        return Poll(items=items, offset=offset, gap=gap)

    async def read_events(self, chat_id: str, after_seq: int, upto_seq: int | None = None) -> list[tuple[int, str]]:
        """Durable events with after_seq < seq <= upto_seq, as (seq, envelope JSON), for replay."""
        chat = self._bound(chat_id).engine.chat
        limit = None if upto_seq is None else max(0, upto_seq - after_seq)
        events = await self.store.read_events(chat.app_id, chat.user_id, chat.chat_id, after_seq, limit)
        return [(e.seq, stored_wire(chat.chat_id, e)) for e in events if upto_seq is None or e.seq <= upto_seq]

    # ------------------------------------------------------------------ client messages
    async def submit(self, chat_id: str, message: ChatMessage) -> Ack:
        """Handle one client message; returns its ack. Persisted before it is acked."""
        with self._serving(chat_id) as binding:
            engine = binding.engine
            try:
                match message:
                    case UserInputSubmit():
                        return await engine.submit_text(message.id, message.text, message.input_request_id)
                    case UiToolResponse():
                        return await engine.submit_ui_response(message.id, message.call_id, message.response)
                    case ChatCancel():
                        cancelled = await engine.cancel(message.mode)
                        return Ack(id=message.id, status="accepted" if cancelled else "rejected",
                                   reason=None if cancelled else "no_run_in_progress")
            except DuplicateMessageError:
                return Ack(id=message.id, status="duplicate")

    async def cancel(self, chat_id: str, mode: str) -> bool:
        with self._serving(chat_id) as binding:
            return await binding.engine.cancel(mode)

    async def start(self, chat_id: str) -> None:
        """Start an AgentDriven chat that nobody has opened yet (a journey's next step)."""
        with self._serving(chat_id) as binding:
            await binding.engine.on_attach()

    async def start_child(self, chat_id: str, seed_id: str, text: str) -> None:
        """Start a fan-out's child chat (actors/children.py) with its seed message, unless it
        started already; the seed's id makes a racing second start a duplicate."""
        with self._serving(chat_id) as binding:
            engine = binding.engine
            if engine.state.runs_started:  # the seed would otherwise answer the child's own questions
                return
            with contextlib.suppress(DuplicateMessageError):
                await engine.submit_text(seed_id, text, None)

    async def children_changed(self, chat_id: str) -> None:
        """One of this chat's children ended (its outcome is in the store)."""
        with self._serving(chat_id) as binding:
            await children.advance(binding.engine)

    async def tool_progress(self, chat_id: str, call_id: str, name: str, fraction: float, message: str) -> None:
        binding = self.binding
        if binding is not None and binding.chat_id == chat_id:
            binding.engine.publish_ephemeral(None, ToolProgress(
                call_id=call_id, name=name, progress=max(0.0, min(1.0, float(fraction))), message=message))

    async def install_workflow(self, chat_id: str, name: str, files: dict[str, str],
                               capability: dict[str, Any] | None) -> dict[str, Any]:
        """A tool of this chat installs a workflow for the chat's app (``ctx.install_workflow``).

        Allowed only when the chat's workflow is one the operator deployed and named in
        ``settings.generator_workflows``: this check, here in the session and not in the tool's
        process, is what keeps any other workflow's code from installing code. Returns the install
        summary, or the error envelope (an ApiError does not survive pickling).
        """
        chat = self._bound(chat_id).engine.chat
        generator = chat.workflow_name
        if generator not in self.settings.generator_workflows or generator not in self.catalog.names():
            return ApiError(403, "forbidden", f"Workflow {generator!r} is not a generator "
                                              "(settings.generator_workflows)").envelope()
        try:
            record, _ = await self.workflows.install(chat.app_id, name, files, capability,
                                                     installed_by=f"workflow:{generator}/{chat_id}")
        except ApiError as exc:
            return exc.envelope()
        return summary(record).model_dump()

    async def status(self, chat_id: str) -> SessionStatus:
        binding = self._bound(chat_id, counted=False)
        return SessionStatus(**binding.engine.meta().model_dump(), watchers=binding.active_watchers(),
                             idle_s=binding.idle_for(), passivatable=binding.passivatable(),
                             commits=binding.engine.committer.commits, calls=binding.calls)
