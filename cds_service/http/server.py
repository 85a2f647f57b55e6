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


def make_server(app: Flask, settings: Settings) -> Any:
    """A waitress server for ``app`` (not yet running: call ``.run()``), bound as configured."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "threads": settings.threads,
        "ident": "calciphylaxis-cds",
        "clear_untrusted_proxy_headers": True,
        "expose_tracebacks": False,
        **waitress_limits(settings),
    }
    server = _server.create_server(app, **options)
    channel = _channel_class(settings.max_body_bytes)
    listeners = server.map.values() if isinstance(server, _server.MultiSocketServer) else [server]
    for listener in listeners:
        if isinstance(listener, _server.BaseWSGIServer):
            listener.channel_class = channel
    return server


def serve(app: Flask, settings: Settings) -> None:
    """Serve until interrupted."""
    make_server(app, settings).run()
