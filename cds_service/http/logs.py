"""Structured logging: one JSON object per line on stderr, written off the request threads; and
what makes a line traceable (request id, W3C trace context, the client's address).

* Format: python-json-logger's orjson formatter: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
  ``message``, ``pid`` (which worker process), then the record's fields.
* Off the hot path: the root logger's only handler is a ``QueueHandler``; one listener thread
  formats the records and writes them. A request thread only puts a record on a queue (no lock
  on stderr, no formatting). When the queue is full (stderr not being read), records are dropped
  and counted (``cds_log_lines_dropped_total``) rather than blocking calls.
* One line per call: a hook, feedback or discovery call logs exactly one ``request`` line (method,
  path, status, duration, service, hook, hookInstance, card count, stage timings, issuer,
  ``request_id``, ``trace_id``, ``span_id``, ``client``), to which the layers below add their
  events (``cds_service.calllog``). Never tokens, JWTs or resource contents.
* Whoever hosts the app: ``create_app`` calls ``ensure_logging``, which sets this up unless the
  process already logs this way or its host configured logging of its own (a test's capture).
* Traceable: every request gets a request id (the caller's ``X-Request-ID`` when it is a short
  token of safe characters, else a new uuid4) and a trace context (the caller's W3C
  ``traceparent`` when valid, else a new trace); both are returned in the response and put on
  every line logged while the request runs. The client's address is the TCP peer, or what a
  trusted proxy (``CDS_TRUSTED_PROXIES``) says in ``X-Forwarded-For``; nobody else's header counts.
"""

from __future__ import annotations

import atexit
import copy
import ipaddress
import logging
import logging.handlers
import os
import queue
import random
import re
import sys
import uuid
from collections.abc import Iterable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TextIO

from pythonjsonlogger.orjson import OrjsonFormatter

from cds_service import metrics

LOG_QUEUE_SIZE = 10_000

_listener: logging.handlers.QueueListener | None = None
_listener_pid = 0  # the process whose thread runs _listener (a forked child inherits only the object)


class JsonFormatter(OrjsonFormatter):
    """``time``, ``level``, ``logger``, ``message`` and every extra field of the record."""

    def __init__(self) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}{process}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


# --- the request's fields on every line logged while it runs ------------------------------------

_request_fields: ContextVar[dict[str, str] | None] = ContextVar("cds_request_fields", default=None)


class _RequestFields(logging.Filter):
    """Adds the current request's id and trace id to a record that does not carry them (a line
    logged while a request runs: a refusal of the request limits, a FHIR server's circuit
    opening ...). Runs on the thread that logs, before the record is queued."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _request_fields.get()
        if fields:
            for name, value in fields.items():
                if name not in record.__dict__:
                    record.__dict__[name] = value
        return True


_REQUEST_FIELDS = _RequestFields()


def bind_request(fields: dict[str, str]) -> Token[dict[str, str] | None]:
    return _request_fields.set(fields)


def unbind_request(token: Token[dict[str, str] | None]) -> None:
    _request_fields.reset(token)


class JsonStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """JSON lines on a stream (stderr). Also named by the gunicorn configuration
    (``deploy/gunicorn.conf.py``) for gunicorn's own lines, so that every line is JSON."""

    cds_json = True  # ensure_logging recognises this service's handlers by it

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self.setFormatter(JsonFormatter())
        self.addFilter(_REQUEST_FIELDS)


class _QueueHandler(logging.handlers.QueueHandler):
    """Hands records to the listener thread as they are (the listener formats them), and never
    blocks: a full queue drops the record and counts it."""

    cds_json = True

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Merge the arguments now (they may change after this call returns); keep everything else,
        # exc_info included, for the formatter on the listener thread (same process: no pickling).
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            metrics.LOG_LINES_DROPPED.inc()


def configure_logging(level: str = "INFO", *, queued: bool = True, stream: TextIO | None = None) -> None:
    """JSON lines on ``stream`` (stderr), through a queue and a listener thread unless ``queued``
    is False (the parent process of the workers logs directly: it must hold no thread when it
    forks)."""
    stop_logging()
    handler = JsonStreamHandler(stream)
    root = logging.getLogger()
    root.setLevel(level)
    if not queued:
        root.handlers[:] = [handler]
        return
    records: queue.Queue[Any] = queue.Queue(LOG_QUEUE_SIZE)
    global _listener, _listener_pid
    _listener = logging.handlers.QueueListener(records, handler, respect_handler_level=False)
    _listener.start()
    _listener_pid = os.getpid()
    queue_handler = _QueueHandler(records)
    queue_handler.addFilter(_REQUEST_FIELDS)
    root.handlers[:] = [queue_handler]
    atexit.register(stop_logging)


def ensure_logging(level: str = "INFO") -> bool:
    """What ``create_app`` calls, whoever hosts the app: JSON lines through the queue, unless this
    process already logs that way, or something else configured the root logger (a test's log
    capture, an application embedding this one), which is then left alone. A process that only
    inherited this service's direct handler (a gunicorn worker forked from its master, which logs
    JSON directly) gets its own queue and listener. True when it configured logging."""
    if _listener is not None and _listener_pid == os.getpid():
        return False
    handlers = logging.getLogger().handlers
    if handlers and not all(getattr(handler, "cds_json", False) for handler in handlers):
        return False
    configure_logging(level)
    return True


def stop_logging() -> None:
    """Write out every queued record and stop the listener thread (at shutdown; idempotent)."""
    global _listener
    listener, _listener = _listener, None
    if listener is not None:
        listener.stop()
        root = logging.getLogger()
        root.handlers[:] = list(listener.handlers)  # anything logged after this goes straight out


# --- request id and W3C trace context ------------------------------------------------------------

# An X-Request-ID worth keeping: 1-128 characters that are safe in a log line and a header (a
# uuid, a hex or base64 token, "req-123:4"). Anything else is replaced by a new uuid4.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=@-]{1,128}")
# W3C Trace Context (https://www.w3.org/TR/trace-context/#traceparent-header): version, trace-id,
# parent-id, trace-flags, lowercase hex; a later version may append fields after a "-".
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.S)
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
_SAMPLED = 0x01


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid incoming ``traceparent``: the caller's trace and span, and its sampled flag."""

    trace_id: str  # 32 lowercase hex digits, not all zero
    span_id: str  # 16 lowercase hex digits, not all zero
    sampled: bool


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The caller's trace context, or None when ``value`` is absent or not valid by the W3C
    Trace Context rules (then a new trace starts): version ``ff`` is invalid, version ``00`` has
    exactly four fields, a later version may carry more after a ``-``; trace-id and parent-id
    must not be all zeros; lowercase hex only; several headers (joined by commas) are invalid."""
    if not value:
        return None
    value = value.strip(" \t")
    if len(value) > 512:  # longer than any version would make it
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    return TraceParent(trace_id, span_id, bool(int(flags, 16) & _SAMPLED))


def format_traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


@dataclass(slots=True)
class RequestIdentity:
    """Who a request is in the logs and traces: its request id, its trace, this service's span in
    it (``span_id``; the OpenTelemetry span's when tracing is on), and the client's address."""

    request_id: str
    trace_id: str
    span_id: str
    sampled: bool
    parent: TraceParent | None  # the caller's, when it sent a valid traceparent
    client: str
    request_id_refused: bool = False  # an X-Request-ID was sent but was not usable
    traceparent_refused: bool = False  # a traceparent was sent but was not valid

    @property
    def traceparent(self) -> str:
        return format_traceparent(self.trace_id, self.span_id, self.sampled)

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"request_id": self.request_id, "trace_id": self.trace_id, "span_id": self.span_id}
        if self.client:
            fields["client"] = self.client
        if self.request_id_refused:
            fields["request_id_refused"] = True
        if self.traceparent_refused:
            fields["traceparent_refused"] = True
        return fields


def identify(environ: dict[str, Any], trusted_proxies: TrustedProxies) -> RequestIdentity:
    """The request's id, trace context and client address, from its WSGI environ."""
    given_id = environ.get("HTTP_X_REQUEST_ID")
    if given_id and _REQUEST_ID.fullmatch(given_id):
        request_id, id_refused = given_id, False
    else:
        request_id, id_refused = str(uuid.uuid4()), bool(given_id)
    given_parent = environ.get("HTTP_TRACEPARENT")
    parent = parse_traceparent(given_parent)
    return RequestIdentity(
        request_id=request_id,
        trace_id=parent.trace_id if parent else new_trace_id(),
        span_id=new_span_id(),
        # Not recording a span, this service passes the caller's sampled flag on (W3C).
        sampled=parent.sampled if parent else False,
        parent=parent,
        client=trusted_proxies.client(environ.get("REMOTE_ADDR") or "", environ.get("HTTP_X_FORWARDED_FOR")),
        request_id_refused=id_refused,
        traceparent_refused=bool(given_parent) and parent is None,
    )


# --- the client's address, from trusted proxies only -----------------------------------------------

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=1024)
def _address(text: str) -> _Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The proxies (``CDS_TRUSTED_PROXIES``) whose ``X-Forwarded-For`` names the client. From a
    trusted peer the header is read from the right (the hop that peer added last), skipping
    addresses that are trusted proxies too; the first other address is the client. A malformed
    entry stops the walk at the last address it reached (nothing after garbage is believed). From
    any other peer the header is ignored: the peer is the client."""

    def __init__(self, networks: Iterable[str]):
        self.networks: tuple[_Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: _Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        if not self.networks or not forwarded_for:
            return peer
        current = _address(peer)
        if not self.trusts(current):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")[-32:]):
            address = _address(hop)
            if address is None:
                break
            client = str(address)
            if not self.trusts(address):
                break
        return client
