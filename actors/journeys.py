"""Journeys (`_pack/workflow_graph.json`): when a run of a journey step completes, the chats of the
next step are created for the same app and user, each activated as its own session actor, and
started at once — nobody has opened them yet.

One user's pass through a journey is an *instance*, named by the chat id of its first step; the
chats it creates carry ``{"journey": {"id", "instance", "step"}}`` in their context, next to the
first chat's own context. A parallel step advances only when every member completed. Each member
is counted once, atomically in the store, so of members finishing together in different actors
exactly one advances it.
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
    store, chat = engine.store, engine.chat
    step_key = f"journey:{chat.app_id}:{chat.user_id}:{instance}:{progress.step_index}"
    first_time, _ = await store.counter_try_consume(f"{step_key}:{chat.workflow_name}", 1, 1)
    if not first_time:
        return  # this member was counted already (a later run of the same chat)
    # Each member adds its own bit, once: every sum returned is an exact snapshot of who completed.
    done = await store.counter_add(f"{step_key}:done", 1 << progress.step.index(chat.workflow_name))
    waiting = [name for i, name in enumerate(progress.step) if not done >> i & 1]
    created: list[ChatRecord] = []
    if not waiting:
        tag = JourneyTag(id=progress.journey_id, instance=instance, step=progress.step_index + 1)
        created = list(await asyncio.gather(*(_create(store, chat, tag, name) for name in progress.next_step)))
    await engine.commit([(None, JourneyNext(
        journey_id=progress.journey_id, instance=instance, step=progress.step_index,
        next=[JourneyChat(workflow_name=c.workflow_name, chat_id=c.chat_id) for c in created],
        waiting_for=waiting))])
    await asyncio.gather(*(_start(c) for c in created))


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
