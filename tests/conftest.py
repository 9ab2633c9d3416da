"""One real local Ray + Serve runtime for the whole test session (starting them costs ~15 s here)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from mozaiks.client import BrokerClient
from mozaiks.settings import Settings
from mozaiks.store.sqlite import SQLiteStore
from tests import pg_server
from tests.fake_openai import FakeOpenAI

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
USER_SECRET = "test-user-secret-0123456789abcdef0123456789abcdef"
RUNTIME_SECRET = "test-runtime-secret-0123456789abcdef0123456789ab"
APP_ID = "test-app"
# User JWTs: HS256 with the secret and RS256 with this key are both accepted (the security suite
# needs an RS256 configuration for its algorithm-confusion attack), with a fixed issuer and audience.
USER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
USER_RSA_PUBLIC_PEM = USER_RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
USER_ISSUER = "https://auth.test"
USER_AUDIENCE = "mozaiks-tests"
ALLOWED_ORIGIN = "http://app.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def workflows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped examples plus the tests' own workflows, in one directory the runtime serves."""
    root = tmp_path_factory.mktemp("workflows")
    for source in (REPO / "workflows" / "examples", TESTS / "workflows"):
        for folder in source.iterdir():
            if folder.is_dir() and not folder.name.startswith("__"):
                shutil.copytree(folder, root / folder.name, dirs_exist_ok=True)
    return root


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, workflows_dir: Path) -> Settings:
    data = tmp_path_factory.mktemp("data")
    return Settings(
        mode="local", data_dir=data, workflows_dir=workflows_dir, port=free_port(),
        default_app_id=APP_ID, user_jwt_secret=SecretStr(USER_SECRET),
        user_jwt_algorithms=["HS256", "RS256"], user_jwt_public_key=USER_RSA_PUBLIC_PEM,
        user_jwt_issuer=USER_ISSUER, user_jwt_audience=USER_AUDIENCE,
        capabilities_file=TESTS / "capabilities.yaml", token_budget_per_user=1_000_000,
        ws_allowed_origins=[ALLOWED_ORIGIN], cors_allowed_origins=[ALLOWED_ORIGIN],
        runtime_token_secret=SecretStr(RUNTIME_SECRET), service_credential=SecretStr("test-service-credential"),
        warm_pool_size=2, metrics_export_port=free_port(), generator_workflows=["workflow_generator"],
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    """One throw-away PostgreSQL server for the session (None when this machine has none: the
    tests that need it skip with tests/pg_server.py's reason); each test makes its own database."""
    if pg_server.unavailable_reason():
        yield None
        return
    with pg_server.postgres_url() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    pg_server.unavailable_reason() is not None, reason=f"PostgreSQL: {pg_server.unavailable_reason()}"))])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A test runs once on each store it names this for: "" (the runtime's SQLite file under its
    data directory), then a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield ""
        return
    with pg_server.fresh_database(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture(scope="session")
def user_rsa_key() -> rsa.RSAPrivateKey:
    """The key behind ``user_jwt_public_key``. Take it from this fixture, not by importing
    tests.conftest: pytest loads this file as its own module, so an import is a second copy with
    another key."""
    return USER_RSA_KEY


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[Any]:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Our own local Ray, even when another one on this machine (`ray start`, a test Cluster) left
    # its address in /tmp/ray/ray_current_cluster, which a bare ray.init() would join.
    os.environ["RAY_ADDRESS"] = "local"
    from serve_app.launch import start_runtime, stop_runtime

    info = start_runtime(settings, num_cpus=4)
    yield info
    stop_runtime()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A fresh store in a temporary file, for tests below the runtime."""
    opened = SQLiteStore(str(tmp_path / "store.db"))
    await opened.init()
    yield opened
    await opened.close()


def user_token(user: str, app_id: str = APP_ID, ttl: int = 600, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": user, "app_id": app_id, "iss": USER_ISSUER, "aud": USER_AUDIENCE, "iat": now,
               "exp": now + ttl, **claims}
    return jwt.encode(payload, USER_SECRET, algorithm="HS256")


def auth_header(user: str, app_id: str = APP_ID, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(user, app_id, **claims)}"}


@pytest.fixture
async def http(runtime: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client of the session's runtime, for tests of the raw API."""
    async with httpx.AsyncClient(base_url=runtime.http_url, timeout=30) as client:
        yield client


@pytest.fixture
async def broker_for(runtime: Any) -> AsyncIterator[Callable[..., BrokerClient]]:
    clients: list[BrokerClient] = []

    def make(user: str = "alice", app_id: str = APP_ID, **claims: Any) -> BrokerClient:
        client = BrokerClient(runtime.http_url, user_token(user, app_id, **claims))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def fake_model() -> Iterator[FakeOpenAI]:
    """The local OpenAI-protocol server, one per test, with its own queue of replies."""
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()
