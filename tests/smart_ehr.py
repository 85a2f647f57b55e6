"""An EHR on loopback for the SMART app's tests: a SMART authorization server and a FHIR server.

``SmartTestEhr`` is the FHIR test server (``tests/fhir_server.py``) with what an EHR adds:

* ``GET /fhir/.well-known/smart-configuration``: SMART App Launch 2.0 discovery;
* ``GET /ehr/launch?app=<launch URL>``: what the EHR does when a clinician clicks a card's
  ``smart`` link: a launch context for the chart open now (``open_chart``), then a redirect to
  ``<launch URL>?iss=<FHIR base>&launch=<id>`` (no patient id in any URL);
* ``GET /auth/authorize``: checks the request as a strict EHR would (registered client id and
  redirect URI, ``response_type=code``, ``aud`` = the FHIR base, a known launch, ``state``, PKCE
  ``S256`` and only ``launch`` / ``patient/<Type>.rs`` scopes), records it, and, the clinician
  being signed in to the EHR already, approves at once: a redirect with ``code`` and ``state``;
* ``POST /auth/token``: exchanges a code once, for the same client and redirect URI, only with
  the verifier whose S256 is the challenge; answers a bearer token, its scope and the patient;
* the FHIR API answers only with a token it issued, for the types its scopes name and the
  launch's patient only (``Medication`` reads excepted): anything else is a 403, recorded in
  ``violations``. Searches take ``date`` / ``effective-time`` floors (``ge``) as well.

It listens on ``127.0.0.2`` by default, so the app (on 127.0.0.1) and the EHR are different
sites to a browser, as they are in real life: the app's SameSite=Lax cookie must survive the
cross-site redirect back from the authorization server.

``calciphylaxis_chart(now)`` is a patient's year: monthly calcium, albumin and phosphate, PTH
every 3 months, CRP around a calciphylaxis diagnosis, binders, a calcimimetic, calcitriol on the
home list, paricalcitol and sodium thiosulfate given at haemodialysis.

``ServiceServer`` serves the service's Flask app over real HTTP on loopback (werkzeug, threaded).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
from datetime import datetime, timedelta
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

from werkzeug.serving import make_server

from tests.fhir_server import FhirTestServer, _date_of, _Handler, _outcome, _QuietHTTPServer

CLIENT_ID = "calciphylaxis-companion"
PATIENT = "calci-1"
OTHER_PATIENT = "other-2"
_DATE_FLOORS = ("date", "effective-time")


class SmartTestEhr(FhirTestServer):
    def __init__(
        self,
        resources: Any = (),
        *,
        host: str = "127.0.0.2",
        client_id: str = CLIENT_ID,
        pkce_methods: tuple[str, ...] = ("S256",),
    ):
        super().__init__(resources)
        self.host = host
        self.client_id = client_id
        self.pkce_methods = pkce_methods
        self.redirect_uris: set[str] = set()
        self.current_patient = PATIENT
        self.launches: dict[str, str] = {}  # launch id -> patient
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.violations: list[str] = []
        self.omit_patient = False  # a token response without ``patient`` (a misconfigured EHR)

    # -- addresses ---------------------------------------------------------------------------------

    def start(self) -> Self:
        handler = type("SmartEhrHandler", (_SmartHandler,), {"fhir": self})
        httpd = _QuietHTTPServer((self.host, 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="smart-test-ehr", daemon=True
        )
        self._thread.start()
        return self

    def _address(self, path: str) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://{self.host}:{self._httpd.server_address[1]}{path}"

    @property
    def origin(self) -> str:
        return self._address("")

    def launch_link(self, app_url: str) -> str:
        """Where the EHR sends the browser when the clinician clicks a smart link to ``app_url``."""
        return self._address("/ehr/launch?" + urlencode({"app": app_url}))

    def open_chart(self, patient: str) -> None:
        self.current_patient = patient

    def smart_configuration(self) -> dict[str, Any]:
        return {
            "authorization_endpoint": self._address("/auth/authorize"),
            "token_endpoint": self._address("/auth/token"),
            "token_endpoint_auth_methods_supported": ["none"],
            "grant_types_supported": ["authorization_code"],
            "scopes_supported": ["launch", "openid", "fhirUser", "patient/*.rs"],
            "response_types_supported": ["code"],
            "capabilities": ["launch-ehr", "client-public", "context-ehr-patient", "permission-v2"],
            "code_challenge_methods_supported": list(self.pkce_methods),
        }

    # -- FHIR searches with date floors --------------------------------------------------------

    def search(self, resource_type: str, query: dict[str, list[str]], url_path: str) -> tuple[int, dict]:
        floors = {name: query[name] for name in _DATE_FLOORS if name in query}
        rest = {name: values for name, values in query.items() if name not in floors}
        status, bundle = super().search(resource_type, rest, url_path)
        if status != 200 or not floors:
            return status, bundle
        for values in floors.values():
            for value in values:
                if not value.startswith("ge"):
                    return 400, _outcome("only ge date floors are supported here")
                floor = value[2:]
                bundle["entry"] = [e for e in bundle["entry"] if _date_of(e["resource"])[: len(floor)] >= floor]
        bundle["total"] = len(bundle["entry"])
        return status, bundle

    # -- authorization ---------------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        """(302, Location) or (400, nothing): the EHR's decision on an authorisation request."""
        self.authorize_requests.append(dict(query))
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            return 400, {}

        def refuse(error: str) -> tuple[int, dict[str, str]]:
            params = {"error": error, "state": query.get("state", "")}
            return 302, {"Location": f"{redirect_uri}?{urlencode(params)}"}

        scopes = query.get("scope", "").split()
        allowed = all(s == "launch" or (s.startswith("patient/") and s.endswith(".rs")) for s in scopes)
        if query.get("response_type") != "code" or not query.get("state"):
            return refuse("invalid_request")
        if not scopes or not allowed:
            return refuse("invalid_scope")
        if query.get("aud") != self.base_url:
            return refuse("invalid_request")
        if query.get("code_challenge_method") not in self.pkce_methods or len(query.get("code_challenge", "")) < 43:
            return refuse("invalid_request")
        patient = self.launches.pop(query.get("launch", ""), None)
        if patient is None:
            return refuse("access_denied")
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "challenge": query["code_challenge"],
            "patient": patient,
            "scope": " ".join(scopes),
        }
        return 302, {"Location": f"{redirect_uri}?{urlencode({'code': code, 'state': query['state']})}"}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(dict(form))
        grant = self.codes.pop(form.get("code", ""), None)  # a code is good once
        if form.get("grant_type") != "authorization_code" or grant is None:
            return 400, {"error": "invalid_grant"}
        if form.get("client_id") != grant["client_id"] or form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if not verifier or challenge != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        access_token = secrets.token_urlsafe(32)
        self.tokens[access_token] = {"patient": grant["patient"], "scope": grant["scope"]}
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": grant["scope"],
            "need_patient_banner": True,
        }
        if not self.omit_patient:
            body["patient"] = grant["patient"]
        return 200, body

    def permits(self, authorization: str | None, relative: str, query: dict[str, list[str]]) -> str | None:
        """``None`` when the token may read this; else why not (recorded as a violation)."""
        scheme, _, token = (authorization or "").partition(" ")
        grant = self.tokens.get(token) if scheme == "Bearer" else None
        if grant is None:
            return "no valid token"
        segments = relative.split("/")
        resource_type = segments[0]
        if f"patient/{resource_type}.rs" not in grant["scope"].split():
            return f"{resource_type} is outside the token's scopes"
        if resource_type == "Medication":
            return None
        if len(segments) == 2:
            if resource_type == "Patient" and segments[1] == grant["patient"]:
                return None
            return f"read of {relative} outside the launch's patient"
        wanted = (query.get("patient") or query.get("subject") or [""])[0].removeprefix("Patient/")
        if wanted != grant["patient"]:
            return f"search of {resource_type} for another patient than the launch's"
        return None


class _SmartHandler(_Handler):
    fhir: SmartTestEhr

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        ehr = self.fhir
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if parts.path == ehr.base_path + "/.well-known/smart-configuration":
            return self._json(200, ehr.smart_configuration())
        if parts.path == "/ehr/launch":
            launch = secrets.token_urlsafe(16)
            ehr.launches[launch] = ehr.current_patient
            app = query.get("app", "")
            joiner = "&" if "?" in app else "?"
            return self._redirect(f"{app}{joiner}{urlencode({'iss': ehr.base_url, 'launch': launch})}")
        if parts.path == "/auth/authorize":
            status, headers = ehr.authorize(query)
            if status == 302:
                return self._redirect(headers["Location"])
            return self._json(400, {"error": "invalid_request"})
        if parts.path.startswith(ehr.base_path + "/"):
            relative = parts.path[len(ehr.base_path) :].strip("/")
            problem = ehr.permits(self.headers.get("Authorization"), relative, parse_qs(parts.query))
            if problem is not None:
                with ehr._lock:
                    ehr.violations.append(problem)
                return self._send(403 if problem != "no valid token" else 401, _outcome(problem))
        return super().do_GET()

    def do_POST(self) -> None:
        ehr = self.fhir
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        if urlsplit(self.path).path != "/auth/token":
            return self._json(404, {"error": "not found"})
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        status, answer = ehr.token(form)
        return self._json(status, answer)


class ServiceServer:
    """The service's app over HTTP on loopback, in a thread, for one test module."""

    def __init__(self, app: Any, host: str = "127.0.0.1"):
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # its access log would print query strings
        self._server = make_server(host, 0, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="service-under-test", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# A calciphylaxis patient's year
# --------------------------------------------------------------------------------------------

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _observation(rid: str, patient: str, loinc: str, display: str, when: datetime, value: float, unit: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": _stamp(when),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def _condition(rid: str, patient: str, code: str, display: str, recorded: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient}"},
        "recordedDate": recorded,
    }


def _medication(code: str | None, display: str) -> dict:
    concept: dict[str, Any] = {"text": display}
    if code:
        concept["coding"] = [{"system": RXNORM, "code": code, "display": display}]
    return concept


def _order(
    rid: str, patient: str, code: str, display: str, status: str, start: datetime, end: datetime | None, text: str
) -> dict:
    bounds: dict[str, str] = {"start": start.date().isoformat()}
    if end is not None:
        bounds["end"] = end.date().isoformat()
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "authoredOn": start.date().isoformat(),
        "medicationCodeableConcept": _medication(code, display),
        "dosageInstruction": [{"text": text, "timing": {"repeat": {"boundsPeriod": bounds}}}],
    }


def _given(rid: str, patient: str, code: str | None, display: str, when: datetime, dose: float, unit: str) -> dict:
    return {
        "resourceType": "MedicationAdministration",
        "id": rid,
        "status": "completed",
        "medicationCodeableConcept": _medication(code, display),
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": _stamp(when),
        "dosage": {
            "route": {"text": "intravenous"},
            "text": "into the venous line at the end of dialysis",
            "dose": {"value": dose, "unit": unit},
        },
    }


def _dialysis_days(first: datetime, last: datetime) -> list[datetime]:
    """Monday, Wednesday and Friday sessions from ``first`` to ``last`` (at 17:00 UTC)."""
    day = first.replace(hour=17, minute=0, second=0, microsecond=0)
    out = []
    while day <= last:
        if day.weekday() in (0, 2, 4):
            out.append(day)
        day += timedelta(days=1)
    return out


CALCIUM = [9.0, 9.2, 9.4, 9.6, 9.9, 10.1, 10.3, 10.5, 10.2, 9.9, 9.6, 9.3, 9.1]
ALBUMIN = [3.8, 3.8, 3.7, 3.7, 3.6, 3.6, 3.5, 3.4, 3.4, 3.3, 3.4, 3.5, 3.6]
PHOSPHATE = [5.0, 5.4, 5.8, 6.3, 6.8, 7.2, 7.6, 7.0, 6.5, 6.1, 5.8, 5.6, 5.3]
PTH = [420.0, 260.0, 180.0, 130.0, 110.0]  # every 3 months, oldest first


def calciphylaxis_chart(now: datetime, patient: str = PATIENT) -> list[dict[str, Any]]:
    """One calciphylaxis patient on haemodialysis over the year before ``now`` (oldest first
    where it matters), and a little of another patient's chart the app must never read."""
    day0 = now - timedelta(days=5)  # the latest draw
    diagnosed = now - timedelta(days=112)
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": patient,
            "gender": "female",
            "birthDate": "1958-03-14",
            "name": [{"family": "Example", "given": ["Ana"]}],
        },
        _condition("calciphylaxis", patient, "237900002", "Calciphylaxis", diagnosed.date().isoformat()),
        _condition("esrd", patient, "46177005", "End-stage renal disease", "2024-03-01"),
        _condition("hd-dependence", patient, "443143006", "Dependence on hemodialysis", "2024-03-01"),
        {
            "resourceType": "AllergyIntolerance",
            "id": "nkda",
            "patient": {"reference": f"Patient/{patient}"},
            "code": {"text": "No known drug allergy"},
            "verificationStatus": {"coding": [{"code": "refuted"}]},
        },
    ]
    for k in range(13):  # monthly, oldest first
        when = day0 - timedelta(days=30 * (12 - k)) + timedelta(hours=8, minutes=30) - timedelta(hours=day0.hour)
        resources.append(_observation(f"ca-{k}", patient, "17861-6", "Calcium", when, CALCIUM[k], "mg/dL"))
        resources.append(_observation(f"alb-{k}", patient, "1751-7", "Albumin", when, ALBUMIN[k], "g/dL"))
        resources.append(_observation(f"phos-{k}", patient, "2777-1", "Phosphate", when, PHOSPHATE[k], "mg/dL"))
        if k % 3 == 0:
            resources.append(_observation(f"pth-{k}", patient, "2731-8", "PTH intact", when, PTH[k // 3], "pg/mL"))
    for n, (days_ago, value) in enumerate(
        ((360, 3.0), (270, 4.0), (180, 5.0), (110, 38.0), (80, 52.0), (47, 30.0), (5, 18.0))
    ):
        when = now - timedelta(days=days_ago, hours=3)
        resources.append(_observation(f"crp-{n}", patient, "1988-5", "C reactive protein", when, value, "mg/L"))
    resources += [
        _order(
            "rx-caco3",
            patient,
            "282465",
            "calcium carbonate 1250 MG Oral Tablet",
            "stopped",
            now - timedelta(days=420),
            diagnosed + timedelta(days=1),
            "1 tablet three times daily with meals",
        ),
        _order(
            "rx-caac",
            patient,
            "197433",
            "calcium acetate 667 MG Oral Tablet",
            "active",
            now - timedelta(days=300),
            None,
            "1 tablet three times daily with meals",
        ),
        _order(
            "rx-cina",
            patient,
            "432402",
            "cinacalcet 30 MG Oral Tablet",
            "stopped",
            now - timedelta(days=265),
            now - timedelta(days=159),
            "30 mg once daily",
        ),
        _order(
            "rx-sev",
            patient,
            "749206",
            "sevelamer carbonate 800 MG Oral Tablet",
            "active",
            diagnosed + timedelta(days=1),
            None,
            "1 tablet three times daily with meals",
        ),
        _order(
            "rx-sts",
            patient,
            "237832",
            "50 ML sodium thiosulfate 250 MG/ML Injection",
            "active",
            diagnosed + timedelta(days=2),
            None,
            "25 g IV in the last hour of each haemodialysis",
        ),
        {
            "resourceType": "MedicationStatement",
            "id": "ms-calcitriol",
            "status": "completed",
            "subject": {"reference": f"Patient/{patient}"},
            "medicationCodeableConcept": _medication("308867", "calcitriol 0.00025 MG Oral Capsule"),
            "effectivePeriod": {
                "start": (now - timedelta(days=440)).date().isoformat(),
                "end": (diagnosed + timedelta(days=4)).date().isoformat(),
            },
            "dateAsserted": (now - timedelta(days=440)).date().isoformat(),
        },
    ]
    paricalcitol = _dialysis_days(now - timedelta(days=200), diagnosed - timedelta(days=1))
    resources += [
        _given(f"adm-pari-{n}", patient, None, "Zemplar (paricalcitol) 5 mcg/mL inj 2 mcg IV", when, 2, "ug")
        for n, when in enumerate(paricalcitol)
    ]
    sessions = _dialysis_days(diagnosed + timedelta(days=2), now - timedelta(days=1))
    resources += [
        _given(f"adm-sts-{n}", patient, "237832", "50 ML sodium thiosulfate 250 MG/ML Injection", when, 25, "g")
        for n, when in enumerate(sessions)
    ]
    # Another patient, never to be read by a session launched for ``patient``.
    resources += [
        {"resourceType": "Patient", "id": OTHER_PATIENT, "name": [{"family": "Other", "given": ["Ola"]}]},
        _observation("other-ca", OTHER_PATIENT, "17861-6", "Calcium", day0, 12.9, "mg/dL"),
        _condition("other-calciphylaxis", OTHER_PATIENT, "237900002", "Calciphylaxis", "2026-01-01"),
    ]
    return resources
