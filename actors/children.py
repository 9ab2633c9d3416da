"""Child chats: a parent fans out to children, waits durably, and resumes with their merged results.

A trigger agent's accepted structured output (or a tool, through its ToolContext) names the
children. The parent then, in this order, each step safe to repeat after a crash:

1. moves to step ``children`` with the request in its snapshot (one commit with the agent's reply);
2. creates every child chat — same app and user, ``context.fanout_parent`` naming the parent —
   with an idempotency key per child, then the store's fan-out record listing them;
3. starts up to ``max_children`` of them, within the cluster-wide ``settings.max_running_children``
   (actors/child_slots.py), with ``chat.child_started``, then the child's own session actor through
   the directory, seeded with a message whose client id makes a second start a duplicate; and one
   more each time one ends (its own or, when the cluster cap held it back, anyone's).

A child whose run ends records its outcome in the fan-out record (exactly once: the store's
``set_child_status`` only moves a child that has not ended) and tells the parent, whose session
the directory activates if it is not resident. The parent announces each ended child
(``chat.child_completed``) and, once every child ended or ``timeout_seconds`` passed, applies
``on_partial_failure``, merges (workflows/fanin.py), sets the result under ``inject_as``
(``chat.children_merged``) and goes on at ``resume_agent``. A parent re-activated while waiting
(``resume``) reads the record and carries on where it was: the snapshot says which children it
announced, the store how each ended.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from actors import child_slots
from actors.commits import EventSpec, error_event
from actors.handles import DirectoryHandle
from actors.run_host import RunHost
from actors.run_steps import new_id
from actors.snapshot import PendingChildren, PendingInput
from actors.waits import deadline_at, open_deadline
from mozaiks.errors import FanOutNotFound
from mozaiks.protocol import events as ev
from mozaiks.protocol.events import utc_now_iso
from mozaiks.providers.base import ModelReply
from mozaiks.store.base import CHILD_ENDED, ChatRecord, ChildLink, ChildStatus, FanOutRecord, StoredEvent
from workflows.fanin import ChildOutcome, MergeError, merge
from workflows.fanout import PARENT_CONTEXT_KEY, ChildRequest, MidFlightJourney, child_requests

log = logging.getLogger("mozaiks.children")

SUMMARY_CHARS = 200
_RUN_TO_CHILD: dict[str, ChildStatus] = {"completed": "completed", "failed": "failed", "max_turns": "failed",
                                         "cancelled": "cancelled"}


class ParentLink(BaseModel):
    """``context.fanout_parent`` of a child chat."""

    chat_id: str
    fanout_id: str
    index: int


# ------------------------------------------------------------------ the parent fans out
def trigger(engine: RunHost, agent_name: str, reply: ModelReply) -> MidFlightJourney | None:
    """The journey this accepted reply triggers, if any."""
    if reply.structured is None:
        return None
    return engine.workflow.fan_out.triggered_by(agent_name)


async def fan_out(engine: RunHost, journey: MidFlightJourney, agent_name: str,
                  requests: list[ChildRequest] | None, events: list[EventSpec], usage: list[Any],
                  structured: dict[str, Any] | None = None) -> None:
    """Commit ``events`` (the trigger agent's reply) together with the move to step ``children``,
    then create and start the children. A request that names no startable child fails the run."""
    try:
        if requests is None:
            requests = child_requests(structured or {}, journey)
        requests = [_with_inputs(r, journey, engine.state.context) for r in requests]
        known = await _known_workflows(engine, requests)
        missing = sorted({r.workflow for r in requests if r.workflow not in known})
        if missing:
            raise ValueError(f"unknown child workflow(s): {', '.join(missing)}")
    except ValueError as exc:
        await engine.commit(events, usage=usage)
        await engine.finish("failed", events=[error_event(agent_name, "invalid_fan_out", str(exc))])
        return
    pending = PendingChildren(fanout_id=new_id("fo"), journey=journey, agent=agent_name, requests=requests,
                              timeout_at=deadline_at(journey.fan_out.timeout_seconds))
    engine.steps.enter("children", children=pending)
    await engine.commit(events, usage=usage)
    engine.timer.arm(open_deadline(engine.state))
    await advance(engine)


async def fan_out_from_tool(engine: RunHost, agent_name: str, request: dict[str, Any]) -> None:
    """A tool's ``ToolContext.start_children``: the same fan-out, with the journey its request spells
    (resuming, unless it says otherwise, at the agent that called the tool)."""
    fan_in = {k: v for k, v in (request.get("fan_in") or {}).items() if v is not None}
    resume = fan_in.setdefault("resume_agent", agent_name)
    try:
        journey = MidFlightJourney.model_validate({"id": f"tool:{agent_name}", "trigger_agent": agent_name,
                                                   "fan_out": request.get("fan_out") or {}, "fan_in": fan_in})
        engine.workflow.agent(resume)
    except (ValidationError, KeyError) as exc:
        message = f"unknown resume_agent {resume!r}" if isinstance(exc, KeyError) else str(exc)
        await engine.finish("failed", events=[error_event(agent_name, "invalid_fan_out", message)])
        return
    await fan_out(engine, journey, agent_name, None, [], [], {"children": request.get("children")})


async def _known_workflows(engine: RunHost, requests: list[ChildRequest]) -> set[str]:
    """The requested workflows this chat's app has (a host without a source trusts them all)."""
    names = {r.workflow for r in requests}
    if engine.workflows is None:
        return names
    known = set()
    for name in names:
        try:
            await engine.workflows.get(engine.chat.app_id, name)
            known.add(name)
        except KeyError:
            pass
    return known


def _with_inputs(request: ChildRequest, journey: MidFlightJourney, parent: dict[str, Any]) -> ChildRequest:
    """The request with the parent's context keys its journey's ``input_contract`` names."""
    contract = journey.fan_out.input_contract
    missing = [k for k in contract.required if k not in parent and k not in request.context]
    if missing:
        raise ValueError(f"the parent's context lacks {', '.join(missing)} (input_contract)")
    taken = {k: parent[k] for k in (*contract.required, *contract.optional) if k in parent}
    return request.model_copy(update={"context": {**taken, **request.context}})


# ------------------------------------------------------------------ the parent waits
async def advance(engine: RunHost, resumed: bool = False) -> None:
    """Bring the wait up to date: create what is missing, announce ended children, start the next
    ones, and resume once all ended. Serialised per chat; safe to call any number of times.
    ``resumed``: this session just took the chat over, so starts it announced may not have reached
    their children; they are made again (a child that started already ignores it)."""
    async with engine.children_lock:
        pending = engine.state.pending_children
        if engine.steps.step != "children" or pending is None:
            return
        record = await _ensure_created(engine, pending)
        ended = [c for c in record.children if c.status in CHILD_ENDED]
        newly = [c for c in ended if c.index not in pending.reported]
        events = [_completed_event(c) for c in newly]
        pending.reported += [c.index for c in newly]
        # The child freed its slot as it ended; again here, in case this parent's last call
        # (reading the record before the child ended) claimed it back.
        await _free_slots(engine, [c.chat_id for c in newly])
        if len(ended) == len(record.children):
            await _fan_in(engine, pending, record, events)
            return
        limit = pending.journey.fan_out.max_children or len(record.children)
        running = [i for i in pending.started if i not in pending.reported]
        fresh = [c for c in record.children if c.index not in pending.started and c.status == "pending"]
        fresh = await _within_cluster_cap(engine, record, running, fresh[:max(0, limit - len(running))])
        events += [(None, ev.ChildStarted(child_chat_id=c.chat_id, workflow_name=c.workflow_name,
                                          journey=pending.journey.id, index=c.index, total=len(record.children)))
                   for c in fresh]
        pending.started += [c.index for c in fresh]
        if events:
            await engine.commit(events)
        starting = {c.index for c in fresh} | (set(running) if resumed else set())
        waiting = [c for c in record.children if c.index in starting and c.status not in CHILD_ENDED]
        await asyncio.gather(*(_start(engine, pending, c) for c in waiting))


async def _within_cluster_cap(engine: RunHost, record: FanOutRecord, running: list[int],
                              fresh: list[ChildLink]) -> list[ChildLink]:
    """The ``fresh`` children the cluster-wide cap lets start now (actors/child_slots.py); if it
    holds some back, the parent is woken when a slot frees."""
    chat, by_index = engine.chat, {c.index: c for c in record.children}
    granted = set(await child_slots.acquire(engine.settings.max_running_children,
                                            (chat.app_id, chat.user_id, chat.chat_id),
                                            [by_index[i].chat_id for i in running], [c.chat_id for c in fresh]))
    return [c for c in fresh if c.chat_id in granted]


async def _free_slots(engine: RunHost, children: list[str]) -> None:
    if children:
        _wake(await child_slots.release(engine.settings.max_running_children, children), engine.chat.chat_id)


_waking: set[asyncio.Task[None]] = set()


def _wake(parents: list[child_slots.ParentKey], but: str | None = None) -> None:
    """Tell parents waiting for a slot that one freed. Not awaited: the caller may hold its own
    children lock, which a woken parent's call back (freeing a slot) would wait for."""
    for app_id, user_id, chat_id in parents:
        if chat_id != but:
            task = asyncio.create_task(_changed(app_id, user_id, chat_id))
            _waking.add(task)
            task.add_done_callback(_waking.discard)


async def _changed(app_id: str, user_id: str, chat_id: str) -> None:
    try:
        session = await DirectoryHandle.lookup().session(app_id, user_id, chat_id)
        if session is not None:
            await session.children_changed(chat_id)
    except Exception:
        log.exception("chat %s could not be told that its children changed", chat_id)


async def _ensure_created(engine: RunHost, pending: PendingChildren) -> FanOutRecord:
    chat = engine.chat
    if pending.created:
        found = await engine.store.get_fanout(chat.app_id, chat.user_id, pending.fanout_id)
        assert found is not None, pending.fanout_id
        return found
    children = await asyncio.gather(*(_create_child(engine, pending, i, r) for i, r in enumerate(pending.requests)))
    record = await engine.store.create_fanout(FanOutRecord(
        fanout_id=pending.fanout_id, app_id=chat.app_id, user_id=chat.user_id, parent_chat_id=chat.chat_id,
        journey_id=pending.journey.id, created_at=utc_now_iso(), children=list(children)))
    pending.created = True
    return record


async def _create_child(engine: RunHost, pending: PendingChildren, index: int,
                        request: ChildRequest) -> ChildLink:
    parent = engine.chat
    link = ParentLink(chat_id=parent.chat_id, fanout_id=pending.fanout_id, index=index)
    record = ChatRecord.new(parent.app_id, parent.user_id, request.workflow,
                            {**request.context, PARENT_CONTEXT_KEY: link.model_dump()}, parent.tenant_id)
    # Idempotent: creating the same child again (a restarted parent) finds the chat made the first time.
    created, _ = await engine.store.create_chat(record, f"fanout:{pending.fanout_id}:{index}")
    return ChildLink(index=index, chat_id=created.chat_id, workflow_name=request.workflow,
                     key=request.key or str(index))


async def _start(engine: RunHost, pending: PendingChildren, child: ChildLink) -> None:
    request = pending.requests[child.index]
    # Every child starts with a message (an AgentDriven one too): without one, its context as JSON.
    text = request.message or json.dumps(request.context)
    try:
        session = await DirectoryHandle.lookup().session(engine.chat.app_id, engine.chat.user_id, child.chat_id)
        if session is not None:
            await session.start_child(child.chat_id, f"fanout-seed:{pending.fanout_id}:{child.index}", text)
    except Exception:
        # The child stays started in the parent's view: the next advance (a child ending, the
        # parent re-activating) starts it again, and the fan-out's timeout bounds the wait.
        log.exception("child %s of chat %s did not start", child.chat_id, engine.chat.chat_id)


def _completed_event(child: ChildLink) -> EventSpec:
    summary = child.error if child.status != "completed" else None
    if child.status == "completed" and child.result is not None:
        summary = _text(child.result)[:SUMMARY_CHARS]
    return (None, ev.ChildCompleted(child_chat_id=child.chat_id, workflow_name=child.workflow_name,
                                    status=child.status, summary=summary))  # type: ignore[arg-type]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# ------------------------------------------------------------------ fan-in
async def _fan_in(engine: RunHost, pending: PendingChildren, record: FanOutRecord,
                  events: list[EventSpec]) -> None:
    journey = pending.journey
    by_index = {c.index: c for c in record.children}
    outcomes = [ChildOutcome(key=c.key, workflow=c.workflow_name, chat_id=c.chat_id, status=c.status,  # type: ignore[arg-type]
                             result=c.result, error=c.error) for c in (by_index[i] for i in pending.reported)]
    completed = sum(o.status == "completed" for o in outcomes)
    failed = len(outcomes) - completed
    policy = journey.fan_in.on_partial_failure
    if failed and (policy == "fail_all" or not completed):
        message = f"{failed} of {len(outcomes)} child chats did not complete"
        await engine.finish("failed", events=events + [error_event(pending.agent, "children_failed", message)])
        return
    try:
        merged = merge(journey.fan_in.merge_mode, outcomes, journey.fan_in.output_contract)
    except MergeError as exc:
        await engine.finish("failed", events=events + [error_event(pending.agent, "merge_failed", str(exc))])
        return
    usage = await _children_usage(engine, record)
    engine.state.usage.add(f"children:{journey.id}", "children", usage["prompt_tokens"], usage["completion_tokens"])
    resume = journey.fan_in.entry_agent
    events += [engine.triggers.set(journey.fan_in.inject_as, merged),
               (None, ev.ChildrenMerged(merge_mode=journey.fan_in.merge_mode, inject_as=journey.fan_in.inject_as,
                                        resume_agent=resume, completed=completed, failed=failed, usage=usage))]
    engine.timer.cancel()
    if failed and policy == "prompt_user":
        await _ask_to_continue(engine, pending, events, resume, f"{failed} of {len(outcomes)} child chats did "
                               f"not complete; reply to continue with the {completed} that did.")
    else:
        await _resume(engine, pending, events, resume)


async def _ask_to_continue(engine: RunHost, pending: PendingChildren, events: list[EventSpec],
                           resume: str | None, prompt: str) -> None:
    wait = PendingInput(request_id=new_id("req"), agent=pending.agent, prompt=prompt,
                        resume_agent=resume or pending.agent)
    engine.steps.enter("input", input_=wait)
    await engine.commit(events + [(pending.agent, ev.InputRequest(
        request_id=wait.request_id, agent=pending.agent, prompt=prompt, input_schema=None, timeout_s=None))])


async def _resume(engine: RunHost, pending: PendingChildren, events: list[EventSpec], resume: str | None) -> None:
    if resume is None:  # the trigger agent's turn ends as it would have without children
        engine.steps.enter("agent", agent=pending.agent)
        await engine.commit(events)
        await engine.end_turn(pending.agent, None)
    else:
        engine.steps.enter("agent", agent=resume)
        await engine.commit(events)
    engine.spawn_drive()


async def _children_usage(engine: RunHost, record: FanOutRecord) -> dict[str, int]:
    chat = engine.chat
    totals = await asyncio.gather(*(engine.store.usage_totals(chat.app_id, chat.user_id, chat_id=c.chat_id)
                                    for c in record.children))
    return {key: sum(t[key] for t in totals) for key in ("prompt_tokens", "completion_tokens", "total_tokens")}


async def timed_out(engine: RunHost) -> None:
    """The fan-out's timeout passed: every child still running ends ``timed_out`` (and is cancelled)."""
    async with engine.children_lock:
        if engine.steps.step != "children":
            return
        await _end_open_children(engine, "timed_out")
    await advance(engine)


async def cancel_children(engine: RunHost) -> list[EventSpec]:
    """The parent's run is cancelled while it waits: its children are cancelled too. Returns the
    ``chat.child_completed`` events the parent has not sent yet."""
    pending = engine.state.pending_children
    if pending is None or not pending.created:
        return []
    record = await _end_open_children(engine, "cancelled")
    return [_completed_event(c) for c in record.children if c.index not in pending.reported]


async def _end_open_children(engine: RunHost, status: ChildStatus) -> FanOutRecord:
    chat, pending = engine.chat, engine.state.pending_children
    assert pending is not None
    record = await _ensure_created(engine, pending)
    for child in record.children:
        if child.status not in CHILD_ENDED:
            changed, record = await engine.store.set_child_status(chat.app_id, chat.user_id, record.fanout_id,
                                                                  child.index, status, error=f"child {status}")
            if changed and child.index in pending.started:
                await _cancel_child(chat, child.chat_id)
    await _free_slots(engine, [c.chat_id for c in record.children])
    return record


async def _cancel_child(parent: ChatRecord, child_chat_id: str) -> None:
    try:
        session = await DirectoryHandle.lookup().session(parent.app_id, parent.user_id, child_chat_id)
        if session is not None:
            await session.cancel(child_chat_id, "immediate")
    except Exception:
        log.exception("child %s of chat %s could not be cancelled", child_chat_id, parent.chat_id)


# ------------------------------------------------------------------ the child reports
async def report_to_parent(engine: RunHost, run_status: str) -> bool:
    """A child's run-end hook: record its outcome once and tell its parent. Returns whether this
    chat is a child (which the session then releases at once)."""
    chat = engine.chat
    raw = chat.context.get(PARENT_CONTEXT_KEY)
    if raw is None:
        return False
    try:
        link = ParentLink.model_validate(raw)
    except ValidationError:
        return False
    status = _RUN_TO_CHILD.get(run_status, "failed")
    result = _result(await engine.store.read_events(chat.app_id, chat.user_id, chat.chat_id))
    error = None if status == "completed" else f"the child's run ended {run_status}"
    try:
        changed, _ = await engine.store.set_child_status(chat.app_id, chat.user_id, link.fanout_id, link.index,
                                                         status, result=result, error=error)
    except FanOutNotFound:
        log.warning("chat %s names fan-out %s, which does not exist", chat.chat_id, link.fanout_id)
        return True
    _wake(await child_slots.release(engine.settings.max_running_children, [chat.chat_id]), link.chat_id)
    if changed:  # else the parent ended it already (a timeout, a cancel) and knows
        await _changed(chat.app_id, chat.user_id, link.chat_id)
    return True


def _result(events: list[StoredEvent]) -> Any:
    """A child's result: its last agent's structured output, else that agent's text."""
    for event in reversed(events):
        data = event.data
        if event.type == "chat.text" and data.get("role") == "assistant":
            return data["structured_output"] if data.get("structured_output") is not None else data.get("content")
    return None
