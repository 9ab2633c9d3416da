"""Token accounting of a run: the per-call delta event, the billing row, the run's summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from actors.commits import EventSpec
from actors.delta_buffer import DeltaBuffer
from actors.snapshot import RunUsage
from mozaiks.protocol.events import UsageDelta, UsageSummary, utc_now_iso
from mozaiks.providers.base import ModelReply
from mozaiks.providers.scripted import estimate_tokens
from mozaiks.store.base import ChatRecord, Store, UsageRecord


class UsageMeter:
    def __init__(self, chat: ChatRecord) -> None:
        self.chat = chat

    def record(self, usage: RunUsage, agent: str, reply: ModelReply) -> tuple[EventSpec, UsageRecord]:
        """Count one model call into the run's totals; returns its event and its billing row."""
        u = reply.usage
        usage.add(agent, reply.model, u.prompt_tokens, u.completion_tokens)
        event = (agent, UsageDelta(agent=agent, model=reply.model, prompt_tokens=u.prompt_tokens,
                                   completion_tokens=u.completion_tokens, total_tokens=u.total_tokens,
                                   cached=u.cached, duration_ms=reply.duration_ms))
        c = self.chat
        row = UsageRecord(app_id=c.app_id, user_id=c.user_id, chat_id=c.chat_id, workflow_name=c.workflow_name,
                          agent=agent, model=reply.model, prompt_tokens=u.prompt_tokens,
                          completion_tokens=u.completion_tokens, total_tokens=u.total_tokens,
                          timestamp=utc_now_iso())
        return event, row


def partial_reply(buffer: DeltaBuffer) -> ModelReply:
    """What a cancelled call had streamed, with its completion tokens estimated."""
    reply = ModelReply(text=buffer.text, model=buffer.model_name)
    reply.usage.completion_tokens = reply.usage.total_tokens = estimate_tokens(buffer.text)
    return reply


def summary(usage: RunUsage) -> EventSpec:
    return (None, UsageSummary(totals=usage.totals(), by_agent=usage.by_agent, by_model=usage.by_model))


async def prune_usage(store: Store, retention_days: int, now: datetime | None = None) -> int:
    """Delete the billing rows older than the retention (settings.usage_retention_days, longer than
    any budget period); returns how many went."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    return await store.prune_usage(cutoff.isoformat())
