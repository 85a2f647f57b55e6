"""Real service processes for the tests: started as the README starts them (the console script),
on a free loopback port, with the environment given; stopped cleanly (SIGTERM) or killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tools.services import free_port

# Settings a developer's shell may hold that must not leak into a test's server.
_CLEARED = ("CDS_DATABASE_URL", "CDS_REDIS_URL", "CDS_ISSUERS_FILE", "CDS_PUBLIC_BASE_URL", "CDS_WORKERS")


def exchange(port: int, data: bytes, timeout: float) -> tuple[bytes, bool]:
    """Send ``data`` over a raw loopback socket (without closing our side) and read until the server
    closes the connection or ``timeout`` passes: (everything read, whether the server closed it)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return b"".join(chunks), False
            except ConnectionResetError:
                return b"".join(chunks), True
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
    return b"".join(chunks), False


def command() -> list[str]:
    exe = Path(sys.executable).with_name("calciphylaxis-cds")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cds_service"]


class ServiceProcess:
    def __init__(self, env: dict[str, str], *args: str, port: int | None = None, wait: bool = True):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.logfile = tempfile.NamedTemporaryFile(prefix="cds-service-", suffix=".log", delete=False)  # noqa: SIM115
        full_env = {k: v for k, v in os.environ.items() if k not in _CLEARED and k != "PROMETHEUS_MULTIPROC_DIR"}
        full_env.update(CDS_PORT=str(self.port), CDS_LOG_LEVEL="INFO", **env)
        self.proc = subprocess.Popen(
            [*command(), "serve", *args], env=full_env, stdout=self.logfile, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait_ready("/health")

    def wait_ready(self, path: str = "/health", timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base + path, timeout=1) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"service did not answer {path}:\n{self.log()}")

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 10
    ) -> tuple[int, Any, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                status, response_headers = response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, response_headers = error.read(), error.code, dict(error.headers)
        text = raw.decode()
        try:
            return status, json.loads(text), response_headers
        except json.JSONDecodeError:
            return status, text, response_headers

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (a clean shutdown) and wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return Path(self.logfile.name).read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def close(self) -> None:
        """Stop it cleanly if it still runs (its files and worker processes go with it), else kill it."""
        if self.proc.poll() is None:
            try:
                self.stop(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.logfile.close()
        Path(self.logfile.name).unlink(missing_ok=True)
