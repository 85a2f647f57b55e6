"""The shared backend: PostgreSQL (``CDS_DATABASE_URL``), for several processes or replicas.

psycopg 3 with a connection pool per process (``psycopg_pool``), opened on first use (so a
server's worker processes each open their own after they start), connections checked before
use, so a restarted database costs one failed check, not a failed call. Every transaction is
committed with ``synchronous_commit=on`` (set per connection, whatever the server's default):
feedback answered 200 is on the database's disk, as with SQLite.

When the database cannot be reached, calls that need it are answered 503 with ``Retry-After``
(``ServiceUnavailable``) and ``GET /ready`` fails; hook calls do not need it: their snooze lookup
and served-card write-through wait at most ``CDS_SNOOZE_LOOKUP_TIMEOUT`` for a connection and a
statement, and not at all while the store is known to be down (``guard.py``); their cards are
then served without snoozes and their served-card rows wait in the writer's queue.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from cds_service.calllog import event
from cds_service.config import redact_url
from cds_service.errors import ServiceUnavailable
from cds_service.feedback.migrations import POSTGRESQL, apply_pending
from cds_service.feedback.store import Cursor, SqlFeedbackStore, log, utcnow

# An arbitrary constant: the key of the advisory lock held while migrating ("cdss").
MIGRATION_LOCK = 0x63647373
UNAVAILABLE = "The feedback database cannot be reached right now; send the same request again shortly."

# The pool logs every connection request at INFO: that would be a second log line per call.
logging.getLogger("psycopg.pool").setLevel(logging.WARNING)


def _configure(conn: psycopg.Connection[Any]) -> None:
    # Acknowledged means durable, whatever the server's default says.
    conn.autocommit = True
    conn.execute("SET synchronous_commit = on")
    conn.autocommit = False


class PostgresFeedbackStore(SqlFeedbackStore):
    backend = "postgresql"
    dialect = POSTGRESQL

    def __init__(self, url: str, *, pool_size: int = 8, connect_timeout: float = 5.0):
        super().__init__()
        self.url = url
        self.connect_timeout = connect_timeout
        self._connect_kwargs: dict[str, Any] = {
            "connect_timeout": max(1, math.ceil(connect_timeout)),
            "application_name": "calciphylaxis-cds",
        }
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=connect_timeout,
            kwargs=self._connect_kwargs,
            configure=_configure,
            check=ConnectionPool.check_connection,
            name="cds-feedback",
            reconnect_timeout=60,
        )
        self._open_lock = threading.Lock()
        self._opened = False
        self._migrate_lock = threading.Lock()
        self._migrated = False  # migrated on first use, or by an explicit migrate() at start-up

    def describe(self) -> str:
        return f"PostgreSQL {redact_url(self.url)}"

    # -- connections ----------------------------------------------------------------------------
    def _ensure_open(self) -> None:
        if not self._opened:
            with self._open_lock:
                if not self._opened:
                    # Not waiting: a database that is down now must not stop the process; calls
                    # that need it get 503 and /ready says why, until it is back.
                    self._pool.open(wait=False)
                    self._opened = True

    def close(self) -> None:
        with self._open_lock:
            if self._opened:
                self._pool.close(timeout=5)
                self._opened = False

    @contextmanager
    def _transaction(self, timeout: float | None = None, durable: bool = True) -> Iterator[Cursor]:
        """A pooled connection in one transaction. ``timeout``: the longest wait for a connection,
        and (a hook call's bound) for every statement and lock in the block. ``durable=False``:
        the commit is visible to every other connection at once but not waited on to reach the
        disk (``synchronous_commit=off`` for this transaction only)."""
        self._ensure_open()
        try:
            with self._pool.connection(timeout=timeout) as conn:
                if not self._migrated:
                    self._migrate_on(conn)
                with conn.cursor() as cur:
                    settings: dict[str, str] = {}
                    if timeout is not None:
                        settings["statement_timeout"] = f"{max(1, int(timeout * 1000))}ms"
                    if not durable:
                        settings["synchronous_commit"] = "off"
                    if settings:  # one round trip, for this transaction only
                        cur.execute(
                            "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in settings),
                            [value for pair in settings.items() for value in pair],
                        )
                    yield cur
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            event(log, logging.ERROR, "feedback store unavailable", store=self.describe(), error=_short(exc))
            raise ServiceUnavailable(UNAVAILABLE) from None

    def _lock(self, cur: Cursor, keys: Iterable[str]) -> None:
        # Transaction-scoped advisory locks, always taken in the same (numeric) order: two
        # requests about the same card wait for each other, and never deadlock.
        for number in sorted({_lock_number(key) for key in keys}):
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (number,))

    def _timestamp(self, value: datetime) -> Any:
        return value

    def ping(self) -> None:
        with self._transaction(timeout=min(self.connect_timeout, 2.0)) as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    # -- schema ------------------------------------------------------------------------------------
    def _migrate_on(self, conn: psycopg.Connection[Any]) -> None:
        """Migrate on first use, on a pooled connection (a worker process: the server migrated
        before it started the workers, so this finds nothing to apply), under the same lock."""
        with self._migrate_lock:
            if self._migrated:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                done = apply_pending(conn, POSTGRESQL, utcnow().isoformat(timespec="milliseconds"))
            self._migrated = True
        if done:
            log.info("schema migrated", extra={"store": self.describe(), "applied": done})

    def migrate(self) -> list[int]:
        """Apply the migrations this database lacks, on a connection of its own (no pool: the
        server migrates before it starts its worker processes), under an advisory lock so that
        replicas starting at once apply each migration once."""
        try:
            with psycopg.connect(self.url, **self._connect_kwargs) as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                done = apply_pending(conn, POSTGRESQL, utcnow().isoformat(timespec="milliseconds"))
        except psycopg.OperationalError as exc:
            event(log, logging.ERROR, "feedback store unavailable", store=self.describe(), error=_short(exc))
            raise ServiceUnavailable(UNAVAILABLE, detail=f"cannot reach {self.describe()}: {_short(exc)}") from None
        self._migrated = True
        if done:
            log.info("schema migrated", extra={"store": self.describe(), "applied": done})
        return done


def _lock_number(key: str) -> int:
    """A key as the signed 64-bit number an advisory lock takes (other than the migration lock's)."""
    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    return number if number != MIGRATION_LOCK else number + 1


def _short(exc: BaseException) -> str:
    """An error's first line, without the connection string a libpq message may quote."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
