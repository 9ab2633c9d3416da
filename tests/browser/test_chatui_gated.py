"""A gated workflow in the widget: a user without the entitlement is told so, and the browser never
receives the workflow's component (no request for it is even made, and the user's own JWT cannot
fetch it); an entitled user's chat runs. Screenshots as in conftest."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.conftest import user_token

TIMEOUT_MS = 45_000
COMPONENT = "/api/mozaiks/workflows/gated_report/components/Report.js"
HOST = """<!doctype html><html><head><meta charset="utf-8"><title>host app</title>
<script type="module" src="/chat/mozaiks-chat.js"></script></head>
<body style="margin:0;height:100vh"><mozaiks-chat presentation="inline" heading="Reports" style="height:100vh">
</mozaiks-chat></body></html>"""


async def _host_as(page: Any, runtime: Any, jwt: str) -> Any:
    await page.route(f"{runtime.http_url}/host.html",
                     lambda route: route.fulfill(status=200, content_type="text/html", body=HOST))
    await page.goto("/host.html")
    await page.evaluate("(jwt) => customElements.whenDefined('mozaiks-chat').then(() => "
                        "{ document.querySelector('mozaiks-chat').getToken = () => jwt; })", jwt)
    return page.locator("mozaiks-chat")


async def test_gated_workflow_refused_in_the_widget_and_its_component_never_reaches_the_browser(
        page: Any, runtime: Any) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    jwt = user_token("gate-free", plan="free")
    chat = await _host_as(page, runtime, jwt)
    errors = await page.evaluate("""() => new Promise((resolve) => {
      const el = document.querySelector('mozaiks-chat');
      el.addEventListener('mozaiks-error', (e) => resolve(e.detail));
      el.openWorkflow('gated_report').catch(() => undefined);
    })""")
    assert errors["code"] == "not_entitled", errors
    await expect(chat.get_by_role("alert")).to_contain_text(errors["message"])
    await expect(chat.locator(".conn")).to_have_attribute("data-state", "offline")
    await page.shots.take("refused")
    assert not [url for url in requested if "/components/" in url]
    status = await page.evaluate("(args) => fetch(args[0], {headers: {Authorization: `Bearer ${args[1]}`}})"
                                 ".then(r => r.status)", [COMPONENT, jwt])
    assert status == 401  # the user's own token is not a runtime token for the workflow
    assert page.errors == []


async def test_gated_workflow_runs_for_an_entitled_user(page: Any, runtime: Any) -> None:
    chat = await _host_as(page, runtime, user_token("gate-pro", plan="pro"))
    await page.evaluate("document.querySelector('mozaiks-chat').openWorkflow('gated_report')")
    await expect(chat.locator(".msg", has_text="Hello from behind the gate.")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(chat.get_by_text("Completed", exact=True)).to_be_visible()
    await page.shots.take("entitled")
    assert page.errors == []
