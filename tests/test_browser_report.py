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
import shutil

import pytest

from cds_service.config import Settings
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.governance import render_report
from cds_service.pipeline import run_hook
from cds_service.render.html import render_preview
from cds_service.services import SERVICES
from tests.browser_support import Opened, artifacts, open_in_chromium, png_size, requires_chromium
from tests.conftest import FIXTURES, FROZEN_NOW
from tests.governance_support import GENERATED_AT, realistic_data

WINDOW = (1280, 2000)

pytestmark = requires_chromium

BROKEN_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>broken</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'">
</head><body><p>broken</p><img src="https://example.invalid/pixel.png" alt="">
<script>undefinedFunction();</script></body></html>"""


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
    result = open_in_chromium({name: path.resolve().as_uri() for name, path in paths.items()}, workdir, WINDOW)
    # Keep what a person would want to look at: the pages and their screenshots.
    kept = artifacts()
    for name in ("governance-report", "card-preview-critical"):
        shutil.copyfile(paths[name], kept / f"{name}.html")
        if result[name].screenshot.exists():
            shutil.copyfile(result[name].screenshot, kept / f"{name}.png")
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
    opened = open_in_chromium({"store-report": path.resolve().as_uri()}, tmp_path, WINDOW)["store-report"]
    assert opened.console == [], "console messages:\n" + "\n".join(opened.console)
    for rule_id in {c.rule_id for c in served}:
        section = opened.dom.find("section", cls="rule", data_rule=rule_id)
        assert section.find("figure", data_chart="weekly").find("svg").find("g", cls="plot").find_all("rect"), rule_id
    if opened.screenshot.exists():
        shutil.copyfile(opened.screenshot, artifacts() / "governance-report-from-store.png")
