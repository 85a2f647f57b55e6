"""The embedded backend: one SQLite file, created on first use (the default; no server needed).

Durability, chosen deliberately: WAL journal with ``synchronous=FULL`` (and ``fullfsync`` where
the OS has it, i.e. macOS), so every commit is on stable storage before it returns. Feedback
answered 200 survives a crash or a power loss. The price is one fsync per commit: one per
feedback call, and one per batch of served cards (written off the request thread).

Several processes on one machine may share the file (SQLite locks it); replicas on several
machines need PostgreSQL (``postgres.py``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cds_service.calllog import event
from cds_service.errors import ServiceUnavailable
from cds_service.feedback.migrations import SQLITE, apply_pending
from cds_service.feedback.store import Cursor, SqlFeedbackStore, log, utcnow

# Per connection; see the module docstring.
# busy_timeout first: the journal_mode switch may have to wait for another connection.
DURABILITY_PRAGMAS = ("busy_timeout=10000", "journal_mode=WAL", "synchronous=FULL", "fullfsync=ON")
_DEFAULT_BUSY_MS = 10000  # the busy_timeout above

UNAVAILABLE = "The feedback store is busy or cannot be reached right now; send the same request again shortly."


def _pragma_when_free(conn: sqlite3.Connection, pragma: str, attempts: int = 200) -> None:
    """Run a PRAGMA, retrying while another process holds the lock it needs (the journal-mode
    switch of a new file is refused at once rather than waited for): up to about 10 s."""
    for attempt in range(attempts):
        try:
            conn.execute(f"PRAGMA {pragma}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def sqlite_timestamp(value: datetime) -> str:
    """UTC, millisecond precision, one fixed width: such strings sort as the instants do."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


class SQLiteFeedbackStore(SqlFeedbackStore):
    """Thread-safe: one connection per thread, WAL so readers never block the writer."""

    backend = "sqlite"
    dialect = SQLITE

    def __init__(self, path: Path | str):
        super().__init__()
        self.path = Path(path)
        self._local = threading.local()
        self._migrate_lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._migrated = False
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()

    def describe(self) -> str:
        return f"SQLite file {self.path}"

    # -- connections --------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection per thread; check_same_thread=False only so that close() may close them all.
            # Set up one at a time: switching a new file to WAL needs an exclusive lock, and SQLite
            # refuses at once (no busy wait) when two connections both hold a shared lock and want it.
            with self._setup_lock:
                conn = sqlite3.connect(str(self.path), timeout=10, isolation_level=None, check_same_thread=False)
                for pragma in DURABILITY_PRAGMAS:
                    _pragma_when_free(conn, pragma)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        if not self._migrated:
            self._migrate(conn)
        return conn

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    @contextmanager
    def _pragmas(self, conn: sqlite3.Connection, timeout: float | None, durable: bool) -> Iterator[None]:
        """A hook call's bound on waiting for a lock (``timeout``; None: the connection's own, 10 s),
        and a commit that is visible at once without waiting for the disk (``durable=False``:
        synchronous=NORMAL, which in WAL mode never corrupts the file, though a power loss may
        lose the last such commits; True: synchronous=FULL). Each use sets what it needs on this
        thread's connection when it differs from what the connection has now, so a run of snooze
        lookups costs one statement each, not three more."""
        wanted = (max(1, int(timeout * 1000)) if timeout is not None else _DEFAULT_BUSY_MS, durable)
        current: tuple[int, bool] | None = getattr(self._local, "pragmas", (_DEFAULT_BUSY_MS, True))
        if wanted != current:
            try:
                if current is None or wanted[0] != current[0]:
                    conn.execute(f"PRAGMA busy_timeout={wanted[0]}")
                if current is None or wanted[1] != current[1]:
                    conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            except sqlite3.OperationalError as exc:
                self._local.pragmas = None  # not known: set again on next use
                raise self._unavailable(exc) from None
            self._local.pragmas = wanted
        yield

    @contextmanager
    def _transaction(self, timeout: float | None = None, durable: bool = True) -> Iterator[Cursor]:
        try:
            conn = self._conn()
        except sqlite3.OperationalError as exc:  # locked past busy_timeout, disk I/O, unreadable file
            raise self._unavailable(exc) from None
        with self._pragmas(conn, timeout, durable):
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from None
            try:
                yield conn.cursor()
                conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise self._unavailable(exc) from None
                raise

    @contextmanager
    def _reading(self, *, snapshot: bool = True) -> Iterator[Cursor]:
        # A deferred transaction: one consistent snapshot, and in WAL mode it never waits for the
        # writer (BEGIN IMMEDIATE would queue behind the served-card writer's fsync). A single
        # statement is its own snapshot (autocommit), so it needs no BEGIN at all.
        try:
            conn = self._conn()
            if snapshot:
                conn.execute("BEGIN")
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from None
        try:
            yield conn.cursor()
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from None
        finally:
            if snapshot:
                with suppress(sqlite3.Error):
                    conn.execute("COMMIT")

    def _select(self, sql: str, params: tuple[Any, ...], timeout: float | None = None) -> list[Any]:
        # On the hook calls' path (snoozes): straight on this thread's connection, in autocommit
        # (WAL: a reader never waits for the writer), any lock wait bounded by ``timeout``.
        try:
            conn = self._conn()
            with self._pragmas(conn, timeout, True):
                return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> ServiceUnavailable:
        event(log, logging.ERROR, "feedback store unavailable", store=self.describe(), error=str(exc)[:200])
        return ServiceUnavailable(UNAVAILABLE, detail=f"{self.describe()}: {str(exc)[:200]}")

    def _timestamp(self, value: datetime) -> Any:
        return sqlite_timestamp(value)

    def _outcome_timestamp(self, value: datetime) -> Any:
        return value.isoformat()  # as the EHR sent it (its offset kept)

    # -- schema ----------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply what this file lacks (also done on first use); the versions applied by this call."""
        if self._migrated:
            return []
        self._conn()  # the first connection migrates
        return list(self._applied_now)

    _applied_now: tuple[int, ...] = ()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self._migrate_lock:
            if self._migrated:
                return
            conn.execute("BEGIN IMMEDIATE")  # one process at a time, also across processes
            try:
                done = apply_pending(conn, SQLITE, sqlite_timestamp(utcnow()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if done:
                log.info("schema migrated", extra={"store": self.describe(), "applied": done})
            self._applied_now = tuple(done)
            self._migrated = True

    def durability(self) -> dict[str, str | int]:
        """The journal mode and synchronous level a durable write runs with (0 OFF, 1 NORMAL,
        2 FULL, 3 EXTRA)."""
        conn = self._conn()
        with self._pragmas(conn, None, True):
            journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        return {"journal_mode": str(journal_mode), "synchronous": int(synchronous)}
