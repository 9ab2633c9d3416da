"""The Serve ingress deployment: broker routes (§2), Standalone runtime API (§3), WebSocket (§4).

No ``from __future__ import annotations`` here: Serve's class-based views rebuild the route
signatures and FastAPI then cannot resolve string annotations (every body turns into a query).
"""


import asyncio
import hmac
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from ray import serve

from actors.commits import stored_wire
from actors.directory import get_directory
from broker.errors import AuthError
from broker.runtime_token import RuntimeTokenVerifier
from broker.service import SessionBroker
from broker.user_jwt import UserJwtVerifier
from capabilities import Gate, load_registry, provider_factory
from capabilities.installs import InstalledWorkflows, summary
from mozaiks import logs, metrics
from mozaiks.protocol.broker_api import (
    CancelRequest, CreateSessionRequest, RuntimeSessionRequest, RuntimeSessionResponse, SubscriptionRequest,
    WorkflowInstallRequest,
)
from mozaiks.protocol.client_messages import MAX_SEQ
from mozaiks.protocol.errors import ApiError, unauthenticated
from mozaiks.protocol.identity import Identity
from serve_app.api_docs import ApiDocs
from serve_app.chatui import ChatUi
from serve_app.errors import ERROR_RESPONSES, install_error_handlers
from serve_app.limits import BodyLimit
from serve_app.websocket import SocketSession
from mozaiks.settings import Settings
from mozaiks.store import Store, open_store
from workflows.catalog import WorkflowCatalog
from workflows.model import Workflow

app = FastAPI(title="mozaiks runtime", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
              responses=ERROR_RESPONSES)
install_error_handlers(app)


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise unauthenticated("Missing bearer token")
    return authorization[7:].strip()


# A short drain: open chat sockets would otherwise hold `mozaiks run` on SIGTERM for Serve's default 20 s,
# longer than process supervisors wait; clients resume after the close anyway.
@serve.deployment(name="MozaiksIngress", ray_actor_options={"num_cpus": 0}, graceful_shutdown_timeout_s=2)
@serve.ingress(app)
class MozaiksIngress:
    def __init__(self, settings: Settings) -> None:
        logs.configure(settings.log_format, settings.log_level)
        self.settings = settings
        # A Standalone runtime (no key to mint with) has no broker of its own to authenticate for.
        self.user_verifier = UserJwtVerifier(settings) if settings.mints_runtime_tokens else None
        self.runtime_verifier = RuntimeTokenVerifier(settings)
        self.catalog = WorkflowCatalog(settings.workflows_dir)
        # Loaded here, not on first request, so a bad registry or provider fails the deployment.
        self.registry = load_registry(settings.capabilities_file, self.catalog.names())
        self.entitlements = provider_factory(settings.entitlement_provider)
        self.directory = get_directory(settings)
        self.chatui = ChatUi(settings, self.workflow_of, self.runtime_verifier)
        self.api_docs = ApiDocs(settings)
        self._store: Store | None = None
        self._broker: SessionBroker | None = None
        self._init_lock = asyncio.Lock()

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this once the replica is constructed: the app it serves is its own copy of the
        module's (routes bound to this instance), which gets this instance's middleware here. The
        module-level ``app`` is the route table only and is never changed."""
        served: FastAPI = self.app  # type: ignore[attr-defined]  # set by Serve's ingress wrapper
        served.add_middleware(BodyLimit, max_bytes=self.settings.http_max_body_bytes)
        served.add_middleware(metrics.HttpMetrics)
        if self.settings.cors_allowed_origins:
            served.add_middleware(CORSMiddleware, allow_origins=self.settings.cors_allowed_origins,
                                  allow_credentials=True, allow_methods=["GET", "POST"],
                                  allow_headers=["Authorization", "Content-Type", "Idempotency-Key"])
        return served

    async def broker(self) -> SessionBroker:
        if self._broker is None:
            async with self._init_lock:
                if self._broker is None:
                    store = open_store(self.settings.resolved_store_url)
                    await store.init()
                    self._store = store
                    gate = Gate(self.settings, store, self.registry, self.entitlements(self.settings, store))
                    workflows = InstalledWorkflows(self.settings, self.catalog, store)
                    self._broker = SessionBroker(self.settings, store, workflows, self.directory, gate=gate)
        return self._broker

    async def workflow_of(self, app_id: str, name: str) -> Workflow:
        return await (await self.broker()).workflows.get(app_id, name)

    async def identity(self, authorization: str | None) -> Identity:
        if self.user_verifier is None:
            raise ApiError(404, "not_found", "This runtime's Session Broker is off: a host app's broker "
                                             "mints its runtime tokens (Standalone mode)")
        try:
            return await self.user_verifier.verify(_bearer(authorization))
        except AuthError as exc:
            raise unauthenticated(str(exc)) from None

    # -------------------------------------------------------------- broker (§2)
    @app.post("/api/mozaiks/sessions")
    async def create_session(self, body: CreateSessionRequest,
                             authorization: Annotated[str | None, Header()] = None,
                             idempotency_key: Annotated[str | None, Header(max_length=128)] = None) -> JSONResponse:
        identity = await self.identity(authorization)
        response, created = await (await self.broker()).create_or_resume(identity, body, idempotency_key)
        return JSONResponse(response.model_dump(), status_code=201 if created else 200)

    @app.get("/api/mozaiks/sessions")
    async def list_sessions(self, authorization: Annotated[str | None, Header()] = None,
                            limit: Annotated[int, Query(ge=1, le=100)] = 20,
                            cursor: Annotated[str | None, Query(max_length=512)] = None) -> dict[str, Any]:
        identity = await self.identity(authorization)
        return (await (await self.broker()).list_sessions(identity, limit, cursor)).model_dump()

    @app.get("/api/mozaiks/workflows")
    async def list_workflows(self, authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        identity = await self.identity(authorization)
        return (await (await self.broker()).list_workflows(identity)).model_dump()

    @app.post("/api/mozaiks/sessions/{chat_id}/token")
    async def refresh_token(self, chat_id: str, authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        identity = await self.identity(authorization)
        return (await (await self.broker()).refresh_token(identity, chat_id)).model_dump()

    @app.post("/api/mozaiks/sessions/{chat_id}/cancel")
    async def cancel(self, chat_id: str, body: CancelRequest,
                     authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        identity = await self.identity(authorization)
        return (await (await self.broker()).cancel(identity, chat_id, body)).model_dump()

    @app.get("/api/mozaiks/sessions/{chat_id}/events")
    async def events(self, chat_id: str, authorization: Annotated[str | None, Header()] = None,
                     after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
        identity = await self.identity(authorization)
        return (await (await self.broker()).events(identity, chat_id, after_seq, limit)).model_dump()

    # -------------------------------------------------------------- Standalone runtime API (§3)
    @app.post("/api/runtime/sessions")
    async def runtime_session(self, body: RuntimeSessionRequest,
                              authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
        self.service_caller(authorization)
        chat, created = await (await self.broker()).open_chat(body.app_id, body.user_id, body.workflow_name,
                                                              body.chat_id, body.context)
        payload = RuntimeSessionResponse(chat_id=chat.chat_id, status="created" if created else "resumed")
        return JSONResponse(payload.model_dump(), status_code=201 if created else 200)

    @app.put("/api/runtime/subscriptions")
    async def set_subscription(self, body: SubscriptionRequest,
                               authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """Feeds the "store" entitlement provider: the host's billing tells us who has which plan."""
        self.service_caller(authorization)
        await (await self.broker()).store.set_subscription(body.app_id, body.user_id, body.plan)
        return body.model_dump()

    @app.put("/api/runtime/workflows/{name}")
    async def install_workflow(self, name: str, body: WorkflowInstallRequest,
                               authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
        """Install (or replace) one app's workflow: validated whole, stored, startable at once."""
        self.service_caller(authorization)
        record, created = await (await self.broker()).workflows.install(
            body.app_id, name, body.files, body.capability, installed_by="service")
        return JSONResponse(summary(record).model_dump(), status_code=201 if created else 200)

    @app.get("/api/runtime/workflows/{name}")
    async def installed_workflow(self, name: str, app_id: Annotated[str, Query(min_length=1, max_length=128)],
                                 authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        self.service_caller(authorization)
        record = await (await self.broker()).store.get_installed_workflow(app_id, name)
        if record is None:
            raise ApiError(404, "unknown_workflow", f"No installed workflow {name!r} in app {app_id!r}")
        return {**summary(record).model_dump(), "files": record.files}

    @app.delete("/api/runtime/workflows/{name}")
    async def uninstall_workflow(self, name: str, app_id: Annotated[str, Query(min_length=1, max_length=128)],
                                 authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """New chats of it can no longer start; open ones end when their session next activates."""
        self.service_caller(authorization)
        if not await (await self.broker()).workflows.remove(app_id, name):
            raise ApiError(404, "unknown_workflow", f"No installed workflow {name!r} in app {app_id!r}")
        return {"app_id": app_id, "name": name, "deleted": True}

    def service_caller(self, authorization: str | None) -> None:
        expected = self.settings.service_credential
        if expected is None:
            raise ApiError(404, "not_found", "The runtime API is not enabled")
        if not hmac.compare_digest(_bearer(authorization).encode(), expected.get_secret_value().encode()):
            raise unauthenticated("Invalid service credential")

    # -------------------------------------------------------------- ChatUI (docs/chatui.md)
    @app.get("/chat", include_in_schema=False)
    async def chat_redirect(self) -> RedirectResponse:
        return RedirectResponse("/chat/")

    @app.get("/chat/", include_in_schema=False)
    async def chat_page(self) -> Response:
        return self.chatui.page()

    @app.get("/chat/{asset}", include_in_schema=False)
    async def chat_asset(self, asset: str) -> Response:
        return self.chatui.asset(asset)

    @app.get("/api/mozaiks/workflows/{workflow_name}/components/{component}")
    async def workflow_component(self, workflow_name: str, component: str,
                                 authorization: Annotated[str | None, Header()] = None) -> Response:
        return await self.chatui.component(workflow_name, component, authorization)

    @app.post("/api/mozaiks/dev/token", include_in_schema=False)
    async def dev_token(self, request: Request) -> dict[str, Any]:
        return self.chatui.dev_token(request)

    @app.get("/api/docs", include_in_schema=False)
    async def api_docs_page(self) -> Response:
        return self.api_docs.page()

    @app.get("/api/docs/{asset}", include_in_schema=False)
    async def api_docs_asset(self, asset: str) -> Response:
        return self.api_docs.asset(asset)

    @app.get("/healthz")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    # -------------------------------------------------------------- WebSocket (§4)
    @app.websocket("/ws/{workflow_name}/{app_id}/{chat_id}/{user_id}")
    async def websocket(self, ws: WebSocket, workflow_name: str, app_id: str, chat_id: str, user_id: str) -> None:
        await SocketSession(ws, self.settings, self.runtime_verifier, self.directory, self.read_log,
                            workflow_name, app_id, chat_id, user_id).run()

    async def read_log(self, app_id: str, user_id: str, chat_id: str, after_seq: int) -> list[tuple[int, str]]:
        """A chat's durable events after ``after_seq`` as wire envelopes, straight from the store: what
        a socket still owes its client when the chat's session went away before delivering them."""
        store = (await self.broker()).store
        return [(event.seq, stored_wire(chat_id, event))
                for event in await store.read_events(app_id, user_id, chat_id, after_seq)]


def build_app(settings: Settings) -> Any:
    """The bound Serve application for these settings."""
    return MozaiksIngress.options(max_ongoing_requests=settings.ingress_max_ongoing_requests).bind(settings)


def app_builder(args: dict[str, str]) -> Any:
    """Entry point for ``serve run`` / ``serve deploy`` configs: settings from env and ``args``."""
    from mozaiks.settings import Settings as _Settings
    return build_app(_Settings(**args).with_local_secrets())


__all__ = ["MozaiksIngress", "app", "app_builder", "build_app"]
