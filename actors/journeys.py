"""Journeys (`_pack/workflow_graph.json`): when a run of a journey step completes, the chats of the
next step are created for the same app and user, each activated as its own session actor, and
started at once — nobody has opened them yet.

One user's pass through a journey is an *instance*, named by the chat id of its first step; the
chats it creates carry ``{"journey": {"id", "instance", "step"}}`` in their context, next to the
first chat's own context. A parallel step advances only when every member completed. Each member
is counted once, atomically in the store, and the step is claimed once, so of members finishing
together in different actors exactly one advances it. Advancing is idempotent and re-run when
the session died between a run's end and the end of its hook.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from actors.engine import SessionEngine
from actors.handles import DirectoryHandle
from mozaiks.protocol.events import JourneyChat, JourneyNext
from mozaiks.store.base import ChatRecord, Store
from workflows.catalog import WorkflowCatalog
from workflows.pack import JOURNEY_CONTEXT_KEY, JourneyProgress, JourneyTag, PackGraph

log = logging.getLogger("mozaiks.journeys")


def _tag(chat: ChatRecord) -> JourneyTag | None:
    raw = chat.context.get(JOURNEY_CONTEXT_KEY)
    try:
        return JourneyTag.model_validate(raw) if raw is not None else None
    except ValidationError:
        return None


async def advance_journeys(engine: SessionEngine, catalog: WorkflowCatalog, run_status: str) -> None:
    """The session's run-end hook. Only a completed run advances: failed, cancelled and max_turns
    runs leave the journey where it is."""
    if run_status != "completed":
        return
    try:
        pack = catalog.pack()
        if pack is not None:
            for progress, instance in _positions(engine.chat, pack):
                await _advance(engine, progress, instance)
    except Exception:  # the run's outcome is already durable: a journey problem must not rewrite it
        log.exception("journey of chat %s did not advance", engine.chat.chat_id)


def _positions(chat: ChatRecord, pack: PackGraph) -> list[tuple[JourneyProgress, str]]:
    """Where this chat stands in each journey, with the journey instance's id."""
    tag = _tag(chat)
    if tag is not None:
        return [(p, tag.instance) for p in pack.next_steps(chat.workflow_name, tag.id) if p.step_index == tag.step]
    # A chat the user started themselves begins an instance of each journey that opens with its
    # workflow alone (a member of a parallel first step has no siblings to wait for).
    return [(p, chat.chat_id) for p in pack.next_steps(chat.workflow_name)
            if p.step_index == 0 and p.step == [chat.workflow_name]]


async def _advance(engine: SessionEngine, progress: JourneyProgress, instance: str) -> None:
    """Every step here is idempotent, so the whole advance runs again, safely, when the session
    died part-way (``SessionEngine.resume`` re-runs the run-end hook): each member's completion is
    its own once-only counter, the step is claimed by exactly one member (who may claim it again),
    the next chats are created under idempotency keys, starting a started chat does nothing, and
    ``chat.journey_next`` is committed once, with the snapshot that remembers it was."""
    store, chat = engine.store, engine.chat
    announced = f"{progress.journey_id}:{instance}:{progress.step_index}"
    if announced in engine.state.journeys_announced:
        return  # a later run of the same chat, or a re-run after everything was done
    step_key = f"journey:{chat.app_id}:{chat.user_id}:{instance}:{progress.step_index}"
    await store.counter_try_consume(f"{step_key}:{chat.workflow_name}", 1, 1)
    done = [await store.counter_get(f"{step_key}:{name}") > 0 for name in progress.step]
    waiting = [name for name, ended in zip(progress.step, done, strict=True) if not ended]
    created: list[ChatRecord] = []
    if not waiting and await _claim(store, f"{step_key}:advanced", progress.step.index(chat.workflow_name) + 1):
        tag = JourneyTag(id=progress.journey_id, instance=instance, step=progress.step_index + 1)
        created = list(await asyncio.gather(*(_create(store, chat, tag, name) for name in progress.next_step)))
        await asyncio.gather(*(_start(c) for c in created))
    engine.state.journeys_announced.append(announced)
    await engine.commit([(None, JourneyNext(
        journey_id=progress.journey_id, instance=instance, step=progress.step_index,
        next=[JourneyChat(workflow_name=c.workflow_name, chat_id=c.chat_id) for c in created],
        waiting_for=waiting))])


async def _claim(store: Store, key: str, member: int) -> bool:
    """Whether ``member`` (1-based) is the one that advances the step: the first to ask, or the
    same one asking again."""
    claimed, value = await store.counter_try_consume(key, member, member)
    return claimed or value == member


async def _create(store: Store, chat: ChatRecord, tag: JourneyTag, workflow_name: str) -> ChatRecord:
    context = {k: v for k, v in chat.context.items() if k != JOURNEY_CONTEXT_KEY}
    record = ChatRecord.new(chat.app_id, chat.user_id, workflow_name, {**context, JOURNEY_CONTEXT_KEY: tag.model_dump()},
                            chat.tenant_id)
    # Idempotent: advancing the same step again finds the chats it created the first time.
    existing, _ = await store.create_chat(record, f"journey:{tag.instance}:{tag.step}:{workflow_name}")
    return existing


async def _start(chat: ChatRecord) -> None:
    session = await DirectoryHandle.lookup().session(chat.app_id, chat.user_id, chat.chat_id)
    if session is not None:
        await session.start(chat.chat_id)
