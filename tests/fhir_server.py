"""A small threaded FHIR server on loopback, over resources given in code (tests and benchmarks).

It implements what the prefetch templates use, and no more: reads (``GET /Type/id``) and searches
(``GET /Type?...``) with ``patient``/``subject``, ``code`` (token, ``system|code`` lists),
``status``, ``_id``, ``_sort`` (by date: ``date``/``effective-time``, ``-`` for newest first),
``_count`` and paging through ``next`` links.
An unknown search parameter is a 400, as on strict servers, so a template typo shows up.

``delay`` (seconds, changeable at any time) is slept before every response; ``requests`` records
what it saw (path, query, headers) so tests can prove which calls were made and with which token.

    with FhirTestServer(resources, delay=0.05) as server:
        server.base_url  # http://127.0.0.1:<port>/fhir

``DripServer`` is the hostile counterpart: it answers every GET one byte at a time (status line and
headers too, or only the body), which no per-read timeout ever catches, and records when each
client gave up on its connection.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

_DATE_FIELDS = (
    "effectiveDateTime",
    "effectiveInstant",
    "issued",
    "authoredOn",
    "recordedDate",
    "onsetDateTime",
    "performedDateTime",
)
_DATE_SORTS = {"date", "effective-time"}  # every date-like sort the templates use, on _DATE_FIELDS
_SEARCH_PARAMS = {"patient", "subject", "code", "status", "_id", "_sort", "_count", "_offset"}


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str  # below the base, e.g. "Condition" or "Patient/p1"
    query: dict[str, list[str]]
    headers: dict[str, str]  # header names lower-cased

    @property
    def resource_type(self) -> str:
        return self.path.split("/")[0]


class _LoopbackServer:
    """A threaded HTTP server on a free loopback port, in a daemon thread, for one test.

    Subclasses name their request handler class and the attribute it reaches them by."""

    _handler: type[BaseHTTPRequestHandler]
    _handler_attribute: str
    _thread_name: str

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # wakes handlers sleeping on a delay or a drip
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        handler = type(self._handler.__name__, (self._handler,), {self._handler_attribute: self})
        httpd = _QuietHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=self._thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _address(self, path: str) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"


class FhirTestServer(_LoopbackServer):
    def __init__(
        self,
        resources: Iterable[dict[str, Any]] = (),
        *,
        delay: float = 0.0,
        max_page_size: int | None = None,
        require_token: str | None = None,
        base_path: str = "/fhir",
    ):
        self.resources: list[dict[str, Any]] = list(resources)
        self.delay = delay
        self.max_page_size = max_page_size
        self.require_token = require_token
        self.base_path = "/" + base_path.strip("/")
        self.requests: list[SeenRequest] = []
        super().__init__()

    @property
    def base_url(self) -> str:
        return self._address(self.base_path)

    def seen(self) -> list[SeenRequest]:
        with self._lock:
            return list(self.requests)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- FHIR behaviour --------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        for resource in self.resources:
            if resource.get("resourceType") == resource_type and resource.get("id") == resource_id:
                return resource
        return None

    def search(self, resource_type: str, query: dict[str, list[str]], url_path: str) -> tuple[int, dict]:
        unknown = set(query) - _SEARCH_PARAMS
        if unknown:
            return 400, _outcome(f"unknown search parameter(s): {', '.join(sorted(unknown))}")
        params = {name: ",".join(values) for name, values in query.items()}
        matches = [r for r in self.resources if r.get("resourceType") == resource_type]
        patient = params.get("patient") or params.get("subject")
        if patient:
            wanted = patient if "/" in patient else f"Patient/{patient}"
            matches = [r for r in matches if _subject(r) == wanted]
        if "code" in params:
            tokens = params["code"].split(",")
            matches = [r for r in matches if _has_code(r, tokens)]
        if "status" in params:
            statuses = set(params["status"].split(","))
            matches = [r for r in matches if r.get("status") in statuses]
        if "_id" in params:
            ids = set(params["_id"].split(","))
            matches = [r for r in matches if r.get("id") in ids]
        sort = params.get("_sort")
        if sort and sort.lstrip("-") in _DATE_SORTS:
            matches.sort(key=_date_of, reverse=sort.startswith("-"))
        elif sort:
            return 400, _outcome("unsupported _sort")
        count = int(params["_count"]) if params.get("_count", "").isdigit() else len(matches) or 1
        if self.max_page_size:
            count = min(count, self.max_page_size)
        offset = int(params["_offset"]) if params.get("_offset", "").isdigit() else 0
        page = matches[offset : offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": [{"relation": "self", "url": self._url(url_path, query)}],
            "entry": [
                {
                    "fullUrl": f"{self.base_url}/{r['resourceType']}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in page
            ],
        }
        if offset + count < len(matches):
            next_query = {**query, "_offset": [str(offset + count)]}
            bundle["link"].append({"relation": "next", "url": self._url(url_path, next_query)})
        return 200, bundle

    def _url(self, url_path: str, query: dict[str, list[str]]) -> str:
        host = self.base_url.split(self.base_path)[0]
        return f"{host}{url_path}?{urlencode(query, doseq=True)}"


class _QuietHTTPServer(ThreadingHTTPServer):
    """A client that hung up (the service cuts calls at its deadline) is not an error here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    fhir: FhirTestServer
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        fhir = self.fhir
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        relative = parts.path[len(fhir.base_path) :].strip("/") if parts.path.startswith(fhir.base_path) else None
        with fhir._lock:
            fhir.requests.append(
                SeenRequest(
                    "GET",
                    relative if relative is not None else parts.path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                )
            )
        if fhir.delay:
            fhir._stopping.wait(fhir.delay)
        if relative is None or not relative:
            return self._send(404, _outcome("not a FHIR endpoint"))
        if fhir.require_token and self.headers.get("Authorization") != f"Bearer {fhir.require_token}":
            return self._send(401, _outcome("a valid bearer token is required"))
        segments = relative.split("/")
        if len(segments) == 2:
            resource = fhir.read(*segments)
            if resource is None:
                return self._send(404, _outcome(f"{relative} not found"))
            return self._send(200, resource)
        if len(segments) == 1:
            status, body = fhir.search(segments[0], query, parts.path)
            return self._send(status, body)
        return self._send(400, _outcome("unsupported interaction"))

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _outcome(message: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": message}],
    }


def _subject(resource: dict[str, Any]) -> str | None:
    for name in ("subject", "patient"):
        ref = resource.get(name)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            return ref["reference"]
    return None


def _has_code(resource: dict[str, Any], tokens: list[str]) -> bool:
    codings = ((resource.get("code") or {}).get("coding")) or []
    for coding in codings:
        for token in tokens:
            system, sep, code = token.rpartition("|")
            if coding.get("code") == code and (not sep or not system or coding.get("system") == system):
                return True
    return False


def _date_of(resource: dict[str, Any]) -> str:
    for name in _DATE_FIELDS:
        if isinstance(resource.get(name), str):
            return resource[name]
    return ""


# --- a server that answers one byte at a time ---------------------------------------------------


@dataclass
class DripConnection:
    opened: float  # time.monotonic() when the request arrived
    closed: float | None = None  # when the drip ended
    ended_by: str = ""  # "client" (it closed the connection), "finished", "gave up", "stopped"


class DripServer(_LoopbackServer):
    """Answers every GET with a valid FHIR searchset, one byte every ``interval`` seconds.

    ``headers_too``: drip the status line and headers as well (else they come at once, with a
    Content-Length, and only the body drips). A drip ends when the client closes the connection,
    after ``give_up_after`` seconds (so a test of code that never gives up still ends), or at stop.

        with DripServer(interval=0.1) as slow:
            slow.base_url  # http://127.0.0.1:<port>/fhir
            slow.connections  # one DripConnection per request, in arrival order
    """

    def __init__(self, *, interval: float = 0.1, headers_too: bool = False, give_up_after: float = 3.0):
        self.interval = interval
        self.headers_too = headers_too
        self.give_up_after = give_up_after
        self.connections: list[DripConnection] = []
        super().__init__()

    @property
    def base_url(self) -> str:
        return self._address("/fhir")

    def seen(self) -> list[DripConnection]:
        with self._lock:
            return list(self.connections)

    def open_now(self) -> int:
        """Requests whose drip is still going on."""
        with self._lock:
            return sum(1 for c in self.connections if c.closed is None)

    def most_open_at_once(self) -> int:
        with self._lock:
            events = sorted(
                [(c.opened, 1) for c in self.connections]
                + [(c.closed if c.closed is not None else float("inf"), -1) for c in self.connections],
                key=lambda e: (e[0], e[1]),
            )
        most = current = 0
        for _, step in events:
            current += step
            most = max(most, current)
        return most


class _DripHandler(BaseHTTPRequestHandler):
    drip: DripServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        drip = self.drip
        record = DripConnection(opened=time.monotonic())
        with drip._lock:
            drip.connections.append(record)
        body = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [], "pad": " " * 4096}).encode()
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        payload = head + body
        if not drip.headers_too:
            self.wfile.write(head)
            payload = body
        record.ended_by = "finished"
        for byte in payload:
            if drip._stopping.wait(drip.interval):
                record.ended_by = "stopped"
                break
            if self._client_gone():
                record.ended_by = "client"
                break
            if time.monotonic() - record.opened > drip.give_up_after:
                record.ended_by = "gave up"
                break
            try:
                self.wfile.write(bytes([byte]))
            except OSError:
                record.ended_by = "client"
                break
        record.closed = time.monotonic()
        self.close_connection = True

    def _client_gone(self) -> bool:
        """A client waiting for its answer sends nothing; a readable socket means it hung up."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


# Each server's request handler reaches it by this attribute (set here: the handlers come last).
FhirTestServer._handler, FhirTestServer._handler_attribute = _Handler, "fhir"
FhirTestServer._thread_name = "fhir-test-server"
DripServer._handler, DripServer._handler_attribute = _DripHandler, "drip"
DripServer._thread_name = "fhir-drip-server"
