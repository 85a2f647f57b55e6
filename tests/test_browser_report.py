"""A real browser: the governance report and a critical card's preview, opened in headless Chromium.

Debian's ``chromium`` opens each page from a file, as a committee member or clinician would, with
no network. For each page the test reads the DOM Chromium rendered (``--dump-dom``), scans its
console log for any message (the pages run no script, so any message is a fault: an uncaught
error, or something the Content-Security-Policy had to block) and saves a screenshot under
``test-artifacts/browser/`` (git-ignored) for a person to look at. A third, deliberately broken
page proves that the console scan does catch errors with this Chromium.

The pages are opened in parallel: one Chromium start each, a couple of seconds in all.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from cds_service.config import Settings
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.governance import render_report
from cds_service.pipeline import run_hook
from cds_service.render.html import render_preview
from cds_service.services import SERVICES
from tests.conftest import FIXTURES, FROZEN_NOW, REPO
from tests.governance_support import GENERATED_AT, realistic_data
from tests.html_support import Node, parse

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "browser"
WINDOW = (1280, 2000)
TIMEOUT_SECONDS = 60

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium is not installed (/usr/bin/chromium): run `make browser` to install Debian's chromium",
)

# Chrome logs each console message (log, warning, error, uncaught exception, CSP violation) as
# "...:INFO:CONSOLE:12] "text", source: ..." (older releases: "CONSOLE(12)").
CONSOLE_LINE = re.compile(r"CONSOLE[(:]|Uncaught")

BROKEN_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>broken</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'">
</head><body><p>broken</p><img src="https://example.invalid/pixel.png" alt="">
<script>undefinedFunction();</script></body></html>"""


@dataclass
class Opened:
    dom: Node
    console: list[str]
    screenshot: Path


def chromium_command(page: Path, screenshot: Path, profile: Path) -> list[str]:
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
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        page.resolve().as_uri(),
    ]


def open_in_chromium(pages: dict[str, Path], workdir: Path) -> dict[str, Opened]:
    """Open every page in its own headless Chromium, all at once; wait for all."""
    running = {}
    for name, page in pages.items():
        screenshot = workdir / f"{name}.png"
        command = chromium_command(page, screenshot, workdir / f"profile-{name}")
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


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def critical_card_response():
    body = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text(encoding="utf-8"))
    body.pop("_expected", None)
    service = next(s for s in SERVICES.values() if s.hook == body["hook"])
    return run_hook(service, body, PrefetchResolver(Settings()), now=lambda: FROZEN_NOW)[1]


@pytest.fixture(scope="module")
def opened(tmp_path_factory) -> dict[str, Opened]:
    workdir = tmp_path_factory.mktemp("browser")
    pages = {
        "governance-report": render_report(realistic_data(), generated_at=GENERATED_AT, site="St Example Renal Unit"),
        "card-preview-critical": render_preview(
            critical_card_response(),
            title="Card preview: c1-calcium-acetate-calciphylaxis.json",
            request_summary="order-select · calciphylaxis-order-select · as of 2026-11-21 12:00 UTC",
        ),
        "broken": BROKEN_PAGE,
    }
    paths = {}
    for name, page in pages.items():
        paths[name] = workdir / f"{name}.html"
        paths[name].write_text(page, encoding="utf-8")
    result = open_in_chromium(paths, workdir)
    # Keep what a person would want to look at: the pages and their screenshots.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ignore = ARTIFACTS.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# test output (tests/test_browser_report.py): never committed\n*\n", encoding="utf-8")
    for name in ("governance-report", "card-preview-critical"):
        shutil.copyfile(paths[name], ARTIFACTS / f"{name}.html")
        if result[name].screenshot.exists():
            shutil.copyfile(result[name].screenshot, ARTIFACTS / f"{name}.png")
    return result


def test_the_console_check_catches_errors_in_this_chromium(opened):
    console = "\n".join(opened["broken"].console)
    assert "Uncaught ReferenceError: undefinedFunction is not defined" in console
    assert "Content Security Policy" in console  # the blocked image


def test_the_governance_report_renders_its_charts_without_console_errors(opened):
    report = opened["governance-report"]
    assert report.console == [], "console messages:\n" + "\n".join(report.console)
    data = realistic_data()
    dom = report.dom
    assert dom.find("h1").text() == "CDS governance report"
    for rule_id in data.rule_ids():
        section = dom.find("section", cls="rule", data_rule=rule_id)
        svg = section.find("figure", data_chart="weekly").find("svg")
        series = {c for g in svg.find_all("g", cls="series") for c in g.classes if c.startswith("serie-")}
        assert series == {"serie-0", "serie-1", "serie-2"}, rule_id
        assert [t.text() for t in svg.find("g", cls="legends").find_all("text")] == [
            "accepted",
            "overridden",
            "ignored",
        ]
        assert svg.find("g", cls="plot").find_all("rect"), f"no bars drawn for {rule_id}"
        assert dom.find("table", cls="summary").find("tbody", data_rule=rule_id)
    assert len(dom.find_all("figure", data_chart="reasons")) == len(data.rule_ids())
    assert dom.find_all("script") == []
    assert png_size(report.screenshot) == WINDOW
    assert report.screenshot.stat().st_size > 50_000, "the screenshot looks blank"


def test_a_critical_card_preview_renders_without_console_errors(opened):
    preview = opened["card-preview-critical"]
    assert preview.console == [], "console messages:\n" + "\n".join(preview.console)
    (card,) = preview.dom.find_all("article")
    assert "card--critical" in card.classes and card.attrs["data-indicator"] == "critical"
    assert card.find("span", cls="indicator--critical").text().endswith("Critical")
    assert card.find("h2").text().startswith("Stop calcium acetate 667 MG Oral Tablet")
    assert "Corrected calcium: 9.7 mg/dL" in card.find("div", cls="card__detail").text()
    buttons = card.find("section", cls="card__suggestions").find_all("button")
    assert buttons and all("disabled" in b.attrs for b in buttons)
    assert card.find("section", cls="card__override").find_all("input")
    assert preview.dom.find_all("script") == []
    assert png_size(preview.screenshot) == WINDOW
    assert preview.screenshot.stat().st_size > 50_000, "the screenshot looks blank"


def test_the_report_from_a_store_filled_with_realistic_feedback_renders_in_chromium(tmp_path):
    """The committee's page as the service builds it: a real SQLite store filled with eight weeks
    of served cards and a realistic mix of feedback, read back, rendered, opened in Chromium."""
    from cds_service.feedback import SQLiteFeedbackStore
    from cds_service.feedback.store import ServedCard
    from cds_service.governance.build import governance_page
    from cds_service.protocol import FeedbackItem
    from tests.governance_support import PATIENT_IDS, realistic_records

    served, feedback = realistic_records()
    store = SQLiteFeedbackStore(tmp_path / "feedback.sqlite3")
    service = "calciphylaxis-order-select"
    store.write_served(
        [
            ServedCard(
                c.card_uuid,
                service,
                "order-select",
                c.rule_id,
                PATIENT_IDS[i % len(PATIENT_IDS)],
                c.served_at,
                "",
                c.indicator,
            )
            for i, c in enumerate(served)
        ]
    )
    items = []
    for f in feedback:
        if f.outcome == "accepted" and not f.accepted_suggestions:
            continue  # CDS Hooks requires the suggestion taken with an "accepted" outcome
        item: dict = {"card": f.card_uuid, "outcome": f.outcome, "outcomeTimestamp": f.outcome_timestamp.isoformat()}
        if f.accepted_suggestions:
            item["acceptedSuggestions"] = [{"id": s} for s in f.accepted_suggestions]
        if f.override_reason:
            item["overrideReason"] = {"reason": {"code": "reason", "display": f.override_reason}}
        items.append(FeedbackItem.model_validate(item))
    store.store_feedback(service, items)
    page = governance_page(store.governance_records(GENERATED_AT), snoozing=True, now=GENERATED_AT)
    store.close()
    assert not any(patient.split("/")[1] in page for patient in PATIENT_IDS)  # no patient data
    assert "{" + "corrected_calcium_high}" not in page and "above 10.2 mg/dL" in page  # rule titles filled
    path = tmp_path / "store-report.html"
    path.write_text(page, encoding="utf-8")
    opened = open_in_chromium({"store-report": path}, tmp_path)["store-report"]
    assert opened.console == [], "console messages:\n" + "\n".join(opened.console)
    for rule_id in {c.rule_id for c in served}:
        section = opened.dom.find("section", cls="rule", data_rule=rule_id)
        assert section.find("figure", data_chart="weekly").find("svg").find("g", cls="plot").find_all("rect"), rule_id
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if opened.screenshot.exists():
        shutil.copyfile(opened.screenshot, ARTIFACTS / "governance-report-from-store.png")
