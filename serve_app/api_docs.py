"""The interactive API page at /api/docs: Swagger UI over /api/openapi.json, served from the runtime
itself, never from a CDN, under the same strict CSP as the ChatUI: no inline script, nothing from
another origin. The files are Swagger UI 5 (it reads FastAPI's OpenAPI 3.1; Swagger UI 4 does not)
as the ``fastapi-offline`` package ships them.

On in local mode; in production only when ``MOZAIKS_API_DOCS=true``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse, HTMLResponse, Response
import fastapi_offline

from mozaiks.protocol.errors import ApiError
from mozaiks.settings import Settings

CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
       "object-src 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
BUNDLE_FILES = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
                "favicon.png": "image/png"}
INIT_JS = """window.ui = SwaggerUIBundle({
  url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
});
"""
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mozaiks runtime API</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/api/docs/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
"""


def docs_enabled(settings: Settings) -> bool:
    return settings.api_docs if settings.api_docs is not None else settings.mode == "local"


class ApiDocs:
    def __init__(self, settings: Settings) -> None:
        self.enabled = docs_enabled(settings)
        self.root = Path(fastapi_offline.__file__).parent / "static"

    def _check(self) -> None:
        if not self.enabled:
            raise ApiError(404, "not_found", "The API docs page is off in production mode (MOZAIKS_API_DOCS=true "
                                             "turns it on)")

    def page(self) -> Response:
        self._check()
        return HTMLResponse(PAGE, headers=HEADERS)

    def asset(self, name: str) -> Response:
        self._check()
        if name == "init.js":
            return Response(INIT_JS, media_type="text/javascript", headers=HEADERS)
        if name not in BUNDLE_FILES:
            raise ApiError(404, "not_found", "Not found")
        return FileResponse(self.root / name, media_type=BUNDLE_FILES[name],
                            headers={**HEADERS, "Cache-Control": "public, max-age=3600"})
