"""The production server: waitress, with every answer it gives on its own an OperationOutcome.

Waitress refuses some requests before the app sees them: a request line or header it cannot
parse, an invalid ``Content-Length`` (negative, not a number), a header block or body over its
limits, a ``Transfer-Encoding`` it does not implement. Out of the box it answers those in
text/plain. Here its limits sit just above the app's (so the app, with its request log and CORS
headers, answers every ordinary violation) and its error answers are OperationOutcomes with
the same status, never echoing what was sent.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from importlib import import_module
from typing import Any

import orjson
from flask import Flask

from cds_service.config import Settings
from cds_service.http.errors import operation_outcome
from cds_service.http.limits import MAX_HEADER_BYTES, body_too_large_message, headers_too_large_message

# waitress ships no type hints and the mypy configuration (pyproject.toml) excuses only its top
# level module, so its submodules are imported by name: their members are typed Any either way.
_channel = import_module("waitress.channel")
_server = import_module("waitress.server")
_task = import_module("waitress.task")
_wasyncore = import_module("waitress.wasyncore")

log = logging.getLogger("cds_service.request")

# Waitress's limits are this much above the app's: a violation the app can see, it answers.
_WAITRESS_SLACK_BYTES = 64 * 1024

# Waitress's fixed parse-error texts that quote nothing from the request (others, such as
# 'Malformed header line "<the line>"', do, and are replaced by a generic sentence).
_SAFE_PARSE_ERRORS = frozenset(
    {
        "Bad URI",
        "Bare CR or LF found in HTTP message",
        "Chunk not properly terminated",
        "Content-Length is invalid",
        "HTTP message header invalid",
        "Invalid chunk extension",
        "Invalid chunk size",
        "Invalid header",
        "Start line is invalid",
    }
)


def waitress_error_message(code: int, detail: Any, *, max_body_bytes: int) -> str:
    """The diagnostics for an error waitress raised itself (``detail`` is its own text)."""
    if code == 400:
        reason = str(detail) if detail in _SAFE_PARSE_ERRORS else "the request line or a header could not be parsed"
        return f"Malformed HTTP request: {reason}."
    if code == 413:
        return body_too_large_message(max_body_bytes)
    if code == 431:
        return headers_too_large_message(MAX_HEADER_BYTES)
    if code == 501:
        return "This Transfer-Encoding is not supported; send the body with Content-Length or chunked."
    return "Internal error in the CDS service; the details are in its log."


def _execute_error_task(task: Any) -> None:
    """``ErrorTask.execute``, answering an OperationOutcome instead of text/plain, and writing
    the same request log line as the app (method, path, status; nothing else of the request)."""
    request = task.request
    error = request.error
    code = int(error.code)
    message = waitress_error_message(code, error.body, max_body_bytes=task.max_body_bytes)
    body = orjson.dumps(operation_outcome(code, message))
    task.status = f"{code} {error.reason}"
    task.response_headers.append(("Content-Type", "application/json"))
    task.set_close_on_finish()
    task.content_length = len(body)
    task.write(body)
    log.info(
        "request",
        extra={
            "method": str(getattr(request, "command", None) or "")[:16],
            "path": str(getattr(request, "path", None) or "")[:200],
            "status": code,
            "refused_by": "waitress",
        },
    )


def _channel_class(max_body_bytes: int) -> type:
    # waitress has no type hints (mypy sees its classes as Any, which strict mode does not let a
    # class statement subclass), hence type() rather than class statements.
    error_task = type(
        "OperationOutcomeErrorTask",
        (_task.ErrorTask,),
        {"execute": _execute_error_task, "max_body_bytes": max_body_bytes},
    )
    return type("OperationOutcomeChannel", (_channel.HTTPChannel,), {"error_task_class": error_task})


def waitress_limits(settings: Settings) -> dict[str, int]:
    """Waitress's own limits: just above the app's, so the app answers what it can see."""
    return {
        "max_request_body_size": settings.max_body_bytes + _WAITRESS_SLACK_BYTES,
        "max_request_header_size": MAX_HEADER_BYTES + _WAITRESS_SLACK_BYTES,
    }


def make_server(app: Flask, settings: Settings, *, sockets: list[socket.socket] | None = None) -> Any:
    """A waitress server for ``app`` (not yet running), bound as configured, or on ``sockets``
    already bound and listening (the worker processes of ``serve --workers N`` share them)."""
    options: dict[str, Any] = {
        "threads": settings.threads,
        "ident": "calciphylaxis-cds",
        "clear_untrusted_proxy_headers": True,
        "expose_tracebacks": False,
        **waitress_limits(settings),
    }
    if sockets:
        options["sockets"] = sockets
    else:
        options.update(host=settings.host, port=settings.port)
    server = _server.create_server(app, **options)
    channel = _channel_class(settings.max_body_bytes)
    for listener in _listeners(server):
        listener.channel_class = channel
    return server


def _socket_map(server: Any) -> dict[int, Any]:
    found: dict[int, Any] = server.map if isinstance(server, _server.MultiSocketServer) else server._map
    return found


def _listeners(server: Any) -> list[Any]:
    return [d for d in list(_socket_map(server).values()) if isinstance(d, _server.BaseWSGIServer)]


class StopSignal:
    """SIGTERM and SIGINT set a flag that the serving loop checks (a clean shutdown follows)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()


# How often the serving loop looks at the stop flag (the select timeout), seconds.
_POLL_SECONDS = 0.2


def serve(app: Flask, settings: Settings, *, sockets: list[socket.socket] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly: stop accepting connections, let
    the calls in progress finish (up to ``CDS_SHUTDOWN_TIMEOUT_SECONDS``), then write out the
    queued served-card rows and close the stores (``close_app``)."""
    from cds_service.http.app import close_app

    stop = StopSignal()
    stop.install()
    server = make_server(app, settings, sockets=sockets)
    app.extensions["cds"].writer.start()  # the served-card writer also runs the retention purge
    try:
        run_until(server, stop)
        logging.getLogger("cds_service").info("shutting down", extra={"signal": stop.signal})
    finally:
        drain(server, app, settings.shutdown_timeout_seconds)
        close_app(app)


def run_until(server: Any, stop: StopSignal) -> None:
    socket_map = _socket_map(server)
    use_poll = server.adj.asyncore_use_poll
    while not stop.stopped:
        _wasyncore.loop(timeout=_POLL_SECONDS, map=socket_map, use_poll=use_poll, count=1)


def _busy(channel: Any) -> bool:
    """A connection with a request being read, queued, run, or an answer not yet sent."""
    return bool(
        getattr(channel, "requests", None)
        or getattr(channel, "request", None) is not None
        or getattr(channel, "total_outbufs_len", 0)
    )


def drain(server: Any, app: Flask, timeout: float) -> None:
    """Stop accepting (``/ready`` answers 503 from now on), close idle connections, and keep
    serving the connections that have a call in progress until they are answered or ``timeout``
    passes; then stop the request threads."""
    app.extensions["cds"].lifecycle.draining.set()
    socket_map = _socket_map(server)
    for listener in _listeners(server):
        listener.accepting = False
        listener.del_channel(socket_map)
        listener.socket.close()  # in a worker process: only this process's copy of the shared socket
    deadline = time.monotonic() + timeout
    while True:
        channels = [d for d in list(socket_map.values()) if isinstance(d, _channel.HTTPChannel)]
        busy = [c for c in channels if _busy(c)]
        for idle in (c for c in channels if not _busy(c)):
            idle.handle_close()
        if not busy or time.monotonic() >= deadline:
            if busy:
                log.warning("calls still in progress at shutdown were cut off", extra={"connections": len(busy)})
            break
        _wasyncore.loop(timeout=0.05, map=socket_map, use_poll=server.adj.asyncore_use_poll, count=1)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
