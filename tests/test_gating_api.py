"""Entitlements and usage gating through the real Serve app (tests/capabilities.yaml's registry)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import auth_header

SESSIONS = "/api/mozaiks/sessions"


async def start(http: httpx.AsyncClient, workflow: str, user: str, chat_id: str | None = None,
                **claims: Any) -> httpx.Response:
    return await http.post(SESSIONS, json={"workflow_name": workflow, "chat_id": chat_id}, headers=auth_header(user, **claims))


async def listed(http: httpx.AsyncClient, user: str, **claims: Any) -> dict[str, dict[str, Any]]:
    response = await http.get("/api/mozaiks/workflows", headers=auth_header(user, **claims))
    return {w["name"]: w for w in response.json()["workflows"]}


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


async def test_gated_capability_is_refused_with_the_reason_then_allowed_after_the_plan_changes(http):
    refused = await start(http, "gated_report", "gina", plan="free")
    assert error(refused) == (403, "not_entitled", "Subscription required: plan pro or team")
    assert "gated_report" not in await listed(http, "gina", plan="free")

    upgraded = await start(http, "gated_report", "gina", plan="pro")  # the host's auth now says "pro"
    assert upgraded.status_code == 201
    shown = (await listed(http, "gina", plan="pro"))["gated_report"]
    assert shown["capability"] == "premium_report" and shown["display_name"] == "Premium report"

    chat_id = upgraded.json()["chat_id"]  # after a downgrade neither resume nor reconnect is allowed
    assert error(await start(http, "gated_report", "gina", chat_id, plan="free"))[1] == "not_entitled"
    token = await http.post(f"{SESSIONS}/{chat_id}/token", headers=auth_header("gina", plan="free"))
    assert error(token)[1] == "not_entitled"
    assert (await http.post(f"{SESSIONS}/{chat_id}/token", headers=auth_header("gina", plan="team"))).status_code == 200


async def test_disabled_admin_only_and_hidden_capabilities(http):
    admin = {"plan": "pro", "roles": ["admin"]}
    status, code, message = error(await start(http, "gated_disabled", "root", **admin))
    assert (status, code) == (403, "not_entitled") and "disabled" in message
    status, code, message = error(await start(http, "gated_admin", "user1", plan="pro"))
    assert (status, code) == (403, "not_entitled") and "administrators" in message
    assert (await start(http, "gated_admin", "root", **admin)).status_code == 201
    assert (await start(http, "gated_hidden", "user1")).status_code == 201  # unlisted, yet startable

    as_admin, as_user = await listed(http, "root", **admin), await listed(http, "user1", plan="pro")
    assert "gated_admin" in as_admin and "gated_admin" not in as_user
    for name in ("gated_disabled", "gated_hidden"):
        assert name not in as_admin and name not in as_user
    assert {"hello", "campaign_builder"} <= set(as_user)  # unlisted workflows stay public


async def test_parallel_creations_against_a_budget_of_m_succeed_exactly_m_times(http):
    # gated_budget reserves 400,000 tokens of the 1,000,000 a user has: room for exactly two.
    results = await asyncio.gather(*(start(http, "gated_budget", "parallel-user") for _ in range(6)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201, 201, 403, 403, 403, 403]
    assert {error(r)[1] for r in results if r.status_code == 403} == {"usage_limit_exceeded"}
    assert len({r.json()["chat_id"] for r in results if r.status_code == 201}) == 2


async def test_subscriptions_api_needs_the_service_credential(http):
    body = {"app_id": "test-app", "user_id": "sub-user", "plan": "pro"}
    assert error(await http.put("/api/runtime/subscriptions", json=body))[:2] == (401, "unauthenticated")
    ok = await http.put("/api/runtime/subscriptions", json=body,
                        headers={"Authorization": "Bearer test-service-credential"})
    assert ok.status_code == 200 and ok.json() == body
