"""/api/docs: Swagger UI served by the runtime itself (no CDN, strict CSP), off in production."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import SecretStr

from mozaiks.protocol.errors import ApiError
from mozaiks.settings import Settings
from serve_app.api_docs import ApiDocs


async def test_the_docs_page_and_every_asset_it_loads_come_from_the_runtime(http) -> None:
    page = await http.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-eval" not in csp and "default-src 'none'" in csp
    assert "<script>" not in page.text  # no inline script: only files, which the CSP allows from here
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls and all(url.startswith("/api/docs/") for url in urls)
    sizes = {}
    for url in urls:
        asset = await http.get(url)
        assert asset.status_code == 200, url
        sizes[url] = len(asset.content)
    assert sizes["/api/docs/swagger-ui-bundle.js"] > 100_000  # the real bundle, not a stub
    init = (await http.get("/api/docs/init.js")).text
    assert '"/api/openapi.json"' in init
    spec = await http.get("/api/openapi.json")
    assert spec.status_code == 200 and "/api/mozaiks/sessions" in spec.json()["paths"]
    assert (await http.get("/api/docs/index.html")).status_code == 404  # only the listed files


def production(**changes: object) -> Settings:
    return Settings(mode="production", user_jwt_secret=SecretStr("x" * 32), runtime_token_secret=SecretStr("y" * 32),
                    **changes)


@pytest.mark.parametrize("name", ["page", "asset"])
def test_production_mode_has_no_docs_page_unless_enabled(name: str) -> None:
    with pytest.raises(ApiError) as refused:
        getattr(ApiDocs(production()), name)(*(["swagger-ui.css"] if name == "asset" else []))
    assert refused.value.status == 404
    assert ApiDocs(production(api_docs=True)).page().status_code == 200


async def test_swagger_ui_renders_in_a_browser_under_the_csp(runtime: Any) -> None:
    """The page works as served: the bundle runs under the CSP and renders the runtime's routes."""
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (scripts/test.sh installs Debian's chromium as root)")
    playwright = pytest.importorskip("playwright.async_api", reason="Playwright for Python is not installed")
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            requested: list[str] = []
            page.on("request", lambda req: requested.append(req.url))
            await page.goto(f"{runtime.http_url}/api/docs")
            await page.locator(".swagger-ui .info .title").filter(has_text="mozaiks runtime").wait_for(timeout=30_000)
            await page.locator(".opblock-summary-path", has_text="/api/mozaiks/sessions").first.wait_for()
        finally:
            await browser.close()
    assert not problems
    assert requested and all(url.startswith(runtime.http_url) or url.startswith("data:") for url in requested)
