"""The SMART companion page: a real EHR launch over HTTP on loopback, driven with ``requests``.

The test EHR (``tests/smart_ehr.py``: an authorization server and a FHIR server on 127.0.0.2)
launches the app the service serves (on 127.0.0.1) from a calciphylaxis card's ``smart`` link:
discovery, authorisation code with PKCE S256, the token exchange, the page. Then what must not
happen: untrusted issuers, open launches, a forged state, a replayed code, a token without a
patient, an EHR without S256, an old tab after a new launch, anything in a URL or a log line
that identifies the patient or carries a token.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cds_service.config import Settings
from cds_service.fhir.templates import fill_template
from cds_service.http.app import create_app
from cds_service.services import SERVICES
from cds_service.smart.data import RESOURCE_TYPES, SCOPE
from cds_service.smart.sessions import MemorySessionStore, RedisSessionStore, SmartSession
from tests.conftest import FROZEN_NOW
from tests.html_support import parse
from tests.smart_ehr import CLIENT_ID, OTHER_PATIENT, PATIENT, ServiceServer, SmartTestEhr, calciphylaxis_chart


class Capture(logging.Handler):
    """Every log record the app writes while the tests run, with all its fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in self.records)


@pytest.fixture(scope="module")
def ehr():
    with SmartTestEhr(calciphylaxis_chart(FROZEN_NOW)) as server:
        yield server


@pytest.fixture(scope="module")
def logs():
    capture = Capture()
    logger = logging.getLogger("cds_service")  # the request line and every event of the package
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(capture)
    yield capture
    logger.removeHandler(capture)
    logger.setLevel(level)


@pytest.fixture(scope="module")
def service(ehr, logs, tmp_path_factory):
    settings = Settings(
        feedback_db=tmp_path_factory.mktemp("smart") / "feedback.sqlite3",
        smart_client_id=CLIENT_ID,
        smart_issuers=[ehr.base_url],
    )
    app = create_app(settings, now=lambda: FROZEN_NOW)
    with ServiceServer(app) as server:
        ehr.redirect_uris.add(server.url + "/app/callback")
        yield server


def patient_view_body(ehr: SmartTestEhr, patient: str = PATIENT) -> dict:
    """A patient-view call as the EHR sends it, its prefetch filled from the EHR's own chart."""
    prefetch = {}
    for key, spec in SERVICES["calciphylaxis-patient-view"].prefetch.items():
        path, _, query = fill_template(spec.template, {"patientId": patient}).partition("?")
        if query:
            prefetch[key] = ehr.search(path, parse_qs(query), f"/fhir/{path}")[1]
        else:
            prefetch[key] = ehr.read(*path.split("/"))
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient},
        "prefetch": prefetch,
    }


def smart_links(service, ehr) -> list[tuple[str, dict]]:
    cards = requests.post(
        service.url + "/cds-services/calciphylaxis-patient-view", json=patient_view_body(ehr), timeout=10
    ).json()["cards"]
    return [
        (card["rule_id"] if "rule_id" in card else card["summary"], link)
        for card in cards
        for link in card.get("links", [])
    ]


def launch(service, ehr, browser: requests.Session | None = None) -> requests.Response:
    """The clinician clicks the card's smart link: the EHR launches the app in the browser."""
    browser = browser or requests.Session()
    return browser.get(ehr.launch_link(service.url + "/app/launch"), timeout=30)


# --------------------------------------------------------------------------------------------
# The link on the cards
# --------------------------------------------------------------------------------------------


def test_calciphylaxis_cards_carry_the_smart_link_first(service, ehr):
    response = requests.post(
        service.url + "/cds-services/calciphylaxis-patient-view", json=patient_view_body(ehr), timeout=10
    )
    cards = response.json()["cards"]
    assert {c["indicator"] for c in cards} == {"critical", "info"}  # C1 on calcium acetate, M1
    for card in cards:
        link = card["links"][0]
        assert link["type"] == "smart"
        assert link["url"] == service.url + "/app/launch"  # no patient, no token: the EHR adds iss and launch
        assert link["label"].startswith("Trends and reasoning")
        assert all(other["type"] == "absolute" for other in card["links"][1:])


def test_cards_without_calciphylaxis_and_without_the_app_configured_carry_no_smart_link(service, ehr, tmp_path):
    body = patient_view_body(ehr)
    conditions = body["prefetch"]["conditions"]
    conditions["entry"] = [e for e in conditions["entry"] if e["resource"]["id"] != "calciphylaxis"]
    cards = requests.post(service.url + "/cds-services/calciphylaxis-patient-view", json=body, timeout=10).json()[
        "cards"
    ]
    assert cards and not any(link["type"] == "smart" for c in cards for link in c.get("links", []))
    plain = create_app(Settings(feedback_db=tmp_path / "f.sqlite3"), now=lambda: FROZEN_NOW).test_client()
    cards = plain.post("/cds-services/calciphylaxis-patient-view", json=patient_view_body(ehr)).get_json()["cards"]
    assert cards and not any(link["type"] == "smart" for c in cards for link in c.get("links", []))
    assert plain.get("/app/launch?iss=x&launch=y").status_code == 404  # off: no route at all


# --------------------------------------------------------------------------------------------
# The launch, end to end
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def launched(service, ehr):
    ehr.reset()
    started = time.perf_counter()
    response = launch(service, ehr)
    elapsed = time.perf_counter() - started
    return response, elapsed, ehr.seen()


def test_an_ehr_launch_reaches_the_page_through_discovery_authorize_and_token(launched, service, ehr):
    response, elapsed, _ = launched
    assert response.status_code == 200, response.text[:500]
    assert elapsed < 10
    hops = [(h.status_code, urlsplit(h.url).netloc, urlsplit(h.url).path) for h in response.history]
    app, issuer = urlsplit(service.url).netloc, urlsplit(ehr.base_url).netloc
    assert hops == [
        (302, issuer, "/ehr/launch"),
        (302, app, "/app/launch"),
        (302, issuer, "/auth/authorize"),
        (303, app, "/app/callback"),
    ]
    assert urlsplit(response.url).path == "/app/view"
    # The authorisation request: SMART 2.0 with PKCE S256, the launch's aud, read scopes only.
    request = ehr.authorize_requests[-1]
    assert request["response_type"] == "code" and request["client_id"] == CLIENT_ID
    assert request["redirect_uri"] == service.url + "/app/callback"
    assert request["aud"] == ehr.base_url and request["launch"] and request["state"]
    assert request["code_challenge_method"] == "S256" and len(request["code_challenge"]) == 43
    assert request["scope"] == SCOPE
    # The exchange: a public client proving the verifier, never a secret.
    exchange = ehr.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code" and exchange["client_id"] == CLIENT_ID
    assert len(exchange["code_verifier"]) >= 43 and "client_secret" not in exchange


def test_the_scopes_are_read_only_and_only_for_what_the_page_reads():
    scopes = SCOPE.split()
    assert scopes[0] == "launch"
    assert all(re.fullmatch(r"patient/[A-Za-z]+\.rs", s) for s in scopes[1:])
    assert {s.split("/")[1].split(".")[0] for s in scopes[1:]} == set(RESOURCE_TYPES)
    assert set(RESOURCE_TYPES) == {
        "AllergyIntolerance",
        "Condition",
        "Medication",
        "MedicationAdministration",
        "MedicationRequest",
        "MedicationStatement",
        "Observation",
        "Patient",
        "Procedure",
    }


def test_the_app_reads_only_the_launch_patient_with_its_token(launched, ehr):
    _, _, seen = launched
    fhir = [r for r in seen if r.path and not r.path.startswith(("/", ".well-known"))]
    assert fhir, "the page read nothing"
    assert ehr.violations == []
    for r in fhir:
        assert r.headers.get("authorization", "").startswith("Bearer ")
        assert r.method == "GET"
        if "/" in r.path:
            assert r.path == f"Patient/{PATIENT}" or r.path.startswith("Medication/")
        else:
            assert r.query.get("patient") == [PATIENT], r
    assert not any(OTHER_PATIENT in str(r) for r in seen)


def test_the_session_cookie_is_opaque_http_only_lax_and_scoped_to_the_app(launched):
    response, _, _ = launched
    cookies = [h.headers["Set-Cookie"] for h in response.history if "Set-Cookie" in h.headers]
    assert len(cookies) == 2  # the pending launch's, then a new id once authorised (no fixation)
    for header in cookies:
        name, _, rest = header.partition("=")
        value = rest.split(";")[0]
        assert name == "cds_smart_session" and re.fullmatch(r"[A-Za-z0-9_-]{43}", value)
        assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/app" in header
        assert "Secure" not in header  # http on loopback; Secure whenever the app's base URL is https
    first, second = (c.split(";")[0] for c in cookies)
    assert first != second


def test_no_url_carries_the_patient_or_the_token_and_the_page_holds_no_token(launched, ehr):
    response, _, _ = launched
    urls = [h.url for h in response.history] + [response.url]
    tokens = list(ehr.tokens)
    for url in urls:
        assert PATIENT not in url
        assert not any(token in url for token in tokens)
    assert not any(token in response.text for token in tokens)
    view = parse_qs(urlsplit(response.url).query)
    assert set(view) == {"v"} and re.fullmatch(r"[A-Za-z0-9_-]{43}", view["v"][0])


def test_the_page_is_locked_down(launched):
    response, _, _ = launched
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'none'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and re.search(r"style-src 'sha256-[A-Za-z0-9+/=]{44}'", csp)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    dom = parse(response.text)
    assert dom.find_all("script") == [] and dom.find_all("img") == [] and dom.find_all("form") == []
    assert dom.find_all("link") == [] and dom.find_all("iframe") == []
    assert not re.search(r"\sstyle=", response.text), "a style attribute would need 'unsafe-inline'"


def test_the_page_shows_the_charts_the_timeline_and_each_rules_conclusion(launched):
    response, _, _ = launched
    dom = parse(response.text)
    assert dom.find("h1").text() == "Mineral trends and the rules' reasoning"
    assert "Ana Example" in dom.find("p", cls="patient").text()
    points = {f.attrs["data-analyte"]: int(f.attrs["data-points"]) for f in dom.find_all("figure", cls="trend")}
    assert points == {"corrected_calcium": 13, "phosphate": 13, "ca_x_p": 13, "pth": 5, "albumin": 13, "crp": 7}
    for figure in dom.find_all("figure", cls="trend"):
        svg = figure.find("svg")
        assert svg.attrs["role"] == "img"
        title_id, desc_id = svg.attrs["aria-labelledby"].split()
        assert svg.find("title", id=title_id).text() and svg.find("desc", id=desc_id).text()
        assert figure.find("details").find("table")  # the values as text
    calcium = dom.find("figure", data_analyte="corrected_calcium").find("svg")
    assert calcium.find("rect", cls="band") and len(calcium.find_all("line", cls="threshold")) == 2
    assert {g.attrs["data-series"] for g in calcium.find_all("g", cls="series")} == {
        "Corrected calcium",
        "Total calcium",
    }
    assert calcium.find_all("path", cls="pt--high"), "values above target are marked"
    # The latest corrected calcium is the card's: 9.4 mg/dL, albumin-corrected, on 2026-11-16.
    rows = dom.find("figure", data_analyte="corrected_calcium").find("tbody").find_all("tr")
    assert rows[0].text().startswith("2026-11-16 Corrected calcium 9.4 mg/dL in range albumin-corrected")
    # Rule by rule, the same conclusions as the cards.
    conclusions = {li.attrs["data-rule"]: li for li in dom.find_all("li", cls="conclusion")}
    assert list(conclusions) == [
        "m1_mineral_status",
        "c1_calcium_binders",
        "c2_vitamin_k_antagonists",
        "c3_active_vitamin_d",
        "c4_iron",
        "c5_aluminium_binders",
        "c6_calcimimetic_hypocalcaemia",
        "x1_check_incomplete",
    ]
    assert conclusions["c1_calcium_binders"].attrs["data-cards"] == "1"
    assert "Stop calcium acetate" in conclusions["c1_calcium_binders"].text()
    assert conclusions["m1_mineral_status"].attrs["data-cards"] == "1"
    assert "No card" in conclusions["c2_vitamin_k_antagonists"].text()
    cards = dom.find_all("article", cls="card")
    assert [c.attrs["data-rule"] for c in cards] == [
        "C1-calcium-binder-calciphylaxis",
        "M1-mineral-status-calciphylaxis",
    ]
    detail = cards[0].find("div", cls="card__detail").text()
    assert "Where sources disagree" in detail or "Evidence" in detail
    # Medications, thiosulfate, dialysis.
    timeline = dom.find("figure", cls="timeline-figure")
    drugs = [g.attrs["data-drug"] for g in timeline.find("svg").find_all("g", cls="tl-row")]
    assert "calcium acetate 667 MG Oral Tablet" in drugs and "sevelamer carbonate 800 MG Oral Tablet" in drugs
    assert timeline.find_all("rect", data_kind="statement"), "the home list (calcitriol) is drawn"
    assert len(timeline.find_all("path", data_kind="administration")) > 40
    assert "47 doses given in the last 12 months" in dom.find("section", id="thiosulfate").text()
    assert dom.find("p", cls="modality").attrs["data-modality"] == "haemodialysis"


def test_log_lines_carry_no_patient_id_token_code_or_state(launched, logs, ehr):
    response, _, _ = launched
    text = logs.text()
    assert "/app/view" in text and "/app/callback" in text
    secrets = [PATIENT, "Ana", "Example", *ehr.tokens]
    secrets += [
        parse_qs(urlsplit(h.url).query).get(k, [""])[0] for h in response.history for k in ("code", "state", "launch")
    ]
    secrets.append(parse_qs(urlsplit(response.url).query)["v"][0])
    for secret in filter(None, secrets):
        assert secret not in text, f"{secret!r} reached a log line"


# --------------------------------------------------------------------------------------------
# What is refused
# --------------------------------------------------------------------------------------------


def test_an_untrusted_issuer_is_never_contacted(service):
    response = requests.get(
        service.url + "/app/launch", params={"iss": "http://127.0.0.3:9/fhir", "launch": "x"}, timeout=10
    )
    assert response.status_code == 403 and "not trusted" in response.text
    assert "Set-Cookie" not in response.headers


def test_an_open_launch_with_a_patient_id_in_the_address_is_refused(service, ehr):
    response = requests.get(
        service.url + "/app/launch", params={"fhirServiceUrl": ehr.base_url, "patientId": PATIENT}, timeout=10
    )
    assert response.status_code == 400 and "open launch" in response.text
    assert requests.get(service.url + "/app/launch", timeout=10).status_code == 400


def test_the_page_needs_its_session_and_its_own_launch(service, ehr):
    assert requests.get(service.url + "/app/view?v=anything", timeout=10).status_code == 401
    browser = requests.Session()
    first = launch(service, ehr, browser)
    assert first.status_code == 200
    ehr.open_chart(PATIENT)
    second = launch(service, ehr, browser)
    assert second.status_code == 200
    stale = browser.get(first.url, timeout=10)  # the first tab, after a newer launch in this browser
    assert stale.status_code == 409 and "another launch" in stale.text
    ended = browser.get(service.url + "/app/end", timeout=10)
    assert ended.status_code == 200 and "cds_smart_session=;" in ended.headers["Set-Cookie"]
    assert browser.get(second.url, timeout=10).status_code == 401


def pending_launch(service, ehr) -> tuple[requests.Session, str]:
    """A launch stopped at the authorisation redirect: the browser and the EHR's redirect back."""
    browser = requests.Session()
    to_app = browser.get(ehr.launch_link(service.url + "/app/launch"), allow_redirects=False, timeout=10)
    to_ehr = browser.get(to_app.headers["Location"], allow_redirects=False, timeout=10)
    back = browser.get(to_ehr.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302
    return browser, back.headers["Location"]


def test_a_forged_state_and_a_replayed_code_are_refused(service, ehr):
    browser, callback = pending_launch(service, ehr)
    forged = re.sub(r"state=[^&]+", "state=forged", callback)
    assert browser.get(forged, timeout=10).status_code == 400
    assert browser.get(callback, timeout=10).status_code == 200  # a stray answer does not cancel the launch
    replay = requests.Session()
    replay.cookies.update(browser.cookies)
    assert replay.get(callback, timeout=10).status_code == 400  # the code was good once


def test_a_callback_without_the_launch_cookie_is_refused(service, ehr):
    _, callback = pending_launch(service, ehr)
    response = requests.get(callback, timeout=10)  # another browser, or cookies blocked
    assert response.status_code == 400 and "not for an open launch" in response.text


def test_an_ehr_that_refuses_or_gives_no_patient_ends_the_launch_with_a_message(service, ehr):
    ehr.omit_patient = True
    try:
        response = launch(service, ehr)
    finally:
        ehr.omit_patient = False
    assert response.status_code == 502 and "no patient" in response.text
    browser, callback = pending_launch(service, ehr)
    denied = re.sub(r"code=[^&]+", "error=access_denied", callback)
    response = browser.get(denied, timeout=10)
    assert response.status_code == 403 and "access_denied" in response.text


def test_an_ehr_without_pkce_s256_is_refused(tmp_path):
    with SmartTestEhr(calciphylaxis_chart(FROZEN_NOW), pkce_methods=("plain",)) as plain_ehr:
        settings = Settings(
            feedback_db=tmp_path / "f.sqlite3", smart_client_id=CLIENT_ID, smart_issuers=[plain_ehr.base_url]
        )
        with ServiceServer(create_app(settings, now=lambda: FROZEN_NOW)) as server:
            plain_ehr.redirect_uris.add(server.url + "/app/callback")
            response = launch(server, plain_ehr)
    assert response.status_code == 502 and "S256" in response.text
    assert plain_ehr.authorize_requests == []


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


def _session(phase: str, expires: float) -> SmartSession:
    return SmartSession(phase=phase, iss="https://ehr.example.org/fhir", created=0.0, expires=expires)


def test_memory_sessions_expire_and_pending_launches_make_room_first():
    clock = [1000.0]
    store = MemorySessionStore(3, clock=lambda: clock[0])
    store.put("ready-1", _session("ready", 2000.0))
    store.put("pending-1", _session("authorizing", 1600.0))
    store.put("ready-2", _session("ready", 2000.0))
    store.put("ready-3", _session("ready", 2000.0))  # full: the pending launch goes
    assert store.get("pending-1") is None and store.get("ready-1") is not None and len(store) == 3
    clock[0] = 2000.0
    assert store.get("ready-1") is None and len(store) == 0


def test_sessions_shared_through_redis_expire_with_their_session(redis_settings):
    store = RedisSessionStore(redis_settings["redis_url"], prefix=redis_settings["redis_key_prefix"], timeout=1.0)
    now = time.time()
    session = SmartSession(
        phase="ready", iss="https://ehr.example.org/fhir", created=now, expires=now + 30, access_token="t", patient="p"
    )
    store.put("sid", session)
    assert store.get("sid") == session
    assert "sid" not in store.key("sid")  # keys are hashes of the session id
    store.delete("sid")
    assert store.get("sid") is None
    store.close()


def test_two_processes_sharing_redis_share_sessions(redis_settings, tmp_path, ehr):
    """With CDS_REDIS_URL the launch may land on one worker and the callback on another."""
    settings = Settings(
        feedback_db=tmp_path / "f.sqlite3", smart_client_id=CLIENT_ID, smart_issuers=[ehr.base_url], **redis_settings
    )
    with (
        ServiceServer(create_app(settings, now=lambda: FROZEN_NOW)) as one,
        ServiceServer(create_app(settings, now=lambda: FROZEN_NOW)) as two,
    ):
        ehr.redirect_uris.add(one.url + "/app/callback")
        browser = requests.Session()
        to_app = browser.get(ehr.launch_link(one.url + "/app/launch"), allow_redirects=False, timeout=10)
        to_ehr = browser.get(to_app.headers["Location"], allow_redirects=False, timeout=10)
        back = browser.get(to_ehr.headers["Location"], allow_redirects=False, timeout=10)
        callback = back.headers["Location"].replace(one.url, two.url)
        page = browser.get(callback, timeout=30)
    assert page.status_code == 200 and urlsplit(page.url).netloc == urlsplit(two.url).netloc
