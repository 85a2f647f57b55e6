"""Talking to the CDS client's FHIR server: which servers may be contacted, and one safe GET.

Security rules kept here so no caller can forget them:

* only servers on the configured allow-list (``CDS_FHIR_ALLOWED_SERVERS``) are ever contacted, so a
  request naming another ``fhirServer`` can neither make us call it (SSRF) nor receive the token;
* a URL is only trusted when its path is already in normal form (no ``.``/``..`` segments, no
  ``//``, no backslash, no percent-encoded dot, slash, backslash or other unreserved character):
  an HTTP library or server that normalises such a path could otherwise send the token outside
  the trusted base path (``/r4/%2e%2e/admin`` is ``/admin``). Such URLs are refused, never
  rewritten, so the path we compared is the path the server sees;
* https is required except on loopback, unless ``CDS_FHIR_ALLOW_HTTP`` says otherwise;
* redirects are never followed (a 3xx is a failure), so the token cannot be forwarded elsewhere;
* the session ignores proxy variables and ``.netrc`` (no credential is added behind our back) and
  keeps no cookies (one patient's call must not carry state into another's);
* every call has a connect and a read timeout per socket operation, and **ends by the hook call's
  deadline, socket and all**: a watchdog shuts the socket of any GET still running at its
  deadline, so a server that answers one byte at a time cannot keep a fetch thread;
* per server origin, a concurrency cap and a circuit breaker (``breaker.py``);
* the libraries underneath (urllib3) log every URL they fetch, query string and patient id
  included: their log records are dropped below WARNING and stripped of details above.

Failures raise ``FhirFetchError`` whose ``reason`` is a short phrase fit to show a clinician
("timed out", "FHIR server answered 403"): never a URL, a token or a response body.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import re
import socket
import string
import threading
import time
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import SplitResult, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError

from cds_service import metrics
from cds_service.calllog import fhir_fetch
from cds_service.config import Settings
from cds_service.fhir.breaker import CONNECTION, TIMEOUT, UNKNOWN, ServerGuards
from cds_service.net import is_loopback_host

_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK = 64 * 1024

# The per-server protection's defaults are the settings' (config.py says why they are what they
# are); a client built without settings (tests) gets the same.
_FIELDS = Settings.model_fields
DEFAULT_SERVER_CONCURRENCY: int = _FIELDS["fhir_server_concurrency"].default
DEFAULT_BREAKER_THRESHOLD: int = _FIELDS["fhir_breaker_threshold"].default
DEFAULT_BREAKER_COOLDOWN: float = _FIELDS["fhir_breaker_cooldown"].default


class FhirFetchError(Exception):
    """A FHIR call that gave nothing usable; ``reason`` is safe to show and to log.

    ``failure`` says what this tells about the server, for its circuit breaker: ``None`` when it
    answered (a 404, an HTML page ...), ``"timeout"`` or ``"connection"`` when it gave no answer
    (what the breaker counts), ``"unknown"`` when the request failed on our side."""

    def __init__(self, reason: str, *, failure: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.failure = failure


# --------------------------------------------------------------------------------------------
# Which servers may be contacted
# --------------------------------------------------------------------------------------------

# Host names as DNS spells them, or an IPv6 literal (urlsplit drops the brackets). Anything else
# (a backslash, a percent sign ...) is parsed differently by different libraries: refused.
_HOST = re.compile(r"[a-z0-9_.\-]+|[0-9a-f:.]+")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# Characters RFC 3986 allows unencoded in a path (pchar and "/"), and "%" for escapes. A path
# with any other character would be re-encoded on its way out, so it is not normal.
_PATH_CHARS = _UNRESERVED | frozenset("!$&'()*+,;=:@/%")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def is_normal_path(path: str) -> bool:
    """True when ``path`` is already in the normal form every client and server agrees on, so
    comparing it with a base path means what it says.

    Refused (the rule of docs/fhir-access.md): characters a client would re-encode (backslash,
    space, non-ASCII ...); a ``%`` that is not a valid escape; an escape of an unreserved
    character (``%2e``, ``%41``: requests decodes these before sending, so ``%2e%2e`` becomes a
    real ``..``), of ``/``, ``\\`` or ``%`` (a server may decode them into separators), or of a
    control character; a ``.`` or ``..`` segment, also with ``;parameters`` (``..;`` is ``..`` to
    some servers); an empty segment (``//``) other than a trailing slash.
    """
    if path and not path.startswith("/"):
        return False
    if any(ch not in _PATH_CHARS for ch in path):
        return False
    if path.count("%") != len(_ESCAPE.findall(path)):
        return False  # a "%" that does not start a valid escape
    for hex_digits in _ESCAPE.findall(path):
        char = chr(int(hex_digits, 16))
        if char in _UNRESERVED or char in "/\\%" or ord(char) < 0x20 or ord(char) == 0x7F:
            return False
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        if segment.split(";", 1)[0] in (".", ".."):
            return False
        if segment == "" and index != len(segments) - 1:
            return False
    return True


def _parts(url: str) -> SplitResult | None:
    """The parts of an http(s) URL with a plain host name and a normal path, else ``None``."""
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if not _HOST.fullmatch(parts.hostname) or not is_normal_path(parts.path):
        return None
    return parts


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".").lower()
    return scheme, host, parts.port or _DEFAULT_PORTS[scheme]


def _path_under(path: str, base_path: str) -> bool:
    """Both paths are normal (``_parts``), so a plain prefix test on whole segments is exact."""
    base_path = base_path.rstrip("/")
    path = path.rstrip("/")
    return path == base_path or path.startswith(base_path + "/")


def _matches_entry(parts: SplitResult, entry: str) -> bool:
    """One allow-list entry: a base URL (``https://fhir.example.org/r4``: same scheme, host and port,
    and a path at or below it) or a host pattern (``fhir.example.org``, ``fhir.example.org:8443``,
    ``*.example.org`` = any subdomain of example.org, never example.org itself)."""
    entry = entry.strip()
    if not entry:
        return False
    scheme, host, port = _origin(parts)
    if "://" in entry:
        allowed = _parts(entry)
        if allowed is None or allowed.query or allowed.fragment:
            return False
        return _origin(allowed) == (scheme, host, port) and _path_under(parts.path, allowed.path)
    try:
        pattern = urlsplit("//" + entry)
        pattern_port = pattern.port
    except ValueError:
        return False
    pattern_host = (pattern.hostname or "").rstrip(".").lower()
    if not pattern_host or pattern.path not in ("", "/"):
        return False
    if pattern_port is not None and pattern_port != port:
        return False
    if pattern_host.startswith("*."):
        return host.endswith(pattern_host[1:]) and host != pattern_host[2:]
    return host == pattern_host


def server_problem(url: str, allowed: list[str], *, allow_http: bool) -> str | None:
    """``None`` when ``url`` (a ``fhirServer``) may be contacted; otherwise the short reason why not."""
    parts = _parts(url)
    if parts is None or parts.username or parts.password or parts.query or parts.fragment:
        return "FHIR server address not usable"
    if not any(_matches_entry(parts, entry) for entry in allowed):
        return "FHIR server not trusted"
    if parts.scheme.lower() != "https" and not (allow_http or is_loopback_host(parts.hostname)):
        return "FHIR server not using https"
    return None


def is_under_base(url: str, base: str) -> bool:
    """True when ``url`` is on the same server as ``base`` and at or below its path, both in normal
    form (next links, absolute references, every URL we send the token to): the token is only
    ever sent to the server the EHR named and we trust."""
    parts, base_parts = _parts(url), _parts(base)
    if parts is None or base_parts is None or parts.username or parts.password or parts.fragment:
        return False
    return _origin(parts) == _origin(base_parts) and _path_under(parts.path, base_parts.path)


# --------------------------------------------------------------------------------------------
# Library logs: no URL (query string, patient id) ever leaves through them
# --------------------------------------------------------------------------------------------

_LIBRARY_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.response",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "urllib3.http2.connection",
    "urllib3.contrib.pyopenssl",
    "requests",
    "charset_normalizer",
)


class _WithholdDetails(logging.Filter):
    """urllib3 logs each request line (``GET /r4/Condition?patient=<id> ...``) at DEBUG and the URL
    in some warnings. Below WARNING its records are dropped; from WARNING up only the logger and
    the level remain, so an operator still sees that something happened, never a URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        record.msg = "%s reported a %s (details withheld: they may name a FHIR query)"
        record.args = (record.name, record.levelname.lower())
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


_WITHHOLD = _WithholdDetails()


def quiet_library_loggers() -> None:
    """Put the filter on every logger of the HTTP libraries (idempotent). A filter on a parent
    logger does not see its children's records, so each one gets it, including any that exist by
    now under those names."""
    names = set(_LIBRARY_LOGGERS)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.startswith(("urllib3.", "requests.", "charset_normalizer.")):
            names.add(name)
    for name in names:
        logger = logging.getLogger(name)
        if _WITHHOLD not in logger.filters:
            logger.addFilter(_WITHHOLD)


# --------------------------------------------------------------------------------------------
# The deadline watchdog: every GET ends by its deadline, socket and all
# --------------------------------------------------------------------------------------------
#
# Socket timeouts bound each read, not the response: a server sending one byte every 0.1 s never
# trips a 0.25 s read timeout, and http.client reads the status line and headers with no
# deadline at all. So each GET registers a _Watch; the connection classes below hand it (a
# duplicate of) the socket as soon as it exists; one daemon thread shuts down the socket of any
# watch still running at its deadline. The blocked read then ends at once, and the fetch thread
# is free again. The duplicate is ours to close, so the watchdog can never touch a socket that
# has been closed and reused; it lets go of it when the connection goes back to the pool.


class _Watch:
    """The socket of one GET, shut down if the GET outlives its deadline."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._expired = False  # the watchdog found the GET still running at its deadline
        self._cut = False  # ... and shut its socket down
        self._done = False

    def attach(self, sock: socket.socket) -> None:
        """The GET's connection has a socket (new, or reused from the pool). Runs on the GET's
        own thread."""
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
        except OSError:
            return  # no watchdog for this one; the socket timeouts still bound each read
        with self._lock:
            old, self._sock = self._sock, dup
            if self._expired and not self._done:
                self._cut_locked()
        if old is not None:
            old.close()

    def detach(self) -> None:
        """The connection is going back to the pool (the response was read): from now on it may
        serve another GET, so this watch must never shut it down."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def expire(self) -> None:
        """The deadline has passed (watchdog thread)."""
        with self._lock:
            if self._done:
                return
            self._expired = True
            self._cut_locked()

    def finish(self) -> bool:
        """The GET is over; True when its socket was cut at the deadline (what was read may be
        truncated, so it must not be used)."""
        with self._lock:
            self._done = True
            sock, self._sock = self._sock, None
            cut = self._cut
        if sock is not None:
            sock.close()
        return cut

    @property
    def done(self) -> bool:
        return self._done

    def _cut_locked(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(OSError):  # already closed by its owner: nothing left to cut
            self._sock.shutdown(socket.SHUT_RDWR)
        self._cut = True


class _Watchdog:
    """One daemon thread for the whole process, sleeping until the earliest deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._finished = 0  # finished watches still in the heap (dropped lazily)
        self._thread: threading.Thread | None = None

    def watch(self, item: _Watch) -> None:
        with self._cond:
            heapq.heappush(self._heap, (item.deadline, next(self._order), item))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fhir-deadline-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def finished(self) -> None:
        """A watch ended before its deadline; compact the heap now and then so a long deadline and
        many calls do not pile up finished watches."""
        with self._cond:
            self._finished += 1
            if self._finished > 1024 and self._finished * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
                self._finished = 0

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, due = heapq.heappop(self._heap)
            due.expire()


_WATCHDOG = _Watchdog()
_current = threading.local()  # the _Watch of the GET running on this thread, if any


def _attach_current(connection: Any, sock: socket.socket | None) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None and sock is not None:
        connection._fhir_watch = watch
        watch.attach(sock)


def _detach(connection: Any) -> None:
    watch = getattr(connection, "_fhir_watch", None)
    if watch is not None:
        connection._fhir_watch = None
        watch.detach()


class _WatchedHTTPConnection(HTTPConnection):
    """Hands each new socket (before any TLS handshake) and each reused one to the current watch."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach_current(self, sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a connection reused from the pool
            _attach_current(self, self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            _detach(conn)
        super()._put_conn(conn)


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            _detach(conn)
        super()._put_conn(conn)


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


# --------------------------------------------------------------------------------------------
# One GET
# --------------------------------------------------------------------------------------------


class FhirClient:
    """A pooled HTTP session for FHIR reads and searches, shared by the worker threads, with a
    concurrency cap and a circuit breaker per server origin (``guards``)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_response_bytes: int,
        pool_size: int = 16,
        server_concurrency: int = DEFAULT_SERVER_CONCURRENCY,
        breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        guards: ServerGuards | None = None,
    ):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_response_bytes = max_response_bytes
        self.guards = guards or ServerGuards(
            concurrency=server_concurrency, failure_threshold=breaker_threshold, cooldown=breaker_cooldown
        )
        quiet_library_loggers()
        session = requests.Session()
        session.trust_env = False  # no proxy variables, no .netrc credentials
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # keep no cookies
        adapter = _WatchedAdapter(pool_connections=8, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.session = session

    @classmethod
    def from_settings(cls, settings: Settings) -> FhirClient:
        return cls(
            connect_timeout=settings.fhir_connect_timeout,
            read_timeout=settings.fhir_read_timeout,
            max_response_bytes=settings.fhir_max_response_bytes,
            pool_size=settings.fhir_workers,
            server_concurrency=settings.fhir_server_concurrency,
            breaker_threshold=settings.fhir_breaker_threshold,
            breaker_cooldown=settings.fhir_breaker_cooldown,
        )

    def close(self) -> None:
        self.session.close()

    def get_json(self, url: str, *, token: str | None, deadline: float) -> dict[str, Any]:
        """GET ``url`` and return the FHIR resource it answered with, or raise ``FhirFetchError``.

        ``deadline`` is a ``time.monotonic()`` instant: the call, socket included, ends by then.
        The caller has checked that ``url`` is under the trusted base; a token is in any case
        never sent to a path that is not in normal form.
        """
        if time.monotonic() >= deadline:
            metrics.FHIR_FETCHES.labels(outcome="not_attempted").inc()
            raise FhirFetchError("timed out")
        if token and not is_normal_path(urlsplit(url).path):
            metrics.FHIR_FETCHES.labels(outcome="not_attempted").inc()
            raise FhirFetchError("FHIR address not usable")
        breaker = self.guards.for_url(url).breaker
        admission = breaker.admit()
        if admission.refused:
            metrics.FHIR_FETCHES.labels(outcome="circuit_open").inc()
            raise FhirFetchError(admission.refused)
        failure: str | None = UNKNOWN
        outcome = "error"
        traced = fhir_fetch(url)  # a span for this GET when the call is traced (None otherwise)
        try:
            data = self._get(url, token, deadline)
            failure = None
            outcome = "ok"
            return data
        except FhirFetchError as exc:
            failure = exc.failure
            outcome = fetch_outcome(exc)
            raise
        finally:
            breaker.record(admission.trial, failure)
            metrics.FHIR_FETCHES.labels(outcome=outcome).inc()
            if traced is not None:
                traced.end(outcome)

    def _get(self, url: str, token: str | None, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        headers = {"Accept": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        watch = _Watch(deadline)
        _WATCHDOG.watch(watch)
        _current.watch = watch
        reading_body = False
        try:
            with self.session.get(
                url, headers=headers, timeout=timeout, allow_redirects=False, stream=True
            ) as response:
                status = response.status_code
                if 300 <= status < 400:
                    raise FhirFetchError("FHIR server redirected (not followed)")
                if status != 200:
                    raise FhirFetchError(f"FHIR server answered {status}")
                reading_body = True
                body = self._read_capped(response, deadline)
        except requests.RequestException as exc:
            raise _transport_error(exc, reading_body, cut=watch.finish()) from None
        finally:
            _current.watch = None
            cut = watch.finish()
            _WATCHDOG.finished()
        if cut:  # the body may have been cut short at the deadline
            raise FhirFetchError("timed out", failure=TIMEOUT)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise FhirFetchError("FHIR server response was not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FhirFetchError("FHIR server response was not a FHIR resource")
        return data

    def _read_capped(self, response: requests.Response, deadline: float) -> bytes:
        cap = self.max_response_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise FhirFetchError("FHIR response too large")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise FhirFetchError("FHIR response too large")
            if time.monotonic() > deadline:
                raise FhirFetchError("timed out", failure=TIMEOUT)
            chunks.append(chunk)
        return b"".join(chunks)


def fetch_outcome(exc: FhirFetchError) -> str:
    """The ``outcome`` label of ``cds_fhir_fetches_total`` for a failed GET."""
    if exc.failure == TIMEOUT:
        return "timeout"
    if exc.failure == CONNECTION:
        return "connection_failed"
    if exc.failure == UNKNOWN:
        return "error"
    if exc.reason.startswith(("FHIR server answered", "FHIR server redirected")):
        return "http_error"
    return "invalid_response"


def _transport_error(exc: requests.RequestException, reading_body: bool, *, cut: bool) -> FhirFetchError:
    """The short reason for an exception from requests. A socket the watchdog cut at the deadline
    surfaces as a lost connection, but what happened is that the call ran out of time."""
    # requests reports a read timeout met while streaming the body as a ConnectionError.
    read_timeout = any(isinstance(arg, ReadTimeoutError) for arg in exc.args)
    if cut or read_timeout or isinstance(exc, requests.Timeout):
        return FhirFetchError("timed out", failure=TIMEOUT)
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        if reading_body:
            return FhirFetchError("connection to FHIR server lost", failure=CONNECTION)
        return FhirFetchError("could not connect to FHIR server", failure=CONNECTION)
    return FhirFetchError("FHIR request failed", failure=UNKNOWN)
