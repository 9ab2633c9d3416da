"""A throw-away local Redis for tests: Debian's redis-server on a free 127.0.0.1 port, with a
password, no persistence, stopped on exit."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.conftest import free_port


@dataclass(frozen=True)
class RedisServer:
    address: str  # host:port, as RAY_REDIS_ADDRESS takes it
    password: str
    pid: int


def unavailable_reason() -> str | None:
    if shutil.which("redis-server") is None:
        return "no redis-server binary: scripts/test.sh installs redis-server as root"
    return None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    assert binary
    password = secrets.token_hex(16)
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="mozaiks-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", "",
         "--appendonly", "no", "--dir", workdir, "--loglevel", "notice"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:  # redis-server says when it listens; nothing to poll for
            seen.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server exited before it was ready:\n" + "".join(seen))
        # Keep reading what it logs later, so a full pipe never blocks it.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield RedisServer(f"127.0.0.1:{port}", password, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
