"""One app, any server (issue 22): the app under real gunicorn (deploy/gunicorn.conf.py, on a free
loopback port) serves hook calls with the JSON request log and metrics summed over its workers,
answers gunicorn's own refusals as OperationOutcomes, drains on SIGTERM, and refuses to start
where ``serve`` would: no authentication on a non-loopback bind, the in-memory JWT replay cache
with several workers; one clear message and a non-zero exit, no traceback. waitress-serve too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gunicorn", reason="the 'gunicorn' extra is not installed")

from cds_service.config import Settings  # noqa: E402
from cds_service.http import app as app_module  # noqa: E402
from tests.auth_support import BASE, default_issuer, write_issuers  # noqa: E402
from tests.conftest import FIXTURES, REPO  # noqa: E402
from tools.services import free_port  # noqa: E402

CONFIG = REPO / "deploy" / "gunicorn.conf.py"
ORDER_SELECT = "/cds-services/calciphylaxis-order-select"
# Settings a developer's shell may hold that must not leak into a test's server.
_CLEARED = ("CDS_DATABASE_URL", "CDS_REDIS_URL", "CDS_ISSUERS_FILE", "CDS_PUBLIC_BASE_URL", "CDS_WORKERS", "CDS_HOST")


def _order_select() -> dict:
    body = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text())
    body.pop("_expected", None)
    return body


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class Gunicorn:
    """gunicorn on a free loopback port, started as the docs start it, its output in a file."""

    def __init__(self, env: dict[str, str], *args: str, config: bool = True, wait: bool = True):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.logfile = tempfile.NamedTemporaryFile(prefix="cds-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
        full_env = {k: v for k, v in os.environ.items() if k not in _CLEARED and k != "PROMETHEUS_MULTIPROC_DIR"}
        full_env.update(CDS_PORT=str(self.port), CDS_LOG_LEVEL="INFO", **env)
        command = [_bin("gunicorn"), *(["-c", str(CONFIG)] if config else []), *args]
        if not config:
            command.append("cds_service.http.app:create_app()")
        self.proc = subprocess.Popen(command, env=full_env, stdout=self.logfile, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gunicorn did not answer:\n{self.log()}")

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw, status, response_headers = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, response_headers = error.read(), error.code, dict(error.headers)
        try:
            return status, json.loads(raw), response_headers
        except json.JSONDecodeError:
            return status, raw.decode(), response_headers

    def raw(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return Path(self.logfile.name).read_text(errors="replace")

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.stop(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.logfile.close()
        Path(self.logfile.name).unlink(missing_ok=True)


def _refusal(server: Gunicorn, timeout: float = 60) -> tuple[int, str]:
    code = server.proc.wait(timeout=timeout)
    return code, server.log()


# --- serving -----------------------------------------------------------------------------------


def test_gunicorn_with_two_workers_serves_hook_calls_logs_each_once_and_sums_metrics(tmp_path):
    server = Gunicorn({"CDS_FEEDBACK_DB": str(tmp_path / "f.db"), "CDS_WORKERS": "2"})
    try:
        for index in range(6):
            status, body, headers = server.request(
                "POST", ORDER_SELECT, _order_select(), headers={"X-Request-ID": f"gunicorn-{index}"}
            )
            assert status == 200 and len(body["cards"]) == 1
            assert headers["X-Request-ID"] == f"gunicorn-{index}" and headers["traceparent"].startswith("00-")
        # Any worker answers the scrape for both: the metric files are shared (PROMETHEUS_MULTIPROC_DIR).
        for _ in range(4):
            text = server.request("GET", "/metrics")[1]
            calls = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("cds_hook_calls_total{") and 'status="200"' in line
            )
            assert calls == 6
        assert server.request("GET", "/ready")[0] == 200
        assert server.stop() == 0
        lines = server.lines()
    finally:
        server.close()
    requests = [line for line in lines if line.get("message") == "request" and line.get("path") == ORDER_SELECT]
    assert sorted(line["request_id"] for line in requests) == [f"gunicorn-{i}" for i in range(6)]
    assert {line["pid"] for line in requests} <= {line["pid"] for line in lines if line.get("message") == "app ready"}
    assert all(len(line["trace_id"]) == 32 and line["client"] == "127.0.0.1" for line in requests)
    assert not any(line.get("path") == "/ready" for line in lines)  # a probe answering 200 is DEBUG
    assert all(line["level"] != "ERROR" for line in lines)
    assert "c1-calciphylaxis" not in json.dumps(lines)
    from cds_service.feedback import SQLiteFeedbackStore

    assert SQLiteFeedbackStore(tmp_path / "f.db").served_count() == 6  # written out at SIGTERM


def test_gunicorn_writes_only_json_lines_names_the_proxied_client_and_drains_on_sigterm(tmp_path):
    server = Gunicorn({"CDS_FEEDBACK_DB": str(tmp_path / "f.db"), "CDS_TRUSTED_PROXIES": "127.0.0.1"})
    try:
        forwarded = {"X-Forwarded-For": "198.51.100.4, 203.0.113.9", "X-Request-ID": "proxied"}
        assert server.request("POST", ORDER_SELECT, _order_select(), headers=forwarded)[0] == 200
        assert server.stop() == 0
        text = server.log()
    finally:
        server.close()
    assert all(line.startswith("{") for line in text.splitlines()), text
    lines = [json.loads(line) for line in text.splitlines()]
    (call,) = [line for line in lines if line.get("request_id") == "proxied" and line["message"] == "request"]
    assert call["client"] == "203.0.113.9"  # the trusted proxy's last hop
    messages = [line["message"] for line in lines]
    assert "Handling signal: term" in messages and "shutting down" in messages


def test_gunicorns_own_refusals_are_operation_outcomes_that_quote_nothing(tmp_path):
    server = Gunicorn({"CDS_FEEDBACK_DB": str(tmp_path / "f.db")})
    try:
        smuggled = server.raw(
            b"POST /cds-services HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        bad_line = server.raw(b"GET /c1-calciphylaxis\x01 HTTP/1.1\r\nHost: a\r\n\r\n")
        long_line = server.raw(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        server.stop()  # a worker may log a refusal just after answering it: read the log once it has exited
        lines = server.lines()
    finally:
        server.close()
    for answer, status in ((smuggled, 400), (bad_line, 400), (long_line, 414)):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()) and b"Content-Type: application/json" in head
        assert answer.count(b"HTTP/1.1") == 1  # nothing read after a refused request
        outcome = json.loads(body)
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"]
        assert b"c1-calciphylaxis" not in body and b"smuggled" not in body
    refused = [line for line in lines if line.get("refused_by") == "gunicorn"]
    assert sorted(line["status"] for line in refused) == [400, 400, 414]
    assert "c1-calciphylaxis" not in json.dumps(lines)


# --- refusing to start ----------------------------------------------------------------------------


def test_gunicorn_refuses_to_start_without_authentication_on_all_interfaces(tmp_path):
    """gunicorn's own bind decides (CDS_HOST says loopback here): one message from gunicorn's master
    before any worker starts, exit status 2, no traceback, nothing created."""
    port = free_port()
    server = Gunicorn(
        {"CDS_FEEDBACK_DB": str(tmp_path / "f.db"), "CDS_HOST": "127.0.0.1"}, "--bind", f"0.0.0.0:{port}", wait=False
    )
    try:
        code, log = _refusal(server)
    finally:
        server.close()
    assert code == 2, log
    assert f"refusing to start on 0.0.0.0 without authentication (gunicorn bind 0.0.0.0:{port})" in log
    assert log.count("refusing to start") == 1 and "Booting worker" not in log
    assert "CDS_ISSUERS_FILE" in log and "CDS_ALLOW_UNAUTHENTICATED=true" in log
    assert "Traceback" not in log and not (tmp_path / "f.db").exists()


def test_gunicorn_on_all_interfaces_starts_when_unauthenticated_is_allowed(tmp_path):
    port = free_port()
    server = Gunicorn(
        {"CDS_FEEDBACK_DB": str(tmp_path / "f.db"), "CDS_ALLOW_UNAUTHENTICATED": "true"},
        "--bind",
        f"0.0.0.0:{port}",
        wait=False,
    )
    server.port, server.base = port, f"http://127.0.0.1:{port}"
    try:
        server.wait_ready()
        assert any("anyone who can reach" in line.get("message", "") for line in server.lines())
    finally:
        server.close()


def test_gunicorn_refuses_the_in_memory_replay_cache_with_two_workers(tmp_path):
    issuers = write_issuers(tmp_path, default_issuer())
    env = {"CDS_FEEDBACK_DB": str(tmp_path / "f.db"), "CDS_ISSUERS_FILE": str(issuers), "CDS_PUBLIC_BASE_URL": BASE}
    server = Gunicorn(env, "--workers", "2", wait=False)
    try:
        code, log = _refusal(server)
    finally:
        server.close()
    assert code == 2, log
    assert "refusing to start 2 worker processes with the in-memory JWT replay cache" in log
    assert "CDS_REDIS_URL" in log and "Traceback" not in log


def test_gunicorn_without_the_config_file_refuses_several_workers_without_shared_metrics(tmp_path):
    """Without the configuration file each worker's create_app refuses: gunicorn's AppImportError,
    the message, and gunicorn's exit status 4 ("App failed to load")."""
    server = Gunicorn(
        {"CDS_FEEDBACK_DB": str(tmp_path / "f.db")}, "--bind", "127.0.0.1:0", "-w", "2", config=False, wait=False
    )
    try:
        code, log = _refusal(server)
    finally:
        server.close()
    assert code != 0 and "no shared metric files" in log and "deploy/gunicorn.conf.py" in log
    # gunicorn 27 itself may print a HaltServer traceback when a second worker exits with "App failed
    # to load" while the master is already halting; nothing of the app's is ever a traceback.
    assert "Traceback" not in log or ("HaltServer" in log and "cds_service" not in log.split("Traceback", 1)[1])


def test_create_app_in_a_gunicorn_worker_refuses_with_gunicorns_app_load_error(tmp_path):
    """What a worker does when gunicorn runs without the configuration file (its master checks
    nothing): AppImportError, which gunicorn prints as a message and stops on, no restart loop."""
    from gunicorn.errors import AppImportError

    issuers = write_issuers(tmp_path, default_issuer())
    settings = Settings(feedback_db=tmp_path / "f.db", issuers_file=issuers, public_base_url=BASE)
    two = app_module.Hosting("gunicorn", 2, ("127.0.0.1",), True, "gunicorn bind 127.0.0.1:8000")
    with pytest.raises(AppImportError, match="in-memory JWT replay cache"):
        app_module.create_app(settings, hosting=two)
    network = app_module.Hosting("gunicorn", 1, ("0.0.0.0",), True, "gunicorn bind 0.0.0.0:8000")
    with pytest.raises(AppImportError, match="without authentication"):
        app_module.create_app(Settings(feedback_db=tmp_path / "f.db"), hosting=network)
    assert not (tmp_path / "f.db").exists()


def test_gunicorn_preload_is_refused(tmp_path):
    server = Gunicorn({"CDS_FEEDBACK_DB": str(tmp_path / "f.db")}, "--preload", wait=False)
    try:
        code, log = _refusal(server)
    finally:
        server.close()
    assert code != 0 and "preload_app is not supported" in log, log


def test_waitress_serve_refuses_to_start_without_authentication_on_all_interfaces(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["CDS_FEEDBACK_DB"] = str(tmp_path / "f.db")
    command = [_bin("waitress-serve"), f"--listen=0.0.0.0:{free_port()}", "--call", "cds_service.http.app:create_app"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "refusing to start on 0.0.0.0 without authentication" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "f.db").exists()


# --- what the app learns of its server --------------------------------------------------------------


def test_uwsgi_worker_count_and_sockets_are_read_from_uwsgi(monkeypatch):
    fake = types.SimpleNamespace(numproc=4, opt={"http-socket": b":8080", "master": True})
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    hosting = app_module.detect_hosting(Settings())
    assert (hosting.server, hosting.processes, hosting.verified) == ("uwsgi", 4, True)
    assert hosting.network_addresses == ["0.0.0.0"]  # ":8080" is every interface
    fake.opt = {"socket": [b"127.0.0.1:3031", b"/run/cds.sock"]}
    assert app_module.detect_hosting(Settings()).network_addresses == []


def test_create_app_itself_refuses_what_serve_refuses(tmp_path):
    from cds_service.http.app import StartupRefused

    with pytest.raises(StartupRefused, match="refusing to start on 0.0.0.0 without authentication"):
        app_module.create_app(Settings(feedback_db=tmp_path / "f.db", host="0.0.0.0"))
    issuers = write_issuers(tmp_path, default_issuer())
    with pytest.raises(StartupRefused, match="2 worker processes with the in-memory JWT replay cache"):
        app_module.create_app(
            Settings(feedback_db=tmp_path / "f.db", issuers_file=issuers, public_base_url=BASE, workers=2)
        )
    assert not (tmp_path / "f.db").exists()


def test_outside_any_known_server_the_settings_are_assumed():
    hosting = app_module.detect_hosting(Settings(host="127.0.0.1", workers=1))
    assert (hosting.server, hosting.verified, hosting.addresses) == ("unknown", False, ("127.0.0.1",))


@pytest.mark.parametrize(
    "bind, host",
    [("0.0.0.0:8000", "0.0.0.0"), ("[::1]:80", "::1"), (":8080", "0.0.0.0"), ("unix:/run/x.sock", "unix")],
)
def test_bind_strings_are_read_as_gunicorn_and_uwsgi_write_them(bind, host):
    assert app_module._bind_host(bind) == host


def test_the_config_file_takes_its_values_from_the_services_settings(monkeypatch):
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDS_WORKERS", "3")
    monkeypatch.setenv("CDS_THREADS", "6")
    monkeypatch.setenv("CDS_HOST", "::1")
    monkeypatch.setenv("CDS_TRUSTED_PROXIES", "10.0.0.0/8,192.0.2.7")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # never taken from the environment
    values: dict[str, Any] = {}
    exec(compile(CONFIG.read_text(), str(CONFIG), "exec"), values)  # as gunicorn loads it
    assert values["workers"] == 3 and values["threads"] == 6 and values["bind"] == ["[::1]:8080"]
    assert values["forwarded_allow_ips"] == "10.0.0.0/8,192.0.2.7/32"
    assert values["accesslog"] is None and values["preload_app"] is False
    assert values["worker_class"].__name__ == "CdsThreadWorker"
    assert shutil.which("gunicorn", path=str(Path(sys.executable).parent))
