"""Headless Chromium for the browser tests (``tests/test_browser_*.py``): Debian's ``chromium``
opens each address in its own fresh profile and gives the DOM it rendered (``--dump-dom``), the
console messages it logged and a screenshot. Screenshots worth a person's look are kept under
``test-artifacts/browser/`` (git-ignored).
"""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.html_support import Node, parse

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "browser"
TIMEOUT_SECONDS = 60

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium is not installed (/usr/bin/chromium): run `make browser` to install Debian's chromium",
)

# Chrome logs each console message (log, warning, error, uncaught exception, CSP violation) as
# "...:INFO:CONSOLE:12] "text", source: ..." (older releases: "CONSOLE(12)").
CONSOLE_LINE = re.compile(r"CONSOLE[(:]|Uncaught")


@dataclass
class Opened:
    dom: Node
    console: list[str]
    screenshot: Path


def chromium_command(url: str, screenshot: Path, profile: Path, window: tuple[int, int]) -> list[str]:
    return [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        f"--window-size={window[0]},{window[1]}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        url,
    ]


def open_in_chromium(urls: dict[str, str], workdir: Path, window: tuple[int, int]) -> dict[str, Opened]:
    """Open every address in its own headless Chromium (a fresh profile: no cookie from before),
    all at once; wait for all."""
    running = {}
    for name, url in urls.items():
        screenshot = workdir / f"{name}.png"
        command = chromium_command(url, screenshot, workdir / f"profile-{name}", window)
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        running[name] = (process, screenshot)
    opened = {}
    for name, (process, screenshot) in running.items():
        try:
            out, err = process.communicate(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"Chromium did not finish {name} in {TIMEOUT_SECONDS} s:\n{err[-3000:]}")
        assert process.returncode == 0, f"Chromium failed on {name} ({process.returncode}):\n{err[-3000:]}"
        assert out.lstrip().lower().startswith("<!doctype html>"), f"no DOM dumped for {name}:\n{err[-3000:]}"
        console = [line for line in err.splitlines() if CONSOLE_LINE.search(line)]
        opened[name] = Opened(parse(out), console, screenshot)
    return opened


def artifacts() -> Path:
    """The folder for what a person would want to look at, made (and git-ignored) if need be."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ignore = ARTIFACTS.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# test output (tests/test_browser_*.py): never committed\n*\n", encoding="utf-8")
    return ARTIFACTS


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height
