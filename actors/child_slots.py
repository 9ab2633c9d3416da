"""The cluster-wide cap on running child chats (``settings.max_running_children``).

Each fan-out's ``max_children`` bounds one parent; this bounds them all together, so a burst of
fan-outs cannot activate more child sessions than the cluster is sized for. One small named actor
on the head node (where Serve's controller and the GCS live: it goes down only with the cluster)
holds the slots: a child holds one from its start until it ends. A parent that asks for more
slots than are free is remembered, and whoever frees a slot gets the waiting parents back to wake
(through the directory, which activates a passivated parent), so nothing polls.

What the actor holds is not durable, and need not be: the store says which children run. After a
restart of the runtime the actor is new and empty, and every parent that resumes its wait claims
the slots of the children it started already (``hold``) before asking for more.
"""

from __future__ import annotations

from collections.abc import Iterable

import ray
from ray._common.constants import HEAD_NODE_RESOURCE_NAME

from actors.names import NAMESPACE

SLOTS_NAME = "mozaiks-child-slots"
ParentKey = tuple[str, str, str]  # app_id, user_id, chat_id of a waiting parent


@ray.remote(num_cpus=0, max_restarts=-1)
class ChildSlots:
    def __init__(self) -> None:
        self.held: dict[str, ParentKey] = {}  # child chat_id -> its parent
        self.waiting: dict[ParentKey, None] = {}  # insertion-ordered: the first to wait is woken first

    def acquire(self, cap: int, parent: ParentKey, running: list[str], wanted: list[str]) -> list[str]:
        """Claim slots for ``running`` (children of ``parent`` that started already, held even above
        the cap: they run) and for as many of ``wanted``, in order, as ``cap`` leaves free. Returns
        the ``wanted`` children granted; a parent granted fewer than it wanted waits for a slot."""
        for child in running:
            self.held[child] = parent
        granted = [c for c in wanted if c in self.held]
        for child in (c for c in wanted if c not in self.held):
            if len(self.held) >= cap:
                break
            self.held[child] = parent
            granted.append(child)
        if len(granted) < len(wanted):
            self.waiting[parent] = None
        else:
            self.waiting.pop(parent, None)
        return granted

    def release(self, children: list[str]) -> list[ParentKey]:
        """Free the slots of ended children; returns the waiting parents to wake (every one: each
        asks again, and those still short of a slot wait again)."""
        freed = [self.held.pop(c, None) for c in children]
        if not any(freed) or not self.waiting:
            return []
        woken = list(self.waiting)
        self.waiting.clear()
        return woken

    def running(self) -> int:
        return len(self.held)


_handle: ray.actor.ActorHandle | None = None


def slots() -> ray.actor.ActorHandle:
    """The cluster's slots actor, created on first use (detached: no session owns it)."""
    global _handle
    if _handle is None:
        _handle = ChildSlots.options(name=SLOTS_NAME, namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
                                     resources={HEAD_NODE_RESOURCE_NAME: 0.001}).remote()
    return _handle


async def acquire(cap: int | None, parent: ParentKey, running: list[str], wanted: list[str]) -> list[str]:
    if cap is None:
        return wanted
    return list(await slots().acquire.remote(cap, parent, running, wanted))


async def release(cap: int | None, children: Iterable[str]) -> list[ParentKey]:
    if cap is None:
        return []
    return list(await slots().release.remote(list(children)))
