"""Real PostgreSQL and Redis servers for the tests of the shared backends (no mocks).

`make services` (tools/services.py) installs and starts both on loopback and writes
var/services/services.env; `.ci/run` does the same on every CI run. The environment variables
CDS_TEST_DATABASE_URL (an admin URL) and CDS_TEST_REDIS_URL, when set, win over that file.

Each test session makes its own database (dropped at the end), and each test its own schema in
it (the store's URL carries `options=-csearch_path=...`) and its own Redis key prefix: tests never
see each other's rows or keys. Without the servers these tests skip, naming `make services`;
under CI (CI=true) they fail instead, since CI must have started them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from tools.services import PostgresCluster, free_port

REPO = Path(__file__).resolve().parents[1]
ENV_FILE = REPO / "var" / "services" / "services.env"
MAKE_TARGET = "`make services` installs and starts them (tools/services.py)"


def _configured() -> dict[str, str]:
    values: dict[str, str] = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    for key in ("CDS_TEST_DATABASE_URL", "CDS_TEST_REDIS_URL", "CDS_TEST_PG_BINDIR"):
        if os.environ.get(key):
            values[key] = os.environ[key]
    return values


def _reachable(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def _missing(what: str) -> None:
    message = f"{what} is not running: {MAKE_TARGET}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must start its servers before the tests: {message}")
    pytest.skip(message)


def admin_database_url() -> str:
    url = _configured().get("CDS_TEST_DATABASE_URL")
    if not _reachable(url):
        _missing("PostgreSQL")
    assert url
    return url


def redis_server_url() -> str:
    url = _configured().get("CDS_TEST_REDIS_URL")
    if not _reachable(url):
        _missing("Redis")
    assert url
    return url


def pg_bindir() -> Path:
    configured = _configured().get("CDS_TEST_PG_BINDIR")
    if configured and (Path(configured) / "pg_ctl").exists():
        return Path(configured)
    from tools.services import pg_bindir as find

    found = find()
    if found is None:
        _missing("PostgreSQL (its server programs)")
    assert found is not None
    return found


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = (parts.query + "&" if parts.query else "") + "options=" + quote(f"-csearch_path={schema}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A new, empty database for this test session (dropped at its end); its URL."""
    import psycopg

    admin = admin_database_url()
    name = f"cds_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A URL whose tables live in a schema of this test's own (dropped after the test)."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_schema(pg_database, schema)
    finally:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_settings() -> Iterator[dict[str, str]]:
    """``redis_url`` and a ``redis_key_prefix`` of this test's own (its keys deleted after)."""
    import redis

    url = redis_server_url()
    prefix = f"cds-test:{uuid.uuid4().hex[:12]}:"
    try:
        yield {"redis_url": url, "redis_key_prefix": prefix}
    finally:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def private_postgres():
    """A PostgreSQL cluster of this test's own, which it may stop and start."""
    directory = Path(tempfile.mkdtemp(prefix="cds-pg-"))
    directory.chmod(0o755)  # as root, the cluster runs as the postgres user
    cluster = PostgresCluster(directory / "data", free_port(), bindir=pg_bindir(), fast=True)
    cluster.start()
    yield cluster
    cluster.destroy()
    subprocess.run(["rm", "-rf", str(directory)], check=False)
