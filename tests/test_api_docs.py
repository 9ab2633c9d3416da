"""/api/docs: Swagger UI served by the runtime itself (no CDN, strict CSP), off in production."""

from __future__ import annotations

import re

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
