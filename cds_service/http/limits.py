"""Request limits enforced in front of the Flask app, as OperationOutcomes.

A small WSGI middleware, so that the limits hold under any WSGI server, including the ones that
pass a malformed or missing ``Content-Length`` straight through:

* header block larger than ``MAX_HEADER_BYTES`` -> 431;
* ``Content-Length`` that is not a non-negative decimal integer -> 400;
* ``Content-Length`` larger than the body limit -> 413, before a byte of the body is read;
* a body without ``Content-Length`` (``Transfer-Encoding: chunked``) is read up to the limit and
  refused with 413 past it, so a chunked body cannot slip past a limit that only checks the header.

What waitress itself refuses before the app sees the request is answered as an OperationOutcome
too (``cds_service.http.server``); waitress's own limits sit just above these.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson

from cds_service.http.errors import operation_outcome

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("cds_service.request")

# The largest header block accepted (request headers, names and values): waitress's own default,
# which this service has always had.
MAX_HEADER_BYTES = 256 * 1024

_REASONS = {
    400: "Bad Request",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
}


def header_bytes(environ: WSGIEnvironment) -> int:
    """About how many bytes the request's header lines took ("Name: value\\r\\n" each)."""
    total = 0
    for key, value in environ.items():
        if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name_length = len(key) - 5 if key.startswith("HTTP_") else len(key)
            total += name_length + len(str(value)) + 4
    return total


def body_too_large_message(limit: int) -> str:
    return f"The request body is larger than this service accepts ({limit} bytes)."


def headers_too_large_message(limit: int) -> str:
    return f"The request headers are larger than this service accepts ({limit} bytes)."


class RequestLimits:
    """WSGI middleware: header size, ``Content-Length`` and body size, answered as OperationOutcome."""

    def __init__(self, app: WSGIApplication, *, max_body_bytes: int, max_header_bytes: int = MAX_HEADER_BYTES):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if header_bytes(environ) > self.max_header_bytes:
            return self._refuse(environ, start_response, 431, headers_too_large_message(self.max_header_bytes))
        length = str(environ.get("CONTENT_LENGTH") or "").strip()
        if length:
            if not (length.isascii() and length.isdigit()):
                return self._refuse(
                    environ, start_response, 400, "The Content-Length header is not a non-negative integer."
                )
            if int(length) > self.max_body_bytes:
                return self._refuse(environ, start_response, 413, body_too_large_message(self.max_body_bytes))
        elif self._body_without_length(environ):
            body = environ["wsgi.input"].read(self.max_body_bytes + 1)
            if len(body) > self.max_body_bytes:
                return self._refuse(environ, start_response, 413, body_too_large_message(self.max_body_bytes))
            # From here on, an ordinary request with a known length.
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ.pop("wsgi.input_terminated", None)
        return self.app(environ, start_response)

    @staticmethod
    def _body_without_length(environ: WSGIEnvironment) -> bool:
        chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
        return chunked or bool(environ.get("wsgi.input_terminated"))

    @staticmethod
    def _refuse(environ: WSGIEnvironment, start_response: StartResponse, status: int, message: str) -> list[bytes]:
        body = orjson.dumps(operation_outcome(status, message))
        start_response(
            f"{status} {_REASONS[status]}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        log.info(
            "request",
            extra={
                "method": str(environ.get("REQUEST_METHOD", ""))[:16],
                "path": str(environ.get("PATH_INFO", ""))[:200],
                "status": status,
            },
        )
        return [body]
