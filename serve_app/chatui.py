"""The ChatUI's HTTP side: the full page (/chat/), the built bundle, workflow components, and the
local-mode development token.

The bundle is built from chatui/ by scripts/run.sh (never committed). Workflow components are
ES modules in a workflow's ``components/`` folder; they are served only to a runtime token for that
workflow, which the Session Broker mints only after its entitlement check. The development token
endpoint exists only in local mode and only answers loopback callers of a loopback-bound runtime.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from broker.errors import AuthError
from broker.keys import dev_token
from broker.runtime_token import RuntimeTokenVerifier
from mozaiks.protocol.errors import ApiError, unauthenticated
from mozaiks.settings import Settings
from workflows.model import Workflow

DEV_USER = "local-dev"
DEV_TOKEN_TTL_S = 3600
_COMPONENT = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_ASSET = re.compile(r"^[a-z][a-z0-9-]{0,40}\.js$")

# No inline script anywhere; components load from blob: URLs made from modules fetched with the
# chat's token. Styles may be inline (components and Lit style their own elements).
CSP = ("default-src 'none'; script-src 'self' blob:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
       "object-src 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mozaiks chat</title>
<link rel="stylesheet" href="/chat/page.css">
<script type="module" src="/chat/mozaiks-chat.js"></script>
<script type="module" src="/chat/page.js"></script>
</head>
<body>
<mozaiks-chat presentation="inline" heading="mozaiks"></mozaiks-chat>
</body>
</html>
"""

PAGE_CSS = """html, body { height: 100%; margin: 0; }
body { padding: 12px; box-sizing: border-box; background: #eef1f4; }
@media (prefers-color-scheme: dark) { body { background: #05080b; } }
mozaiks-chat { height: 100%; max-width: 1200px; margin: 0 auto; }
"""


def _loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# A chat's workflow by (app_id, name): the workflows directory's, or one the app installed.
WorkflowLookup = Callable[[str, str], Awaitable[Workflow]]


class ChatUi:
    def __init__(self, settings: Settings, workflow_of: WorkflowLookup, verifier: RuntimeTokenVerifier) -> None:
        self.settings = settings
        self.workflow_of = workflow_of
        self.verifier = verifier
        self.dist = settings.chatui_dist

    def page(self) -> HTMLResponse:
        return HTMLResponse(PAGE, headers=PAGE_HEADERS)

    def asset(self, name: str) -> Response:
        """The full page's stylesheet, or a file of the built bundle: public code (no secrets in
        it), so any origin may embed it."""
        if name == "page.css":
            return Response(PAGE_CSS, media_type="text/css", headers={"Cache-Control": "no-cache"})
        path = self.dist / name
        if not _ASSET.match(name) or not path.is_file():
            if not (self.dist / "mozaiks-chat.js").is_file():
                raise ApiError(404, "not_found", "The ChatUI bundle is not built: run scripts/run.sh "
                                                 "(or `npm ci && npm run build` in chatui/)")
            raise ApiError(404, "not_found", f"No ChatUI asset {name!r}")
        return FileResponse(path, media_type="text/javascript",
                            headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*",
                                     "X-Content-Type-Options": "nosniff"})

    async def component(self, workflow_name: str, component: str, authorization: str | None) -> Response:
        """A workflow's UI component, for a runtime token scoped to that workflow only."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise unauthenticated("A runtime token for this workflow is required")
        try:
            claims = await self.verifier.verify(authorization[7:].strip())
        except AuthError as exc:
            raise unauthenticated(str(exc)) from None
        name = component.removesuffix(".js")
        if claims.workflow_name != workflow_name:
            # Same answer as for a missing component: a token never learns what another workflow ships.
            raise ApiError(404, "not_found", f"No component {name!r} for this chat's workflow")
        try:
            folder = (await self.workflow_of(claims.app_id, workflow_name)).path
        except Exception:
            raise ApiError(404, "not_found", f"No component {name!r} for this chat's workflow") from None
        path = Path(folder) / "components" / f"{name}.js"
        if not _COMPONENT.match(name) or not path.is_file():
            raise ApiError(404, "not_found", f"No component {name!r} for this chat's workflow")
        return Response(path.read_bytes(), media_type="text/javascript",
                        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})

    def dev_token(self, request: Request) -> dict[str, object]:
        """A user JWT for the full page in local mode. Absent (404) in production, on a runtime
        bound to a non-loopback address, and for callers that are not on this machine."""
        s = self.settings
        client = request.client.host if request.client else None
        if s.mode != "local" or not _loopback(s.host) or not _loopback(client):
            raise ApiError(404, "not_found", "Not found")
        try:
            token = dev_token(s, DEV_USER, app_id=s.default_app_id, ttl_s=DEV_TOKEN_TTL_S)
        except ValueError:
            raise ApiError(404, "not_found", "Not found") from None
        return {"token": token, "user_id": DEV_USER, "expires_in": DEV_TOKEN_TTL_S}
