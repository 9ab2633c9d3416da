"""The broker's HTTP answers match PROTOCOL §2 field for field, errors included."""

from __future__ import annotations

import re

import pytest

from tests.conftest import auth_header

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def auth(user: str = "shape-user") -> dict[str, str]:
    return auth_header(user)


async def test_create_and_resume_shapes(http, settings):
    created = await http.post("/api/mozaiks/sessions", json={"workflow_name": "hello", "chat_id": None,
                                                             "context": {"k": 1}}, headers=auth())
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"chat_id", "workflow_name", "status", "ws_url", "runtime_token", "expires_at"}
    assert body["status"] == "created" and body["workflow_name"] == "hello"
    assert body["ws_url"] == f"{settings.ws_base}/ws/hello/test-app/{body['chat_id']}/shape-user"
    assert ISO.match(body["expires_at"])
    resumed = await http.post("/api/mozaiks/sessions", json={"workflow_name": "hello", "chat_id": body["chat_id"]},
                              headers=auth())
    assert resumed.status_code == 200 and resumed.json()["status"] == "resumed"
    assert resumed.json()["chat_id"] == body["chat_id"]


async def test_list_shapes_and_pagination(http):
    user = "pager"
    ids = []
    for _ in range(3):
        r = await http.post("/api/mozaiks/sessions", json={"workflow_name": "hello"}, headers=auth(user))
        ids.append(r.json()["chat_id"])
    page = await http.get("/api/mozaiks/sessions", params={"limit": 2}, headers=auth(user))
    assert page.status_code == 200
    body = page.json()
    assert set(body) == {"sessions", "next_cursor"}
    assert len(body["sessions"]) == 2 and body["next_cursor"]
    for row in body["sessions"]:
        assert set(row) == {"chat_id", "workflow_name", "status", "phase", "created_at", "updated_at"}
        assert row["status"] in {"active", "completed", "failed", "cancelled"}
        assert row["phase"] in {"idle", "running", "waiting_input"}
        assert ISO.match(row["created_at"]) and ISO.match(row["updated_at"])
    rest = (await http.get("/api/mozaiks/sessions", params={"limit": 2, "cursor": body["next_cursor"]},
                           headers=auth(user))).json()
    listed = [r["chat_id"] for r in body["sessions"] + rest["sessions"]]
    assert listed == list(reversed(ids)) and rest["next_cursor"] is None


async def test_workflows_list_has_no_prompts(http):
    r = await http.get("/api/mozaiks/workflows", headers=auth())
    assert r.status_code == 200
    workflows = {w["name"]: w for w in r.json()["workflows"]}
    assert {"name", "display_name", "description"} <= set(workflows["hello"])
    text = r.text
    assert "system_message" not in text and "greet the user. First ask" not in text
    assert "make_greeting" not in text


NO_AUTH: dict[str, str] = {}


@pytest.mark.parametrize("body,headers,status,code", [
    ({"json": {"workflow_name": "hello"}}, NO_AUTH, 401, "unauthenticated"),
    ({"json": {"workflow_name": "hello"}}, {"Authorization": "Bearer nope"}, 401, "unauthenticated"),
    ({"json": {"workflow_name": "no-such-workflow"}}, None, 404, "unknown_workflow"),
    ({"json": {"workflow_name": "hello", "chat_id": "missing"}}, None, 404, "chat_not_found"),
    ({"json": {"chat_id": 5}}, None, 422, "invalid_request"),
    ({"content": b"{not json"}, None, 422, "invalid_request"),
])
async def test_errors_use_the_envelope(http, body, headers, status, code):
    sent_headers = {"Content-Type": "application/json", **(auth() if headers is None else headers)}
    r = await http.post("/api/mozaiks/sessions", headers=sent_headers, **body)
    assert r.status_code == status
    payload = r.json()
    assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message", "details"}
    assert payload["error"]["code"] == code


async def test_workflow_mismatch_is_409(http):
    created = (await http.post("/api/mozaiks/sessions", json={"workflow_name": "hello"}, headers=auth())).json()
    r = await http.post("/api/mozaiks/sessions", json={"workflow_name": "campaign_builder",
                                                       "chat_id": created["chat_id"]}, headers=auth())
    assert r.status_code in (404, 409)
    if r.status_code == 409:
        assert r.json()["error"]["code"] == "workflow_mismatch"


async def test_unknown_route_uses_the_envelope(http):
    r = await http.get("/api/mozaiks/nothing-here", headers=auth())
    assert r.status_code == 404 and set(r.json()) == {"error"}


async def test_idempotency_key_returns_the_same_chat(http):
    headers = {**auth("idem"), "Idempotency-Key": "k-123"}
    first = await http.post("/api/mozaiks/sessions", json={"workflow_name": "hello"}, headers=headers)
    second = await http.post("/api/mozaiks/sessions", json={"workflow_name": "hello"}, headers=headers)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["chat_id"] == second.json()["chat_id"]
