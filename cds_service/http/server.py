"""The production server: waitress, with every answer it gives on its own an OperationOutcome.

Waitress refuses some requests before the app sees them: a request line or header it cannot
parse, an invalid ``Content-Length`` (negative, not a number), a header block or body over its
limits, a ``Transfer-Encoding`` it does not implement. Out of the box it answers those in
text/plain. Here its limits sit just above the app's (so the app, with its request log and CORS
headers, answers every ordinary violation) and its error answers are OperationOutcomes with
the same status, never echoing what was sent.

Two more protections (docs/security.md, "Slow clients and request framing"):

- slow clients: a connection must deliver a complete request line and headers within
  ``CDS_HEADER_TIMEOUT_SECONDS`` of being opened (or of the first byte of its next request),
  however slowly it trickles bytes (waitress's own idle timer restarts on every byte); and at
  ``CDS_CONNECTION_LIMIT`` the connection waiting longest for its headers (then the longest idle
  one) is closed to let a new one in, where waitress would stop accepting;
- request framing: a request with both ``Content-Length`` and ``Transfer-Encoding`` (or a
  ``Transfer-Encoding`` in HTTP/1.0) is refused with 400 and its connection closed; nothing sent
  after it on that connection is read as a request (RFC 9112 section 6.1).

Both hook into waitress internals (3.0: ``HTTPChannel.received``/``service``, ``HTTPRequestParser
.parse_header``/``received``, ``BaseWSGIServer.readable``/``maintenance``); tests/test_slow_clients.py
and tests/test_hardening_waitress.py prove them against the real server.
"""

from __future__ import annotations

import gc
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
_parser = import_module("waitress.parser")
_server = import_module("waitress.server")
_task = import_module("waitress.task")
_wasyncore = import_module("waitress.wasyncore")

log = logging.getLogger("cds_service.request")

# Waitress's limits are this much above the app's: a violation the app can see, it answers.
_WAITRESS_SLACK_BYTES = 64 * 1024

# Our own refusals of ambiguous framing (RFC 9112 section 6.1), answered 400 with these texts.
_CONTENT_LENGTH_AND_TRANSFER_ENCODING = "Content-Length and Transfer-Encoding must not both be sent"
_TRANSFER_ENCODING_BEFORE_HTTP11 = "Transfer-Encoding is only allowed in HTTP/1.1"

# Waitress's fixed parse-error texts that quote nothing from the request (others, such as
# 'Malformed header line "<the line>"', do, and are replaced by a generic sentence), and ours.
_SAFE_PARSE_ERRORS = frozenset(
    {
        _CONTENT_LENGTH_AND_TRANSFER_ENCODING,
        _TRANSFER_ENCODING_BEFORE_HTTP11,
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
    # The connection closes after an error: waitress would otherwise also answer an HTTP/1.0
    # "Connection: keep-alive" request with "Connection: Keep-Alive", beside "Connection: close".
    request.headers.pop("CONNECTION", None)
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


# --- request framing ---------------------------------------------------------------------------


def _parse_header(parser: Any, header_plus: bytes) -> None:
    """``HTTPRequestParser.parse_header``, refusing ambiguous framing first. Waitress itself lets
    chunked win over Content-Length and keeps the connection open, so bytes a front end counted as
    body would be read here as a second, smuggled request; it also ignores Transfer-Encoding in
    HTTP/1.0. Header names are compared as waitress reads them (any case; a name with "_" is
    dropped by waitress, so it frames nothing)."""
    names = {line.partition(b":")[0].strip(b" \t").lower() for line in header_plus.split(b"\r\n")[1:]}
    both = b"transfer-encoding" in names and b"content-length" in names
    try:
        _parser.HTTPRequestParser.parse_header(parser, header_plus)  # sets the version the answer uses
    except _parser.TransferEncodingNotImplemented:
        if both:
            raise _parser.ParsingError(_CONTENT_LENGTH_AND_TRANSFER_ENCODING) from None
        raise
    if both:
        raise _parser.ParsingError(_CONTENT_LENGTH_AND_TRANSFER_ENCODING)
    if b"transfer-encoding" in names and parser.version != "1.1":
        raise _parser.ParsingError(_TRANSFER_ENCODING_BEFORE_HTTP11)


def _parser_received(parser: Any, data: bytes) -> int:
    """``HTTPRequestParser.received``; once the request is refused, everything else that arrived
    with it is consumed unread, so that no request after a refused one is ever parsed (the error
    answer then closes the connection)."""
    consumed: int = _parser.HTTPRequestParser.received(parser, data)
    return len(data) if parser.error is not None else consumed


# --- slow clients ------------------------------------------------------------------------------


def _channel_init(channel: Any, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
    # The clock for the first request's headers starts at accept: a connection that sends
    # nothing is held no longer than one that trickles.
    channel.waiting_since = time.monotonic()
    _channel.HTTPChannel.__init__(channel, server, sock, addr, adj, map=map)


def _channel_received(channel: Any, data: bytes) -> bool:
    """``HTTPChannel.received``, keeping ``waiting_since``: when the request whose headers are
    being read started (its first byte; for the first request, the accept), None once they are
    complete. A trickle of bytes does not move it (waitress's ``last_activity`` does)."""
    if data and channel.waiting_since is None:
        channel.waiting_since = time.monotonic()
    result: bool = _channel.HTTPChannel.received(channel, data)
    request = channel.request
    if request is None or request.headers_finished:
        channel.waiting_since = None
    return result


def _channel_service(channel: Any) -> None:
    """``HTTPChannel.service``; a pipelined request that was partly read while the one before it
    ran (the channel does not read meanwhile) gets its full header deadline from now."""
    _channel.HTTPChannel.service(channel)
    request = channel.request
    if request is not None and not request.headers_finished:
        channel.waiting_since = time.monotonic()


def _awaiting_headers_since(channel: Any) -> float | None:
    """When ``channel`` started waiting for request headers it still lacks; None if it has them,
    or is running a request or sending an answer (waitress does not read meanwhile)."""
    since: float | None = getattr(channel, "waiting_since", None)
    if (
        since is None
        or channel.requests
        or channel.total_outbufs_len
        or channel.will_close
        or channel.close_when_flushed
    ):
        return None
    request = channel.request
    return None if request is not None and request.headers_finished else since


def _eviction_rank(channel: Any) -> tuple[int, float] | None:
    """Which connection gives way at the connection limit, lowest first: the one waiting longest
    for its request headers, then the longest idle (keep-alive) one, then one reading a body
    (slow uploads too could otherwise hold every slot). None: running or answering a request."""
    if channel.requests or channel.total_outbufs_len or channel.will_close or channel.close_when_flushed:
        return None
    since = _awaiting_headers_since(channel)
    if since is not None:
        return (0, since)
    return (1 if channel.request is None else 2, float(channel.last_activity))


def _listener_maintenance(listener: Any, now: float) -> None:
    """Waitress's maintenance (closes connections idle past ``channel_timeout``), then close the
    connections that have waited past the header deadline for their request headers."""
    _server.BaseWSGIServer.maintenance(listener, now)
    cutoff = time.monotonic() - listener.header_timeout
    expired = 0
    for channel in list(listener.active_channels.values()):
        since = _awaiting_headers_since(channel)
        if since is not None and since <= cutoff:
            channel.will_close = True  # closed by the loop this turn (as waitress's own maintenance does)
            expired += 1
    evicted, listener.evicted = listener.evicted, 0
    if expired or evicted:
        logging.getLogger("cds_service").warning(
            "closed slow connections",
            extra={"header_deadline_passed": expired, "evicted_at_connection_limit": evicted},
        )


def _listener_readable(listener: Any) -> bool:
    """``BaseWSGIServer.readable`` (run maintenance when due; accept while under the connection
    limit), except that at the limit it closes the connections ranked first by ``_eviction_rank``
    and goes on accepting, where waitress stops accepting until one closes of itself: slow clients
    cannot hold every slot while health probes wait in the listen backlog. It backs off as waitress
    does only when every connection is running or answering a request."""
    now = time.time()
    if now >= listener.next_channel_cleanup:
        listener.next_channel_cleanup = now + listener.adj.cleanup_interval
        listener.maintenance(now)
    if not listener.accepting:
        return False
    channels = list(listener.active_channels.values())
    closing = sum(1 for channel in channels if channel.will_close)
    excess = len(listener._map) - closing - listener.adj.connection_limit + 1
    if excess > 0:
        ranked = sorted(
            ((rank, channel) for channel in channels if (rank := _eviction_rank(channel)) is not None),
            key=lambda pair: pair[0],
        )
        for _, channel in ranked[:excess]:
            channel.will_close = True  # closed by the loop this turn; accepting the new one meanwhile
        listener.evicted += min(excess, len(ranked))
        excess -= len(ranked)
    full = excess > 0
    if full != listener.in_connection_overflow:
        listener.in_connection_overflow = full
        if full:
            listener.logger.warning("every connection is busy at the connection limit: not accepting for now")
        else:
            listener.logger.info("accepting connections again")
    return not full


def _channel_class(max_body_bytes: int) -> type:
    # waitress has no type hints (mypy sees its classes as Any, which strict mode does not let a
    # class statement subclass), hence type() rather than class statements.
    error_task = type(
        "OperationOutcomeErrorTask",
        (_task.ErrorTask,),
        {"execute": _execute_error_task, "max_body_bytes": max_body_bytes},
    )
    parser = type(
        "StrictFramingParser",
        (_parser.HTTPRequestParser,),
        {"parse_header": _parse_header, "received": _parser_received},
    )
    return type(
        "OperationOutcomeChannel",
        (_channel.HTTPChannel,),
        {
            "error_task_class": error_task,
            "parser_class": parser,
            "waiting_since": None,
            "__init__": _channel_init,
            "received": _channel_received,
            "service": _channel_service,
        },
    )


def _harden_listener(listener: Any, header_timeout: float) -> None:
    # The listener was built by waitress's create_server: its class is swapped for a subclass
    # (same layout) with the deadline and eviction above.
    listener.__class__ = type(
        "SlowClientSafe" + type(listener).__name__,
        (type(listener),),
        {
            "readable": _listener_readable,
            "maintenance": _listener_maintenance,
            "header_timeout": header_timeout,
            "evicted": 0,
        },
    )


def waitress_limits(settings: Settings) -> dict[str, Any]:
    """Waitress's own limits: its body and header limits just above the app's, so the app answers
    what it can see; its connection budget; its maintenance every second (the header deadline is
    checked then); poll() rather than select(), which fails past 1024 file descriptors."""
    return {
        "max_request_body_size": settings.max_body_bytes + _WAITRESS_SLACK_BYTES,
        "max_request_header_size": MAX_HEADER_BYTES + _WAITRESS_SLACK_BYTES,
        "connection_limit": settings.connection_limit,
        "cleanup_interval": 1,
        "asyncore_use_poll": True,
    }


# File descriptors a process needs besides its client connections (database pool, FHIR and Redis
# clients, log and metric files, listening sockets).
_SPARE_FILE_DESCRIPTORS = 256


def _allow_open_files(connections: int) -> None:
    """Raise this process's soft open-files limit (up to the hard one) so that ``connections``
    client connections fit; warn when the hard limit is lower."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    needed = connections + _SPARE_FILE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        logging.getLogger("cds_service").warning(
            "the open-files limit is too low for CDS_CONNECTION_LIMIT",
            extra={"open_files_limit": target, "connection_limit": connections},
        )


def make_server(app: Flask, settings: Settings, *, sockets: list[socket.socket] | None = None) -> Any:
    """A waitress server for ``app`` (not yet running), bound as configured, or on ``sockets``
    already bound and listening (the worker processes of ``serve --workers N`` share them)."""
    options: dict[str, Any] = {
        "threads": settings.threads,
        "ident": "calciphylaxis-cds",
        # The app reads X-Forwarded-For only from CDS_TRUSTED_PROXIES peers (http/app.py); waitress
        # strips it unless some are configured.
        "clear_untrusted_proxy_headers": not settings.trusted_proxies,
        "expose_tracebacks": False,
        **waitress_limits(settings),
    }
    if sockets:
        options["sockets"] = sockets
    else:
        options.update(host=settings.host, port=settings.port)
    _allow_open_files(settings.connection_limit)
    server = _server.create_server(app, **options)
    channel = _channel_class(settings.max_body_bytes)
    for listener in _listeners(server):
        listener.channel_class = channel
        _harden_listener(listener, settings.header_timeout_seconds)
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


def settle_heap() -> None:
    """Move everything alive now (the app, the code tables, the card content: built once, kept for
    the process's life) out of the cyclic garbage collector's sight (``gc.freeze``).

    A hook call decodes a body into many container objects; each full collection those
    allocations trigger would otherwise walk the whole start-up heap too (about 150,000
    objects), which doubled the cost of decoding a 6 MB body (measured: 142 ms against 67 ms
    with the heap frozen, 68 ms in a bare interpreter). Frozen objects are never collected,
    so this is called once, when start-up is over and before the first call."""
    gc.collect()
    gc.freeze()


def serve(app: Flask, settings: Settings, *, sockets: list[socket.socket] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly: stop accepting connections, let
    the calls in progress finish (up to ``CDS_SHUTDOWN_TIMEOUT_SECONDS``), then write out the
    queued served-card rows and close the stores (``close_app``)."""
    from cds_service.http.app import close_app

    stop = StopSignal()
    stop.install()
    server = make_server(app, settings, sockets=sockets)
    settle_heap()
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
    """A connection with a request being read, queued, run, or an answer not yet sent; not one
    still waiting for its request headers (slow clients would otherwise hold up shutdown)."""
    if _awaiting_headers_since(channel) is not None:
        return False
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
