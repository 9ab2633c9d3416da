"""Entitlement providers: may this user start this gated capability?

Three behind one interface, chosen by ``settings.entitlement_provider``:

- ``claims`` (default): the plan claim of the user's JWT, so the host's auth is the source of truth;
- ``store``: the subscriptions the host keeps in the runtime's store
  (``PUT /api/runtime/subscriptions``), for hosts whose tokens carry no plan;
- ``pkg.module:Class``: a host's own class, constructed with ``(settings, store)``, whose
  ``async decide(identity, capability)`` returns a :class:`Decision` (or a dict of its fields).

Providers are only asked about capabilities that are enabled and ``gated``; the Gate handles the
rest, so no provider can open a disabled or admin-only capability.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Protocol, cast

from pydantic import BaseModel, ConfigDict

from capabilities.registry import Capability
from mozaiks.protocol.identity import Identity
from mozaiks.settings import Settings
from mozaiks.store.base import Store


class Decision(BaseModel):
    """``reason`` says why not, in words fit for the user ("Subscription required: plan pro")."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    reason: str | None = None


ALLOWED = Decision(allowed=True)


class EntitlementProvider(Protocol):
    async def decide(self, identity: Identity, capability: Capability) -> Decision: ...


def plan_decision(plan: str | None, capability: Capability) -> Decision:
    """The plan rule the built-in providers share: any plan, or one of the capability's plans."""
    plans = capability.plans
    if plan is not None and (not plans or plan in plans):
        return ALLOWED
    wanted = f": plan {' or '.join(plans)}" if plans else ""
    return Decision(allowed=False, reason=f"Subscription required{wanted}")


class ClaimsEntitlements:
    async def decide(self, identity: Identity, capability: Capability) -> Decision:
        return plan_decision(identity.plan, capability)


class StoreSubscriptions:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def decide(self, identity: Identity, capability: Capability) -> Decision:
        return plan_decision(await self.store.get_subscription(identity.app_id, identity.user_id), capability)


ProviderFactory = Callable[[Settings, Store], EntitlementProvider]

_BUILTIN: dict[str, ProviderFactory] = {
    "claims": lambda settings, store: ClaimsEntitlements(),
    "store": lambda settings, store: StoreSubscriptions(store),
}


def provider_factory(spec: str) -> ProviderFactory:
    """``claims``, ``store`` or ``pkg.module:Class``; ValueError naming the setting otherwise, so a
    misconfigured runtime fails at start rather than on the first gated request."""
    if spec in _BUILTIN:
        return _BUILTIN[spec]
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"entitlement_provider {spec!r}: expected 'claims', 'store' or 'pkg.module:Class'")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"entitlement_provider {spec!r} cannot be imported: {exc}") from None
    if not inspect.isclass(found) or not inspect.iscoroutinefunction(getattr(found, "decide", None)):
        raise ValueError(f"entitlement_provider {spec!r} is not a class with an async decide(identity, capability)")
    return cast(ProviderFactory, found)
