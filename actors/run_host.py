"""What the parts of a run (a model turn, the tool phase) need from the session driving them.

``SessionEngine`` is the one implementation; the parts see only this, so a unit test can drive
them with a small host of its own.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from actors.commits import EventSpec
from actors.handles import SessionHandle
from actors.history import History
from actors.run_steps import RunSteps
from actors.snapshot import SessionSnapshot
from actors.triggers import ContextTriggers
from actors.usage import UsageMeter
from actors.waits import WaitTimer
from mozaiks.protocol.events import EventData
from mozaiks.providers.registry import ProviderRegistry
from mozaiks.settings import Settings
from mozaiks.store.base import ChatRecord, Store, UsageRecord
from workflows.model import Workflow

MAX_VALIDATION_RETRIES = 3


class ValidationBudget:
    """How often a run's model may answer in the wrong shape before the run fails."""

    def __init__(self, retries: int = MAX_VALIDATION_RETRIES) -> None:
        self.retries = retries
        self.failures = 0

    def spend(self) -> bool:
        """Count one failure; True when that exhausted the budget."""
        self.failures += 1
        return self.failures > self.retries

    def reset(self) -> None:
        self.failures = 0


class WorkflowSource(Protocol):
    async def get(self, app_id: str, name: str) -> Workflow:
        """The workflow as the app sees it; KeyError if it has none of that name."""
        ...


class RunHost(Protocol):
    settings: Settings
    store: Store
    workflows: WorkflowSource | None  # the workflows this chat's app sees, for the children it starts
    workflow: Workflow
    chat: ChatRecord
    providers: ProviderRegistry
    self_handle: SessionHandle | None  # None when run without Ray (unit tests)
    state: SessionSnapshot
    steps: RunSteps
    history: History
    triggers: ContextTriggers
    meter: UsageMeter
    timer: WaitTimer
    validation: ValidationBudget
    children_lock: asyncio.Lock  # one fan-out step at a time (actors/children.py)

    async def commit(self, events: list[EventSpec], *, client_message_id: str | None = None,
                     usage: list[UsageRecord] | None = None) -> None: ...

    def publish_ephemeral(self, agent: str | None, payload: EventData, more_coming: bool = False) -> None: ...

    async def finish(self, run_status: str, events: list[EventSpec] | None = None,
                     usage: list[UsageRecord] | None = None) -> None: ...

    async def end_turn(self, agent_name: str, transfer: str | None, pre: str | None = None, *,
                       events: list[EventSpec] | None = None, usage: list[UsageRecord] | None = None) -> None: ...

    def spawn_drive(self) -> None: ...
