"""The capability registry, the entitlement providers and the Gate's decisions, without Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from capabilities import Capability, Decision, Gate, Registry, RegistryError, load_registry, provider_factory
from capabilities.entitlements import ClaimsEntitlements, StoreSubscriptions
from mozaiks.protocol.errors import ApiError
from mozaiks.protocol.identity import Identity
from mozaiks.settings import Settings
from mozaiks.store.sqlite import SQLiteStore
from workflows.loader import load_workflow
from workflows.model import Workflow

TESTS = Path(__file__).resolve().parent
WORKFLOWS = ["gated_report", "gated_disabled", "gated_admin", "gated_hidden", "gated_budget"]


def workflow(name: str) -> Workflow:
    return load_workflow(TESTS / "workflows" / name)


def who(plan: str | None = None, roles: list[str] | None = None, user: str = "u1") -> Identity:
    return Identity(user_id=user, app_id="app", plan=plan, roles=roles or [])


def write(tmp_path: Path, content: Any, name: str = "capabilities.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# --- the registry file ------------------------------------------------------------------------

def test_the_tests_registry_loads_from_yaml() -> None:
    registry = load_registry(TESTS / "capabilities.yaml", WORKFLOWS + ["hello"])
    premium = registry.for_workflow("gated_report")
    assert premium is not None and premium.name == "premium_report" and premium.plans == ["pro", "team"]
    assert registry.for_workflow("hello") == Capability(name="hello", workflow="hello")  # unlisted: public


def test_without_a_file_every_workflow_is_public_and_ungated() -> None:
    capability = load_registry(None, ["hello"]).for_workflow("anything")
    assert capability is not None and not capability.gated and capability.visibility == "public"


def test_unlisted_workflows_are_denied_by_default(tmp_path: Path) -> None:
    path = write(tmp_path, {"capabilities": {"pro": {"workflow": "hello", "gated": True, "required_plan": "pro"}}})
    registry = load_registry(path, ["hello", "other"])
    assert registry.for_workflow("other") is None
    assert registry.for_workflow("hello") is not None and registry.for_workflow("hello").plans == ["pro"]  # type: ignore[union-attr]


@pytest.mark.parametrize("content,field,fragment", [
    ({"capabilities": {"x": {"workflow": "hello", "visibility": "secret"}}}, "capabilities.x.visibility",
     "'public', 'hidden' or 'admin'"),
    ({"capabilities": {"x": {"workflow": "hello", "allowed_plans": ["pro"]}}}, "capabilities.x", "gated: true"),
    ({"capabilities": {"x": {"workflow": "hello", "gated": True, "allowed_plans": ["a"], "required_plan": "b"}}},
     "capabilities.x", "not both"),
    ({"capabilities": {"x": {"workflow": "nope"}}}, "capabilities.x.workflow", "unknown workflow 'nope'"),
    ({"capabilities": {"x": {"workflow": "hello"}, "y": {"workflow": "hello"}}}, "capabilities.y.workflow",
     "already belongs to capability 'x'"),
    ({"capabilities": {"x": {"workflow": "hello", "gated": "maybe"}}}, "capabilities.x.gated", "boolean"),
    ({"capabilities": {"x": {"workflow": "hello", "plan": "pro"}}}, "capabilities.x.plan", "Extra inputs"),
    ({"capabilities": {"bad name": {"workflow": "hello"}}}, "capabilities.bad name", "should match pattern"),
    ({"unlisted_workflows": "allow"}, "unlisted_workflows", "'public' or 'deny'"),
    ("{not json", "$", "invalid JSON at line 1"),
])
def test_load_errors_name_the_file_and_the_field(tmp_path: Path, content: Any, field: str, fragment: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(RegistryError) as caught:
        load_registry(path, ["hello"])
    message = str(caught.value)
    assert message.startswith(f"{path}: {field}") and fragment in message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "capabilities:\n  x: [unclosed\n", "capabilities.yaml")
    with pytest.raises(RegistryError, match=r"capabilities.yaml: \$: invalid YAML at line 3"):
        load_registry(path, ["hello"])


# --- entitlement providers --------------------------------------------------------------------

PREMIUM = Capability(name="premium", workflow="gated_report", gated=True, allowed_plans=["pro", "team"])
ANY_PLAN = Capability(name="members", workflow="gated_report", gated=True)


async def test_claims_provider_reads_the_plan_claim() -> None:
    claims = ClaimsEntitlements()
    assert await claims.decide(who("pro"), PREMIUM) == Decision(allowed=True)
    assert await claims.decide(who("free"), PREMIUM) == Decision(
        allowed=False, reason="Subscription required: plan pro or team")
    assert (await claims.decide(who(None), ANY_PLAN)).reason == "Subscription required"
    assert (await claims.decide(who("free"), ANY_PLAN)).allowed


async def test_store_provider_follows_the_subscription_not_the_claim(sqlite_store: SQLiteStore) -> None:
    provider = StoreSubscriptions(sqlite_store)
    assert not (await provider.decide(who("pro"), PREMIUM)).allowed  # the JWT's plan is not consulted
    await sqlite_store.set_subscription("app", "u1", "team")
    assert (await provider.decide(who(None), PREMIUM)).allowed
    await sqlite_store.set_subscription("app", "u1", None)
    assert not (await provider.decide(who(None), PREMIUM)).allowed


class VipOnly:
    """A host's provider: only users whose id starts with "vip" get gated capabilities."""

    def __init__(self, settings: Settings, store: Any) -> None:
        self.settings = settings

    async def decide(self, identity: Identity, capability: Capability) -> dict[str, Any]:
        allowed = identity.user_id.startswith("vip")
        return {"allowed": allowed, "reason": None if allowed else "VIPs only"}


async def test_host_provider_by_import_path(sqlite_store: SQLiteStore) -> None:
    factory = provider_factory(f"{__name__}:VipOnly")
    settings = Settings(_env_file=None)
    gate = Gate(settings, sqlite_store, Registry([PREMIUM]), factory(settings, sqlite_store))
    assert await gate.decide(who(user="vip-1"), PREMIUM) == Decision(allowed=True)
    assert await gate.decide(who("pro", user="u2"), PREMIUM) == Decision(allowed=False, reason="VIPs only")


@pytest.mark.parametrize("spec,fragment", [
    ("nope.module:Thing", "cannot be imported"), ("claimz", "expected 'claims', 'store'"),
    (f"{__name__}:who", "async decide"), (f"{__name__}:Missing", "cannot be imported"),
])
def test_bad_provider_setting_fails_at_start(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        provider_factory(spec)


# --- the Gate ---------------------------------------------------------------------------------

@pytest.fixture
async def gate(sqlite_store: SQLiteStore) -> Gate:
    registry = load_registry(TESTS / "capabilities.yaml", WORKFLOWS + ["hello"])
    return Gate(Settings(_env_file=None), sqlite_store, registry, ClaimsEntitlements())


async def refusal(gate: Gate, identity: Identity, name: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await gate.check_start(identity, workflow(name), resuming=False)
    return caught.value


async def test_gate_refuses_with_the_protocols_error(gate: Gate) -> None:
    error = await refusal(gate, who("free"), "gated_report")
    assert (error.status, error.code, error.message) == (403, "not_entitled", "Subscription required: plan pro or team")
    assert error.details == {"capability": "premium_report"}
    await gate.check_start(who("team"), workflow("gated_report"), resuming=False)


async def test_disabled_and_admin_capabilities(gate: Gate) -> None:
    disabled = await refusal(gate, who("pro", ["admin"]), "gated_disabled")
    assert disabled.code == "not_entitled" and "disabled" in disabled.message
    admin_only = await refusal(gate, who("pro"), "gated_admin")
    assert admin_only.code == "not_entitled" and "administrators" in admin_only.message
    await gate.check_start(who(None, ["admin"]), workflow("gated_admin"), resuming=False)


async def test_visibility(gate: Gate) -> None:
    async def listed(identity: Identity) -> set[str]:
        return {name for name in WORKFLOWS if (await gate.visible(identity, workflow(name)))[0]}

    assert await listed(who("free")) == {"gated_budget"}
    assert await listed(who("pro")) == {"gated_report", "gated_budget"}
    assert await listed(who("pro", ["admin"])) == {"gated_report", "gated_admin", "gated_budget"}
    # Hidden: never listed, yet startable by whoever knows its name.
    await gate.check_start(who("free"), workflow("gated_hidden"), resuming=False)


async def test_a_workflow_the_registry_does_not_offer_is_unknown(sqlite_store: SQLiteStore) -> None:
    registry = Registry([PREMIUM], unlisted_public=False)
    gate = Gate(Settings(_env_file=None), sqlite_store, registry, ClaimsEntitlements())
    error = await refusal(gate, who("pro"), "gated_hidden")
    assert (error.status, error.code) == (404, "unknown_workflow")
    assert await gate.visible(who("pro"), workflow("gated_hidden")) == (False, None)
