"""A real browser follows a critical card's SMART link through the EHR launch to the page.

The service (on 127.0.0.1) answers a patient-view call with a critical calciphylaxis card whose
first link is the app's ``smart`` link. The test EHR (``tests/smart_ehr.py``, on 127.0.0.2: a
different site to the browser) launches that link as an EHR does. Headless Chromium (Debian's,
as in ``tests/test_browser_report.py``; both open it through ``tests/browser_support.py``) opens
the EHR's launch address and follows, by itself, every redirect: EHR launch -> /app/launch
(session cookie set) -> the EHR's authorize endpoint (cross-site) -> /app/callback (the
SameSite=Lax cookie comes back on this top-level navigation) -> /app/view. ``--dump-dom`` gives the DOM of the page it ended on; no DevTools protocol or
Playwright is needed, because the launch is a chain of HTTP redirects with no script and no
click on the way. The console must stay silent (the page runs no script, and its CSP would
report anything it blocked); a screenshot at the 1280-pixel width of an EHR side panel is saved
under ``test-artifacts/browser/``.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import requests

from cds_service.config import Settings
from cds_service.http.app import create_app
from tests.browser_support import Opened, artifacts, open_in_chromium, png_size, requires_chromium
from tests.conftest import FROZEN_NOW
from tests.smart_ehr import CLIENT_ID, PATIENT, ServiceServer, SmartTestEhr, calciphylaxis_chart
from tests.test_smart_app import patient_view_body

pytestmark = requires_chromium

WINDOW = (1280, 2600)


def visit(url: str, workdir: Path, name: str) -> Opened:
    """Open ``url`` in a fresh headless Chromium (its own profile: no cookie from before)."""
    return open_in_chromium({name: url}, workdir, WINDOW)[name]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smart-browser")
    with SmartTestEhr(calciphylaxis_chart(FROZEN_NOW)) as ehr:
        settings = Settings(
            feedback_db=workdir / "feedback.sqlite3", smart_client_id=CLIENT_ID, smart_issuers=[ehr.base_url]
        )
        with ServiceServer(create_app(settings, now=lambda: FROZEN_NOW)) as service:
            ehr.redirect_uris.add(service.url + "/app/callback")
            body = patient_view_body(ehr)
            body["hookInstance"] = str(uuid.uuid4())
            cards = requests.post(
                service.url + "/cds-services/calciphylaxis-patient-view", json=body, timeout=10
            ).json()["cards"]
            critical = next(card for card in cards if card["indicator"] == "critical")
            link = critical["links"][0]
            assert link["type"] == "smart"
            # The clinician clicks the link: the EHR launches it; Chromium follows every redirect.
            page = visit(ehr.launch_link(link["url"]), workdir, "smart-app")
            # The page's own address, opened in another browser (no session cookie): refused.
            view_url = f"{service.url}/app/view?v=not-this-browsers"
            refused = visit(view_url, workdir, "smart-app-no-session")
            seen = ehr.seen()
            violations = list(ehr.violations)
            authorized = list(ehr.authorize_requests)
    kept = artifacts()
    for name, opened in (("smart-app", page), ("smart-app-no-session", refused)):
        if opened.screenshot.exists():
            shutil.copyfile(opened.screenshot, kept / f"{name}.png")
    return {
        "card": critical,
        "page": page,
        "refused": refused,
        "seen": seen,
        "violations": violations,
        "authorized": authorized,
    }


def test_chromium_follows_the_cards_smart_link_through_the_launch_to_the_page(launched):
    page: Opened = launched["page"]
    assert page.console == [], "console messages:\n" + "\n".join(page.console)
    dom = page.dom
    assert dom.find("h1").text() == "Mineral trends and the rules' reasoning", dom.text()[:500]
    assert len(launched["authorized"]) == 1 and launched["authorized"][0]["code_challenge_method"] == "S256"
    assert launched["violations"] == []
    reads = [r for r in launched["seen"] if r.path.split("/")[0][:1].isupper()]
    assert reads and all(r.headers.get("authorization", "").startswith("Bearer ") for r in reads)
    assert dom.find_all("script") == []


def test_the_page_in_chromium_shows_the_charts_and_the_rules_conclusions(launched):
    dom = launched["page"].dom
    figures = {f.attrs["data-analyte"]: f for f in dom.find_all("figure", cls="trend")}
    assert set(figures) == {"corrected_calcium", "phosphate", "ca_x_p", "pth", "albumin", "crp"}
    for analyte, figure in figures.items():
        svg = figure.find("svg")
        assert svg.attrs["role"] == "img", analyte
        assert svg.find("title").text() and svg.find("desc").text(), analyte
        assert svg.find_all("circle", cls="pt") or svg.find_all("path", cls="pt"), f"no points drawn for {analyte}"
    pth = figures["pth"].find("svg")
    assert pth.find("rect", cls="band") and "target 150-300 pg/mL" in pth.text()
    assert [t.text() for t in pth.find_all("text", cls="threshold-label")] == [
        "500 consider parathyroidectomy",
        "100 avoid suppressing further",
    ]
    conclusions = {li.attrs["data-rule"]: li for li in dom.find_all("li", cls="conclusion")}
    assert len(conclusions) == 8
    card = launched["card"]
    c1 = conclusions["c1_calcium_binders"]
    assert c1.attrs["data-cards"] == "1" and card["summary"] in c1.text()
    assert c1.find("span", cls="badge--critical")
    detail = dom.find("article", data_rule="C1-calcium-binder-calciphylaxis").find("div", cls="card__detail").text()
    assert "Corrected calcium: 9.4 mg/dL" in detail  # the same evidence as the card
    timeline = dom.find("figure", cls="timeline-figure").find("svg")
    assert timeline.find_all("g", cls="tl-row") and timeline.find_all("path", data_kind="administration")
    assert PATIENT not in launched["page"].dom.find("main").attrs.get("id", "")


def test_the_screenshot_is_a_1280_pixel_side_panel_page(launched):
    shot = launched["page"].screenshot
    assert png_size(shot) == WINDOW
    assert shot.stat().st_size > 100_000, "the screenshot looks blank"


def test_without_its_session_the_page_says_so_silently(launched):
    refused: Opened = launched["refused"]
    assert refused.console == [], "console messages:\n" + "\n".join(refused.console)
    assert refused.dom.find("h1").text() == "The session has ended"
    assert refused.dom.find_all("svg") == []
