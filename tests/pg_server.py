"""A throw-away local PostgreSQL cluster for tests: initdb + pg_ctl under a temp dir, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(versions[-1]) if versions else None


def unavailable_reason() -> str | None:
    if os.environ.get("MOZAIKS_TEST_POSTGRES_URL"):
        return None
    if _binary("initdb") is None or _binary("pg_ctl") is None:
        return "no PostgreSQL server binaries (initdb/pg_ctl): scripts/test.sh installs postgresql as root"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL refuses to run as root"
    return None


@contextmanager
def postgres_url() -> Iterator[str]:
    """MOZAIKS_TEST_POSTGRES_URL if set, else a fresh cluster that is stopped and removed on exit."""
    given = os.environ.get("MOZAIKS_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    assert initdb and pg_ctl
    # PostgreSQL will not run as root: as root, the cluster belongs to the 'postgres' user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="mozaiks-pg-"))
    data = base / "data"
    if as_user:
        shutil.chown(base, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    user = "postgres" if as_user else (os.environ.get("USER") or "postgres")
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                    f"-p {port} -h 127.0.0.1 -k {base} -c fsync=on", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """The URL of a new, empty database on ``server_url``'s server, dropped on exit."""
    name = f"mozaiks_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
