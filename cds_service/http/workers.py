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

Also here, for gunicorn, its side of ``deploy/gunicorn.conf.py``: the worker
class (gthread with OperationOutcome error pages, draining and a clean close) and its hooks (the
shared metric directory). Why ``serve --workers`` stays beside gunicorn: docs/operations.md,
"Which server, for what" (gunicorn's threaded worker has no deadline for request headers).
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


# --- gunicorn: the worker class and the configuration hooks (deploy/gunicorn.conf.py) ----------------

# gunicorn's refusals (gunicorn.http.errors, by class name) and the status it answers them with;
# any other parse error is a 400.
_GUNICORN_STATUS = {
    "LimitRequestLine": (414, "URI Too Long", "The request line is longer than this service accepts."),
    "LimitRequestHeaders": (
        431,
        "Request Header Fields Too Large",
        "The request headers are larger, or more numerous, than this service accepts.",
    ),
    "UnsupportedTransferCoding": (
        501,
        "Not Implemented",
        "This Transfer-Encoding is not supported; send the body with Content-Length or chunked.",
    ),
    "ExpectationFailed": (417, "Expectation Failed", "The Expect header is not supported."),
    "ForbiddenProxyRequest": (403, "Forbidden", "Proxy protocol requests are not accepted from this address."),
    "SSLError": (403, "Forbidden", "The TLS handshake failed."),
    "ConfigurationProblem": (
        500,
        "Internal Server Error",
        "Internal error in the CDS service; the details are in its log.",
    ),
}
_GUNICORN_CLIENT_ERRORS = frozenset(
    {
        "InvalidRequestLine",
        "InvalidRequestMethod",
        "InvalidHTTPVersion",
        "InvalidHeader",
        "InvalidHeaderName",
        "InvalidProxyLine",
        "InvalidSchemeHeaders",
        "ObsoleteFolding",
        "InvalidH2CPreface",
        "InvalidChunkSize",
        "ChunkMissingTerminator",
        "InvalidChunkExtension",
        *_GUNICORN_STATUS,
    }
)
_FRAMING_HEADERS = frozenset({"CONTENT-LENGTH", "TRANSFER-ENCODING"})


def gunicorn_error(exc: BaseException) -> tuple[int, str, str]:
    """Status, reason and diagnostics for an error gunicorn met before the app saw the request,
    never quoting what was sent (gunicorn's own page quotes the request line or header)."""
    names = [kind.__name__ for kind in type(exc).__mro__]
    for name in names:
        if name in _GUNICORN_STATUS:
            return _GUNICORN_STATUS[name]
    if any(name in _GUNICORN_CLIENT_ERRORS for name in names):
        if "InvalidHeader" in names and str(getattr(exc, "hdr", "")).upper() in _FRAMING_HEADERS:
            return (
                400,
                "Bad Request",
                "Malformed HTTP request: the Content-Length or Transfer-Encoding header is not acceptable "
                "(both sent, sent twice, not a number, or chunked in HTTP/1.0).",
            )
        return 400, "Bad Request", "Malformed HTTP request: the request line or a header could not be parsed."
    return 500, "Internal Server Error", "Internal error in the CDS service; the details are in its log."


_gunicorn_worker: type | None = None


def gunicorn_worker_class() -> type:
    """gunicorn's threaded worker (gthread) for this app: the errors gunicorn answers itself
    (unparsable request line or header, ambiguous framing, limits) are OperationOutcomes with
    the same status, never quoting the request, with the app's request log line; on SIGTERM
    ``/ready`` fails at once while calls in progress finish (``graceful_timeout``); at exit the
    queued served-card rows are written out and the stores closed (``close_app``)."""
    global _gunicorn_worker
    if _gunicorn_worker is not None:
        return _gunicorn_worker
    gthread = import_module("gunicorn.workers.gthread")

    def handle_error(worker: Any, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        import orjson

        from cds_service.http.errors import operation_outcome

        status, reason, message = gunicorn_error(exc)
        req = req if req is not None else getattr(exc, "req", None)
        body = orjson.dumps(operation_outcome(status, message))
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        with contextlib.suppress(OSError):
            client.sendall(head + body)
        fields: dict[str, Any] = {
            "method": str(getattr(req, "method", None) or "")[:16],
            "path": str(getattr(req, "path", None) or "")[:200],
            "status": status,
            "refused_by": "gunicorn",
        }
        if status == 500:
            fields["error"] = type(exc).__name__
        logging.getLogger("cds_service.request").log(
            logging.ERROR if status == 500 else logging.INFO, "request", extra=fields
        )

    def load_wsgi(worker: Any) -> None:
        gthread.ThreadWorker.load_wsgi(worker)
        deps = getattr(worker.wsgi, "extensions", {}).get("cds")
        if deps is not None:
            deps.writer.start()  # the served-card writer, which also runs the retention purge at start

    def handle_exit(worker: Any, sig: int, frame: Any) -> None:
        deps = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("cds")
        if deps is not None:
            deps.lifecycle.draining.set()  # /ready fails from now on
        gthread.ThreadWorker.handle_exit(worker, sig, frame)

    def run(worker: Any) -> None:
        try:
            gthread.ThreadWorker.run(worker)
        finally:
            app = getattr(worker, "wsgi", None)
            if app is not None and "cds" in getattr(app, "extensions", {}):
                from cds_service.http.app import close_app

                log.info("shutting down", extra={"server": "gunicorn"})
                close_app(app)

    _gunicorn_worker = type(
        "CdsThreadWorker",
        (gthread.ThreadWorker,),
        {
            "__module__": __name__,
            "handle_error": handle_error,
            "load_wsgi": load_wsgi,
            "handle_exit": handle_exit,
            "run": run,
        },
    )
    return _gunicorn_worker


_gunicorn_metrics_dir: Path | None = None


def gunicorn_on_starting(server: Any) -> None:
    """In gunicorn's master, before it binds or forks: the app's start-up refusals, from
    gunicorn's own bind and worker count, so that a refusal is one message and exit status 2
    (each worker would otherwise refuse on its own, ``create_app``, and gunicorn stop with 4)."""
    from pydantic import ValidationError

    from cds_service.http.app import Hosting, _bind_host, startup_refusal

    try:
        settings = Settings()
    except ValidationError:
        return  # the workers' create_app reports it (the configuration file already did)
    cfg = server.cfg
    binds = list(cfg.bind)
    hosting = Hosting(
        "gunicorn",
        int(cfg.workers),
        tuple(_bind_host(bind) for bind in binds),
        True,
        "gunicorn bind " + ", ".join(binds),
        bool(cfg.preload_app),
    )
    refusal = startup_refusal(settings, settings.issuers_file is not None, hosting)
    if refusal is not None:
        print(f"calciphylaxis-cds: cannot start: {refusal}", file=sys.stderr)
        raise SystemExit(2)


_gunicorn_metrics_prepared = False


def gunicorn_metrics_dir() -> None:
    """In gunicorn's master, as its configuration file is read (before gunicorn applies its log
    configuration, which imports this service's modules, and before any worker): a fresh
    directory for the workers' metric files (``PROMETHEUS_MULTIPROC_DIR``), as ``serve --workers``
    prepares it. Once per master: reading the file again (SIGHUP) keeps the live workers' files."""
    global _gunicorn_metrics_dir, _gunicorn_metrics_prepared
    if _gunicorn_metrics_prepared:
        return
    if "prometheus_client" in sys.modules and not os.environ.get(MULTIPROC_ENV):
        log.warning("prometheus_client was imported before the gunicorn configuration: metrics stay per worker")
        return
    _gunicorn_metrics_prepared = True
    _gunicorn_metrics_dir = prepare_metrics_dir()


def gunicorn_child_exit(server: Any, worker: Any) -> None:
    """A worker exited: forget its live gauges (its counters stay in the sums)."""
    multiprocess = import_module("prometheus_client.multiprocess")
    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(worker.pid)


def gunicorn_post_worker_init(worker: Any) -> None:
    """A worker has loaded the app: its start-up heap is settled before its first call, as under
    ``serve`` (``server.settle_heap``)."""
    from cds_service.http.server import settle_heap

    settle_heap()


def gunicorn_on_exit(server: Any) -> None:
    if _gunicorn_metrics_dir is not None:
        shutil.rmtree(_gunicorn_metrics_dir, ignore_errors=True)


def gunicorn_nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    """TTIN/TTOU change the number of workers while gunicorn runs: never to several workers with
    the in-memory JWT replay cache (start-up refuses that too)."""
    if old_value is None or new_value <= 1:
        return
    settings = Settings()
    if settings.issuers_file is not None and not settings.redis_url:
        log.error(
            "refusing to run several worker processes with the in-memory JWT replay cache: set CDS_REDIS_URL",
            extra={"workers_asked": new_value, "workers": old_value},
        )
        server._num_workers = old_value
