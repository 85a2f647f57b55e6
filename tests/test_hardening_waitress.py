"""Against the real server (waitress on loopback, raw sockets): every error status it can produce,
including the ones waitress answers before the app sees the request, is an OperationOutcome;
and nothing a caller sends (patient id, token, body) reaches its log at any level.

One server process for the module, started as the README starts it (console script), with a
small body limit so the oversized requests stay small.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_service.http.limits import MAX_HEADER_BYTES
from tests.processes import exchange
from tools.services import free_port

MAX_BODY = 64 * 1024
PATIENT_VIEW = "/cds-services/calciphylaxis-patient-view"
# Values a caller sends that must never reach the server's log.
SECRETS = ("patient-sentinel-7f3a", "token-sentinel-9c1e", "body-sentinel-44d2")


class Server:
    def __init__(self, port: int, proc: subprocess.Popen):
        self.port = port
        self.proc = proc
        self.log = ""

    def stop(self) -> str:
        """Stop the server (once) and return everything it logged."""
        if self.proc.returncode is None:
            self.proc.terminate()
            _, err = self.proc.communicate(timeout=10)
            self.log = err.decode("utf-8", "replace")
        return self.log

    def raw(self, data: bytes, *, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """Send raw bytes, read the answer until the server closes: (status, headers, body)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and close before it has read everything
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return status, headers, body

    def exchange(self, data: bytes, *, timeout: float = 5) -> tuple[bytes, bool]:
        """Send raw bytes, keeping our side open, and read until the server closes the connection
        or ``timeout`` passes: (everything read, whether the server closed it)."""
        return exchange(self.port, data, timeout)


@contextlib.contextmanager
def running_server(tmp: Path) -> Iterator[Server]:
    port = free_port()
    env = dict(
        os.environ,
        CDS_PORT=str(port),
        CDS_HOST="127.0.0.1",
        CDS_FEEDBACK_DB=str(tmp / "f.db"),
        CDS_MAX_BODY_BYTES=str(MAX_BODY),
        CDS_LOG_LEVEL="DEBUG",
        CDS_THREADS="2",
    )
    for name in ("CDS_ISSUERS_FILE", "CDS_PUBLIC_BASE_URL", "CDS_ALLOW_UNAUTHENTICATED"):
        env.pop(name, None)
    exe = os.path.join(os.path.dirname(sys.executable), "calciphylaxis-cds")
    command = [exe, "serve"] if os.path.exists(exe) else [sys.executable, "-m", "cds_service", "serve"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    running = Server(port, proc)
    try:
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        proc.stderr.read().decode() if proc.poll() is not None else "no answer"
                    ) from None
                time.sleep(0.1)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("waitress")) as running:
        yield running


def assert_operation_outcome(answer, status: int) -> str:
    got, headers, body = answer
    assert got == status, body[:300]
    assert headers["content-type"].startswith("application/json"), headers
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    text = body.decode()
    assert "waitress" not in text and "Traceback" not in text
    return outcome["issue"][0]["diagnostics"]


def post(path: str, body: bytes, *extra_headers: str, length: str | None = None) -> bytes:
    headers = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *extra_headers]
    if length is not None:
        headers.append(f"Content-Length: {length}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int = 16384) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


def padded_request(total: int) -> bytes:
    return json.dumps({"hook": "patient-view", "padding": "x" * total}).encode()


# --- bodies ------------------------------------------------------------------------------------


def test_chunked_body_just_over_the_app_limit_is_413_operation_outcome(server):
    body = chunked(padded_request(MAX_BODY + 1000))
    answer = server.raw(post(PATIENT_VIEW, body, "Transfer-Encoding: chunked"))
    assert f"({MAX_BODY} bytes)" in assert_operation_outcome(answer, 413)


def test_chunked_body_over_the_server_limit_is_413_operation_outcome(server):
    # Past waitress's own limit: waitress refuses it before the app is called.
    body = chunked(padded_request(MAX_BODY + 70 * 1024))
    answer = server.raw(post(PATIENT_VIEW, body, "Transfer-Encoding: chunked"))
    assert f"({MAX_BODY} bytes)" in assert_operation_outcome(answer, 413)


def test_absurd_content_length_is_413_operation_outcome(server):
    answer = server.raw(post(PATIENT_VIEW, b"{}", length="9" * 30))
    assert "larger than" in assert_operation_outcome(answer, 413)


def test_content_length_over_the_limit_is_413_operation_outcome(server):
    body = b" " * (MAX_BODY + 1)
    answer = server.raw(post(PATIENT_VIEW, body, length=str(len(body))))
    assert f"({MAX_BODY} bytes)" in assert_operation_outcome(answer, 413)


@pytest.mark.parametrize("length", ["-1", "-99999999999", "abc", "1.5", "0x10"])
def test_negative_or_non_numeric_content_length_is_400_operation_outcome(server, length):
    answer = server.raw(post(PATIENT_VIEW, b"{}", length=length))
    assert "Content-Length" in assert_operation_outcome(answer, 400)


def test_invalid_chunk_size_is_400_operation_outcome(server):
    answer = server.raw(post(PATIENT_VIEW, b"zz\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked"))
    assert "chunk" in assert_operation_outcome(answer, 400)


def test_unsupported_transfer_encoding_is_501_operation_outcome(server):
    answer = server.raw(post(PATIENT_VIEW, b"{}", "Transfer-Encoding: gzip"))
    assert_operation_outcome(answer, 501)


# --- headers and request line ------------------------------------------------------------------


def test_header_just_over_256_kib_is_431_operation_outcome(server):
    request = f"GET /cds-services HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {'a' * (MAX_HEADER_BYTES + 100)}\r\n\r\n"
    assert "headers are larger" in assert_operation_outcome(server.raw(request.encode()), 431)


def test_header_far_over_the_server_limit_is_431_operation_outcome(server):
    request = f"GET /cds-services HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {'a' * (MAX_HEADER_BYTES * 2)}\r\n\r\n"
    assert "headers are larger" in assert_operation_outcome(server.raw(request.encode()), 431)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /cds-services HTTP/1.1\r\nHost: x\r\nthis line has no colon patient-sentinel-7f3a\r\n\r\n",
        b"G(E)T /cds-services HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /cds-services HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",
    ],
)
def test_malformed_request_is_400_operation_outcome_that_echoes_nothing(server, request_bytes):
    diagnostics = assert_operation_outcome(server.raw(request_bytes), 400)
    assert "sentinel" not in diagnostics and "G(E)T" not in diagnostics


def test_app_errors_over_the_real_server_are_operation_outcomes_too(server):
    assert_operation_outcome(server.raw(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 404)
    answer = server.raw(post(PATIENT_VIEW, b'{"hook": ', "Connection: close", length="9"))
    assert_operation_outcome(answer, 400)


# --- request framing (RFC 9112 section 6.1: no request smuggling) -----------------------------------

# A body that ends early when read as chunked: what follows "0" would be a second request.
SMUGGLING_BODY = b"0\r\n\r\nGET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
PIPELINED = b"GET /cds-services HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def assert_refused_alone_and_closed(server: Server, request: bytes) -> str:
    """One 400 OperationOutcome, the connection closed by the server, nothing after it answered."""
    answer, closed = server.exchange(request + PIPELINED)
    assert closed, f"the server kept the connection open after: {answer[:300]!r}"
    head, _, rest = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["connection"] == "close", head
    length = int(headers["content-length"])
    assert rest[length:] == b"", f"more than one answer: {answer!r}"
    return assert_operation_outcome((int(lines[0].split()[1]), headers, rest), 400)


@pytest.mark.parametrize(
    "framing",
    [
        ("Content-Length: {n}", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: chunked", "Content-Length: {n}"),
        ("content-length: {n}", "transfer-encoding: Chunked"),
        ("TRANSFER-ENCODING: CHUNKED", "CONTENT-LENGTH: {n}"),
        ("Transfer-Encoding: gzip, chunked", "Content-Length: {n}"),  # waitress alone: 501
        ("Content-Length: {n}", "Transfer-Encoding: identity"),
        ("Content-Length: {n}", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
    ],
    ids=["cl-then-te", "te-then-cl", "lower-case", "upper-case", "te-list", "te-identity", "te-twice"],
)
def test_content_length_with_transfer_encoding_is_400_closes_the_connection_and_answers_nothing_after(server, framing):
    headers = [line.format(n=len(SMUGGLING_BODY)) for line in framing]
    diagnostics = assert_refused_alone_and_closed(server, post(PATIENT_VIEW, SMUGGLING_BODY, *headers))
    assert "Content-Length and Transfer-Encoding must not both be sent" in diagnostics


def test_transfer_encoding_in_http_1_0_is_400_and_closes_the_connection(server):
    request = (
        f"POST {PATIENT_VIEW} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode() + SMUGGLING_BODY
    assert "only allowed in HTTP/1.1" in assert_refused_alone_and_closed(server, request)


def test_chunked_request_without_content_length_is_still_served_on_a_kept_alive_connection(server):
    request = post(PATIENT_VIEW, chunked(b"{}"), "Transfer-Encoding: chunked")
    answer, closed = server.exchange(request + PIPELINED, timeout=1)
    assert not closed
    first, _, second = answer.partition(b"}HTTP/1.1 ")  # the app's JSON answer, then the next one
    assert first.startswith(b"HTTP/1.1 400 ") and b'"resourceType":"OperationOutcome"' in first, answer
    assert second.startswith(b"200 "), answer


# --- the log -----------------------------------------------------------------------------------


def test_server_log_holds_no_patient_id_token_or_body_at_debug_level(tmp_path):
    with running_server(tmp_path) as server:
        log = _send_secrets(server)
    loggers = [json.loads(line).get("logger") for line in log.splitlines() if line.startswith("{")]
    assert "cds_service.request" in loggers  # the server did log the requests (one JSON object per line)
    for secret in SECRETS:
        assert secret not in log, f"{secret} reached the server log"


def _send_secrets(server: Server) -> str:
    """Send requests carrying the secrets in every place a caller can put them; the log."""
    patient, token, marker = SECRETS
    body = json.dumps(
        {
            "hook": "patient-view",
            "hookInstance": "3f0b6a8e-2a56-4c51-9f5e-0d3a8b3b2c11",
            "fhirServer": "https://ehr.example.org/fhir",
            "fhirAuthorization": {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": marker,
            },
            "context": {"userId": "Practitioner/1", "patientId": patient},
            "prefetch": {"conditions": None, "meds": None, "note": marker},
        }
    ).encode()
    auth = f"Authorization: Bearer {token}"
    requests = [
        post(PATIENT_VIEW, body, auth, "Connection: close", length=str(len(body))),
        post(PATIENT_VIEW, body[:-5], auth, "Connection: close", length=str(len(body) - 5)),  # bad JSON
        post(PATIENT_VIEW, chunked(body + b" " * MAX_BODY), auth, "Transfer-Encoding: chunked"),  # too large
        post(PATIENT_VIEW, body, auth, f"X-Patient: {patient}", length="-1"),  # refused by waitress
        f"GET /cds-services HTTP/1.1\r\nHost: x\r\nno colon {patient} {token}\r\n\r\n".encode(),
    ]
    for request in requests:
        assert server.raw(request)[0] in (200, 400, 412, 413)
    return server.stop()
