"""The Gate the Session Broker asks before a chat starts, resumes or is listed."""

from __future__ import annotations

from collections.abc import Sequence

from capabilities.entitlements import ALLOWED, Decision, EntitlementProvider
from capabilities.registry import Capability, Registry
from capabilities.usage import Taken, UsageLimits
from mozaiks.protocol.errors import ApiError
from mozaiks.protocol.identity import Identity
from mozaiks.settings import Settings
from mozaiks.store.base import Store
from workflows.model import Workflow


class Gate:
    def __init__(self, settings: Settings, store: Store, registry: Registry, provider: EntitlementProvider) -> None:
        self.settings = settings
        self.registry = registry
        self.provider = provider
        self.usage = UsageLimits(settings, store)

    async def decide(self, identity: Identity, capability: Capability) -> Decision:
        if not capability.enabled:
            return Decision(allowed=False, reason=f"Capability {capability.name!r} is disabled")
        if capability.visibility == "admin" and self.settings.admin_role not in identity.roles:
            return Decision(allowed=False, reason=f"Capability {capability.name!r} is for administrators only")
        if not capability.gated:
            return ALLOWED
        # A host provider may hand back a dict; validating it keeps a malformed answer from passing.
        return Decision.model_validate(await self.provider.decide(identity, capability))

    async def give_back(self, taken: Sequence[tuple[str, int]]) -> None:
        await self.usage.give_back(list(taken))

    async def check_start(self, identity: Identity, workflow: Workflow, resuming: bool,
                          capability: Capability | None = None) -> Taken:
        """Entitlement, then (for a new chat) the rate limit, then the token budgets; the first
        refusal is raised as the PROTOCOL's error. ``capability``: an installed workflow's own,
        instead of the registry's."""
        capability = capability or self.registry.for_workflow(workflow.name)
        if capability is None:  # the registry does not offer it: to the user it does not exist
            raise ApiError(404, "unknown_workflow", f"Workflow {workflow.name!r} is not registered")
        decision = await self.decide(identity, capability)
        if not decision.allowed:
            raise ApiError(403, "not_entitled", decision.reason or "Not entitled to this capability",
                           {"capability": capability.name})
        reservation = capability.token_reservation
        return await self.usage.admit(identity, self.settings.session_token_reservation if reservation is None
                                      else reservation, creating=not resuming)

    async def visible(self, identity: Identity, workflow: Workflow,
                      capability: Capability | None = None) -> tuple[bool, Capability | None]:
        """Listed only when its capability is not hidden and this user may start it."""
        capability = capability or self.registry.for_workflow(workflow.name)
        if capability is None or capability.visibility == "hidden":
            return False, capability
        return (await self.decide(identity, capability)).allowed, capability
