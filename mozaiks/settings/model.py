from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_WORKFLOWS = REPO_ROOT / "workflows" / "examples"


class Settings(BaseSettings):
    """Every knob of the runtime. Defaults are safe for a laptop; production must set secrets."""

    model_config = SettingsConfigDict(env_prefix="MOZAIKS_", env_file=".env", extra="ignore")

    mode: Literal["local", "production"] = "local"
    data_dir: Path = Path(".data")
    store_url: str = ""  # sqlite:///path or mongodb://…; empty = SQLite under data_dir
    workflows_dir: Path = EXAMPLE_WORKFLOWS
    capabilities_file: Path | None = None  # JSON/YAML registry; unset: every workflow is public
    # "claims" (plan in the user JWT), "store" (subscriptions table) or "pkg.module:Class"
    entitlement_provider: str = "claims"
    admin_role: str = "admin"  # the role that sees and starts `visibility: admin` capabilities

    host: str = "127.0.0.1"
    port: int = 8000
    public_ws_base: str | None = None  # what the broker puts in ws_url; derived from host:port if unset
    default_app_id: str = "local-app"
    chatui_dist: Path = REPO_ROOT / "chatui" / "dist"  # the built ChatUI bundle the runtime serves at /chat/

    # User JWT (what the broker accepts)
    user_jwt_algorithms: list[str] = ["HS256"]
    user_jwt_secret: SecretStr | None = None
    user_jwt_public_key: str | None = None  # PEM text
    user_jwt_jwks_url: str | None = None
    user_jwt_issuer: str | None = None
    user_jwt_audience: str | None = None
    user_jwt_leeway_s: int = Field(default=30, ge=0, le=60)
    claim_user_id: str = "sub"
    claim_app_id: str = "app_id"
    claim_tenant_id: str = "tenant_id"
    claim_plan: str = "plan"
    claim_roles: str = "roles"

    # Runtime token (what the WebSocket accepts)
    runtime_token_secret: SecretStr | None = None
    runtime_token_algorithm: Literal["HS256", "RS256", "ES256", "EdDSA"] = "HS256"
    runtime_token_private_key: str | None = None  # PEM, when this runtime mints with a key pair
    runtime_token_public_key: str | None = None  # PEM, Standalone: the host broker's key
    runtime_token_jwks_url: str | None = None  # Standalone: the host broker's JWKS
    runtime_token_issuer: str = "mozaiks-broker"
    runtime_token_ttl_s: int = Field(default=900, ge=30, le=900)
    service_credential: SecretStr | None = None  # Standalone: host brokers call /api/runtime/*

    # WebSocket edge
    ws_max_frame_bytes: int = 64 * 1024
    ws_rate_per_s: float = 20.0
    ws_rate_burst: int = 40
    ws_auth_timeout_s: float = 5.0
    ws_allowed_origins: list[str] = []
    ws_allow_query_token: bool = False
    ws_ping_interval_s: float = Field(default=15.0, gt=0)  # server → client `ping` events
    # How long an open socket waits for its crashed session to be re-activated before it closes
    # with 1012 (reconnect); with Ray's ~1 s to report the death, a client knows within 5 s.
    ws_session_recovery_s: float = Field(default=4.0, gt=0)
    cors_allowed_origins: list[str] = []
    ingress_max_ongoing_requests: int = 1000
    # HTTP request limits (docs/security.md): larger bodies get 413, larger or deeper contexts 422.
    http_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    context_max_bytes: int = Field(default=64 * 1024, ge=2)
    context_max_depth: int = Field(default=16, ge=1)

    # Operations (docs/operations.md)
    log_format: Literal["text", "json"] = "text"  # json: one JSON object a line, for log collectors
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Where the Ray this runtime starts serves its Prometheus metrics (a cluster's own Ray: `ray start
    # --metrics-export-port`); unset: a port Ray picks.
    metrics_export_port: int | None = Field(default=None, ge=1, le=65535)
    api_docs: bool | None = None  # the interactive page at /api/docs; unset: on in local mode only

    # Installed workflows (docs/workflows.md, "Installing workflows at runtime"). Only the service
    # credential installs, and the tools of the operator's workflows named here: end users never do.
    generator_workflows: list[str] = []
    # An installed workflow's capability when its install names none: gated (only entitled users
    # start it). scripts/run.sh turns this off for the local dev run, whose ChatUI user has no plan.
    installed_workflows_gated: bool = True
    install_max_files: int = Field(default=200, ge=1)
    install_max_file_bytes: int = Field(default=256 * 1024, ge=1)  # all files together: http_max_body_bytes

    # Session lifecycle. The warm pool of blank, prepared session actors sizes itself to the recent
    # arrival rate of activations (actors/warm_pool.py): never below warm_pool_size, never above
    # warm_pool_max (nor max_resident_sessions). The rate is averaged over warm_pool_window_s, and
    # pooled actors beyond the pool's target that went unused that long are ended, so after a quiet
    # period of a few windows the pool is back at warm_pool_size.
    warm_pool_size: int = Field(default=2, ge=0)
    warm_pool_max: int = Field(default=8, ge=0)
    warm_pool_window_s: float = Field(default=60.0, gt=0)
    idle_timeout_s: float = 10.0
    # A chat activated for a caller (the broker's create, a socket's connect) keeps its process this
    # long, or until the caller reaches it, before idle_timeout_s applies: on a loaded node the
    # attach after an activation can take longer than the keep-alive, and a chat passivated in
    # between is activated again for every retry (the 100-chat soak at load 130-190).
    activation_grace_s: float = Field(default=60.0, ge=0)
    max_resident_sessions: int = 200  # per node, over all directory shards (docs/architecture.md)
    # Directory shards (actors/names.py:shard_of): one is enough for a laptop; a cluster spreads
    # activations and crash recovery over several. Fixed for a runtime's life.
    directory_shards: int = Field(default=1, ge=1, le=64)
    # Child chats running at once across the whole cluster, all fan-outs together (each fan-out's
    # own max_children applies too); None: no cap beyond max_children. docs/workflows.md.
    max_running_children: int | None = Field(default=100, ge=1)

    # Models
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    default_model: str = "gpt-4o-mini"
    # "openai": run scripted agents (the examples) on the configured OpenAI-compatible model instead
    model_override: Literal["", "openai"] = ""
    model_timeout_s: float = 60.0
    model_max_retries: int = 3

    # Usage gating
    token_budget_per_user: int | None = Field(default=None, ge=1)
    token_budget_per_app: int | None = Field(default=None, ge=1)
    budget_period: Literal["day", "month"] = "month"
    # Usage records older than this are deleted (daily, by the directory); longer than any budget
    # period, so budgets never lose what they count. None: keep everything.
    usage_retention_days: int | None = Field(default=400, ge=32)
    # Tokens each new session reserves from the budgets (a capability may set its own); see docs/security.md.
    session_token_reservation: int = Field(default=0, ge=0)
    session_rate_per_minute: int | None = Field(default=30, ge=1)  # per user; None: unlimited

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> "Settings":
        if self.mode == "production":
            # A runtime that only trusts a host's broker (Standalone) has no broker of its own to guard.
            if self.mints_runtime_tokens and not (self.user_jwt_secret or self.user_jwt_public_key
                                                  or self.user_jwt_jwks_url):
                raise ValueError("production mode needs MOZAIKS_USER_JWT_SECRET, _PUBLIC_KEY or _JWKS_URL")
            if not (self.runtime_token_secret or self.runtime_token_private_key
                    or self.runtime_token_public_key or self.runtime_token_jwks_url):
                raise ValueError("production mode needs a runtime token key (MOZAIKS_RUNTIME_TOKEN_*)")
        return self

    @property
    def mints_runtime_tokens(self) -> bool:
        """Whether this runtime's own Session Broker can sign runtime tokens. Without a signing key
        the runtime only verifies the tokens of a host app's broker (Standalone mode)."""
        if self.runtime_token_algorithm == "HS256":
            return self.runtime_token_secret is not None
        return bool(self.runtime_token_private_key)

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{(self.data_dir / 'mozaiks.db').resolve()}"

    @property
    def ws_base(self) -> str:
        return self.public_ws_base or f"ws://{self.host}:{self.port}"

    def with_local_secrets(self) -> "Settings":
        """Local mode only: use (or create once) a random development secret kept in the data dir.

        There is no literal fallback secret anywhere; a fresh machine gets its own random one.
        """
        if self.mode != "local":
            return self
        updates: dict[str, SecretStr] = {}
        if self.user_jwt_secret is None and "HS256" in self.user_jwt_algorithms:
            updates["user_jwt_secret"] = SecretStr(_dev_secret(self.data_dir, "dev-user-jwt.secret"))
        if self.runtime_token_secret is None and self.runtime_token_algorithm == "HS256":
            updates["runtime_token_secret"] = SecretStr(_dev_secret(self.data_dir, "dev-runtime.secret"))
        return self.model_copy(update=updates) if updates else self


def _dev_secret(data_dir: Path, name: str) -> str:
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value)
    path.chmod(0o600)
    return value


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    return Settings().with_local_secrets()
