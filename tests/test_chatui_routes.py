"""The ChatUI's HTTP routes: the page's security headers, workflow components only for a runtime
token of that workflow (so only for entitled users), and the local-only development token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request

from mozaiks.client import BrokerError
from mozaiks.settings import Settings
from serve_app.chatui import CSP, ChatUi
from tests.conftest import user_token


async def test_page_is_served_with_a_strict_csp(runtime: Any) -> None:
    async with httpx.AsyncClient(base_url=runtime.http_url) as http:
        page = await http.get("/chat/")
    assert page.status_code == 200 and "<mozaiks-chat" in page.text
    assert page.headers["content-security-policy"] == CSP
    assert "unsafe-inline" not in CSP.split("script-src")[1].split(";")[0]
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it anyway


async def test_gated_component_is_served_only_to_an_entitled_users_token(broker_for: Any, runtime: Any) -> None:
    path = "/api/mozaiks/workflows/gated_report/components/Report.js"
    free, pro = broker_for("component-free", plan="free"), broker_for("component-pro", plan="pro")
    with pytest.raises(BrokerError) as refused:
        await free.create_session("gated_report")
    assert refused.value.status == 403  # the free user never gets a runtime token for it
    free_jwt = user_token("component-free", plan="free")
    hello = await free.create_session("hello")
    report = await pro.create_session("gated_report")
    async with httpx.AsyncClient(base_url=runtime.http_url) as http:
        anonymous = await http.get(path)
        other_workflow = await http.get(path, headers={"Authorization": f"Bearer {hello.runtime_token}"})
        user_jwt = await http.get(path, headers={"Authorization": f"Bearer {free_jwt}"})
        entitled = await http.get(path, headers={"Authorization": f"Bearer {report.runtime_token}"})
        missing = await http.get(path.replace("Report", "Nope"),
                                 headers={"Authorization": f"Bearer {report.runtime_token}"})
    assert anonymous.status_code == 401 and user_jwt.status_code == 401
    assert other_workflow.status_code == 404 and "Premium" not in other_workflow.text
    assert entitled.status_code == 200 and "Premium report" in entitled.text
    assert entitled.headers["content-type"].startswith("text/javascript")
    assert missing.status_code == 404


def _request(client_host: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/api/mozaiks/dev/token", "headers": [],
                    "client": (client_host, 5000)})


async def test_dev_token_exists_only_in_local_mode_for_loopback_callers(runtime: Any, settings: Settings) -> None:
    async with httpx.AsyncClient(base_url=runtime.http_url) as http:
        issued = await http.post("/api/mozaiks/dev/token")
        assert issued.status_code == 200
        token = issued.json()["token"]
        workflows = await http.get("/api/mozaiks/workflows", headers={"Authorization": f"Bearer {token}"})
        assert workflows.status_code == 200  # the broker accepts it
    ui = ChatUi(settings, None, None)  # type: ignore[arg-type]
    assert ui.dev_token(_request("127.0.0.1"))["user_id"] == "local-dev"
    for refused in (ChatUi(settings.model_copy(update={"mode": "production"}), None, None),  # type: ignore[arg-type]
                    ChatUi(settings.model_copy(update={"host": "0.0.0.0"}), None, None)):  # type: ignore[arg-type]
        try:
            refused.dev_token(_request("127.0.0.1"))
            raise AssertionError("a development token outside local loopback use")
        except Exception as exc:
            assert getattr(exc, "status", None) == 404
    try:
        ui.dev_token(_request("203.0.113.7"))
        raise AssertionError("a development token for a remote caller")
    except Exception as exc:
        assert getattr(exc, "status", None) == 404
