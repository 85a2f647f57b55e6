"""``serve --workers N``: N worker processes on one port (pre-fork, as gunicorn does it, with
waitress and this service's hardening in every worker).

Why processes: one Python process is bound by the GIL to about one core. The parent process binds
the port, applies the schema migrations and loads the card content once, then forks N workers;
each worker builds its own app (its own database pool, Redis client, FHIR client and threads) and
serves with waitress. On Linux each worker has a listening socket of its own on the same port
(``SO_REUSEPORT``), and the kernel spreads new connections evenly over them; with one shared
socket, whichever worker woke first took most of a burst of new connections (measured: 16
keep-alive connections, 2 workers, no more throughput than 1). The parent keeps every socket
open, so a worker's socket outlives the worker: connections waiting on it are served by its
replacement. Without ``SO_REUSEPORT`` the workers share one socket. The parent holds no thread
while it forks; it only watches its workers: one that dies is started again (one that keeps
failing at start-up stops the server), and SIGTERM or SIGINT is passed on to every worker, which
shuts down cleanly (``server.serve``).

Correct only with state shared outside the processes: the JWT replay store in Redis
(``CDS_REDIS_URL``; ``cli`` refuses several workers with the in-memory one while authentication
is on) and the feedback store in PostgreSQL or the one SQLite file. The JWKS cache stays per
process (each worker fetches an issuer's keys itself; they are refetchable). Metrics are summed
over the workers through ``PROMETHEUS_MULTIPROC_DIR`` (``cds_service.metrics``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

from flask import Flask

from cds_service.config import Settings

# As cds_service.metrics names it; not imported from there: nothing may import prometheus_client
# before prepare_metrics_dir() has set it.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

log = logging.getLogger("cds_service")

_adjustments = import_module("waitress.adjustments")

# A worker that exits within this many seconds of its start counts as failing at start-up ...
_EARLY_EXIT_SECONDS = 10.0
# ... and this many such exits in a row stop the server.
_MAX_EARLY_EXITS = 5
_BACKLOG = 1024
# Exit status of a worker that could not start (its app could not be built).
EXIT_WORKER_START_FAILED = 3


def prepare_metrics_dir() -> Path | None:
    """Before anything imports prometheus_client: a fresh directory for the workers' metric files
    (``PROMETHEUS_MULTIPROC_DIR``). Returns the directory when this process created it (and should
    remove it at exit); an operator's own directory is emptied of old files instead."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink()
        return None
    created = Path(tempfile.mkdtemp(prefix="calciphylaxis-cds-metrics-"))
    os.environ[MULTIPROC_ENV] = str(created)
    return created


def _listening(family: int, kind: int, proto: int, address: Any, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_sockets(host: str, port: int, workers: int) -> list[list[socket.socket]]:
    """For each worker, its listening sockets for ``host``:``port`` (one per address waitress
    resolves ``host`` to): a socket of its own per worker where ``SO_REUSEPORT`` exists, else the
    same sockets for all. Raises ``OSError`` when the port is taken (checked without
    ``SO_REUSEPORT`` first, so that another server's sockets are never joined)."""
    reuse_port = workers > 1 and hasattr(socket, "SO_REUSEPORT")
    per_worker: list[list[socket.socket]] = [[] for _ in range(workers)]
    try:
        for family, kind, proto, address in _adjustments.Adjustments(host=host, port=port).listen:
            # Is the port free? A plain bind fails if anything listens there.
            _listening(family, kind, proto, address, reuse_port=False).close()
            first = _listening(family, kind, proto, address, reuse_port=reuse_port)
            per_worker[0].append(first)
            actual = first.getsockname()  # the port chosen, if 0 was asked for
            for index in range(1, workers):
                sock = _listening(family, kind, proto, actual, reuse_port=True) if reuse_port else first
                per_worker[index].append(sock)
    except BaseException:
        for sock in {s for sockets in per_worker for s in sockets}:
            sock.close()
        raise
    return per_worker


class Master:
    def __init__(
        self,
        settings: Settings,
        sockets: list[list[socket.socket]],
        build_app: Callable[[], Flask],
        *,
        metrics_dir: Path | None = None,
    ):
        self.settings = settings
        self.sockets = sockets  # per worker slot
        self.build_app = build_app
        self.metrics_dir = metrics_dir
        self.workers: dict[int, tuple[int, float]] = {}  # pid -> (slot, start time)
        self.stopping: str | None = None
        self.early_exits = 0
        self.pid = os.getpid()

    # -- the parent ------------------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        status = 0
        try:
            for slot in range(self.settings.workers):
                self._spawn(slot)
            while not self.stopping:
                failure = self._reap(respawn=True)
                if failure:
                    status = 1
                    print(f"calciphylaxis-cds: {failure}", file=sys.stderr)
                    break
                time.sleep(0.2)
            log.info("stopping worker processes", extra={"signal": self.stopping, "workers": len(self.workers)})
        finally:
            self._close_sockets()  # no new connections from now on; the workers drain theirs
            self._stop_workers()
            if self.metrics_dir is not None:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return status

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = signal.Signals(signum).name

    def _close_sockets(self) -> None:
        for sock in {s for sockets in self.sockets for s in sockets}:
            sock.close()

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            os._exit(self._worker(slot))
        self.workers[pid] = (slot, time.monotonic())
        log.info("worker process started", extra={"worker_pid": pid, "slot": slot})

    def _reap(self, *, respawn: bool) -> str | None:
        """Collect exited workers (and start them again); the reason to give up, if any."""
        from cds_service import metrics

        while self.workers:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            found = self.workers.pop(pid, None)
            if found is None:
                continue
            slot, started = found
            metrics.mark_process_dead(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if self.stopping or not respawn:
                continue
            early = time.monotonic() - started < _EARLY_EXIT_SECONDS
            self.early_exits = self.early_exits + 1 if early else 0
            log.error("worker process exited; starting another", extra={"worker_pid": pid, "exit_code": code})
            if code == EXIT_WORKER_START_FAILED and self.early_exits >= _MAX_EARLY_EXITS:
                return "worker processes keep failing at start-up; stopping (their log lines above say why)"
            if self.early_exits:
                time.sleep(min(5.0, 0.5 * self.early_exits))
            self._spawn(slot)
        return None

    def _stop_workers(self) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        # Each worker drains for up to shutdown_timeout_seconds, then writes out its served-card rows.
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds + 15
        while self.workers and time.monotonic() < deadline:
            self._reap(respawn=False)
            time.sleep(0.05)
        for pid in list(self.workers):
            log.error("worker process did not stop in time; killing it", extra={"worker_pid": pid})
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.workers.pop(pid, None)

    # -- a worker ------------------------------------------------------------------------------------
    def _worker(self, slot: int) -> int:
        from cds_service.http import server
        from cds_service.http.logs import configure_logging, stop_logging

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        mine = self.sockets[slot]
        for sock in {s for sockets in self.sockets for s in sockets} - set(mine):
            sock.close()  # only this process's copies: the parent keeps them for their workers
        try:
            configure_logging(self.settings.log_level)
            _watch_parent(self.pid)
            try:
                app = self.build_app()
            except Exception as exc:
                log.error(
                    "worker process could not start", extra={"error": type(exc).__name__, "reason": str(exc)[:300]}
                )
                return EXIT_WORKER_START_FAILED
            server.serve(app, self.settings, sockets=mine)
            return 0
        except BaseException as exc:  # never let a worker fall back into the parent's code
            log.error("worker process failed", extra={"error": type(exc).__name__})
            return 1
        finally:
            stop_logging()


def _watch_parent(parent: int) -> None:
    """Stop this worker cleanly if the parent process dies (e.g. killed with SIGKILL)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve_workers(
    settings: Settings, build_app: Callable[[], Flask], sockets: list[list[socket.socket]], metrics_dir: Path | None
) -> int:
    return Master(settings, sockets, build_app, metrics_dir=metrics_dir).run()
