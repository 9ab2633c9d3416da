"""Standalone mode end to end: a runtime configured as a host app would deploy it (production mode,
trusting only the host's Ed25519 key, its own broker off) and the example host broker in front.

That runtime runs in a subprocess with its own local Ray: the session runtime of conftest.py is
configured differently, and one process hosts one Ray.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import ValidationError

from mozaiks.client import ChatConnection
from examples.host_broker import HostBroker
from mozaiks.settings import Settings
from tests.conftest import REPO, free_port
from tests.helpers import collect_until, refused_socket

CREDENTIAL = "host-service-credential-for-tests"
ISSUER = "https://host.test"


def private_pem(key: ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: ed25519.Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def host_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def standalone_runtime(tmp_path_factory: pytest.TempPathFactory, host_key: ed25519.Ed25519PrivateKey) -> Iterator[str]:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("MOZAIKS_")}
    env.update({
        "RAY_ADDRESS": "local",  # a Ray of its own, never one found on the machine
        "MOZAIKS_MODE": "production", "MOZAIKS_PORT": str(port),
        "MOZAIKS_DATA_DIR": str(tmp_path_factory.mktemp("standalone")),
        "MOZAIKS_RUNTIME_TOKEN_ALGORITHM": "EdDSA", "MOZAIKS_RUNTIME_TOKEN_PUBLIC_KEY": public_pem(host_key),
        "MOZAIKS_RUNTIME_TOKEN_ISSUER": ISSUER, "MOZAIKS_SERVICE_CREDENTIAL": CREDENTIAL,
        "MOZAIKS_WARM_POOL_SIZE": "0",
    })
    log = tmp_path_factory.mktemp("standalone-log") / "runtime.log"
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "mozaiks.cli.main", "run"], cwd=REPO, env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # `mozaiks run` stops Serve and its Ray on SIGTERM
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the standalone runtime exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the standalone runtime did not become healthy:\n{log.read_text()[-4000:]}")


async def test_a_chat_runs_through_the_example_host_broker(standalone_runtime: str, host_key: Any) -> None:
    host = HostBroker(standalone_runtime, CREDENTIAL, private_pem(host_key), issuer=ISSUER)
    session = await host.start_chat("shop", "alice", "hello")
    assert session["status"] == "created"
    async with await ChatConnection.open(session["ws_url"], session["runtime_token"]) as chat:
        request = await collect_until(chat, "chat.input_request")
        assert (await chat.say("Ada", input_request_id=request[-1]["data"]["request_id"]))["status"] == "accepted"
        events = await collect_until(chat, "chat.run_complete")
    assert events[-1]["data"]["status"] == "completed"
    assert "Goodbye, Ada! Come back soon." in [e["data"].get("content") for e in events]

    resumed = await host.start_chat("shop", "alice", "hello", chat_id=session["chat_id"])
    assert resumed["status"] == "resumed"


async def test_the_standalone_runtime_trusts_only_the_hosts_key_and_credential(standalone_runtime: str,
                                                                               host_key: Any) -> None:
    intruder = HostBroker(standalone_runtime, CREDENTIAL, private_pem(ed25519.Ed25519PrivateKey.generate()),
                          issuer=ISSUER)
    session = await intruder.start_chat("shop", "bob", "hello")  # the credential is right, the key is not
    assert await refused_socket(session["ws_url"], ["mozaiks.v1", f"bearer.{session['runtime_token']}"]) == (4401, [])

    wrong_credential = HostBroker(standalone_runtime, "guess", private_pem(host_key), issuer=ISSUER)
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await wrong_credential.start_chat("shop", "bob", "hello")
    assert refused.value.response.status_code == 401

    # Its own broker is off: it has no key to mint with and nobody to authenticate users for.
    async with httpx.AsyncClient(base_url=standalone_runtime) as http:
        response = await http.post("/api/mozaiks/sessions", json={"workflow_name": "hello"},
                                   headers={"Authorization": "Bearer anything"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_production_needs_user_jwt_keys_only_for_a_runtime_with_its_own_broker(host_key: Any) -> None:
    standalone = Settings(_env_file=None, mode="production", runtime_token_algorithm="EdDSA",
                          runtime_token_public_key=public_pem(host_key))
    assert not standalone.mints_runtime_tokens
    with pytest.raises(ValidationError, match="MOZAIKS_USER_JWT_SECRET"):
        Settings(_env_file=None, mode="production", runtime_token_secret="s" * 32)
