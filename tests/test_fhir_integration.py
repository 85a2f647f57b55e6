"""End to end over real HTTP: a hook call with no prefetch against a loopback FHIR server gives the
same cards as the same call with full prefetch, and the server saw the bearer token."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import requests

from cds_service.config import Settings
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.fhir.templates import fill_template
from cds_service.http.app import create_app
from cds_service.protocol import CDSRequest
from cds_service.services import PREFETCH_KEYS
from tests.conftest import FROZEN_NOW, without_uuids
from tests.fhir_server import FhirTestServer

TOKEN = "loopback-access-token-42"
PATIENT = "calci-1"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
THO = "http://terminology.hl7.org/CodeSystem"
PATIENT_VIEW = "/cds-services/calciphylaxis-patient-view"


# --- a dialysis patient with calciphylaxis on a calcium-based binder, and a bystander ----------


def _when(days_ago: int) -> str:
    return (FROZEN_NOW - timedelta(days=days_ago)).isoformat()


def _condition(cid, codings, text, patient=PATIENT):
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"system": f"{THO}/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": f"{THO}/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": codings, "text": text},
        "subject": {"reference": f"Patient/{patient}"},
        "recordedDate": _when(60),
    }


def _med_request(mid, status="active", **medication):
    return {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": _when(30),
        **medication,
    }


def _observation(oid, code, value, unit, days_ago):
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": _when(days_ago),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def patient_resources() -> list[dict]:
    return [
        {"resourceType": "Patient", "id": PATIENT, "gender": "female", "birthDate": "1958-03-02"},
        _condition(
            "esrd",
            [{"system": SNOMED, "code": "236435004", "display": "End stage renal failure on dialysis"}],
            "End stage renal failure on dialysis",
        ),
        _condition(
            "calci",
            [
                {"system": SNOMED, "code": "237900002", "display": "Calciphylaxis"},
                {"system": ICD10CM, "code": "E83.59", "display": "Other disorders of calcium metabolism"},
            ],
            "Calciphylaxis",
        ),
        _condition("htn", [], "Essential hypertension"),
        _condition("other-calci", [{"system": SNOMED, "code": "237900002"}], "Calciphylaxis", patient="someone-else"),
        _med_request(
            "binder",
            medicationCodeableConcept={
                "coding": [{"system": RXNORM, "code": "359296", "display": "calcium acetate 667 MG Oral Capsule"}],
                "text": "calcium acetate 667 mg capsule",
            },
        ),
        # A Medication referenced, not inlined: the no-prefetch path has to read it.
        _med_request("vka", medicationReference={"reference": "Medication/warfarin-5"}),
        {
            "resourceType": "Medication",
            "id": "warfarin-5",
            "code": {"coding": [{"system": RXNORM, "code": "855332", "display": "warfarin sodium 5 MG Oral Tablet"}]},
        },
        _med_request(
            "old-sevelamer",
            status="stopped",
            medicationCodeableConcept={
                "coding": [{"system": RXNORM, "code": "749206", "display": "sevelamer carbonate 800 MG Oral Tablet"}]
            },
        ),
        _observation("ca-new", "17861-6", 10.6, "mg/dL", 3),
        _observation("ca-old", "17861-6", 9.1, "mg/dL", 40),
        _observation("alb", "1751-7", 3.4, "g/dL", 3),
        _observation("phos", "2777-1", 6.3, "mg/dL", 3),
        _observation("pth", "2731-8", 420, "pg/mL", 20),
        _observation("egfr", "98979-8", 8, "mL/min/{1.73_m2}", 3),
        {
            "resourceType": "Procedure",
            "id": "hd-1",
            "status": "completed",
            "code": {"coding": [{"system": SNOMED, "code": "302497006", "display": "Hemodialysis"}]},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "performedDateTime": _when(2),
        },
    ]


# --- harness ----------------------------------------------------------------------------------


@pytest.fixture
def fhir():
    # Two results per page, so conditions arrive over two pages and paging is exercised.
    with FhirTestServer(patient_resources(), max_page_size=2, require_token=TOKEN) as server:
        yield server


def settings_for(tmp_path, server: FhirTestServer, **overrides) -> Settings:
    options = dict(
        feedback_db=tmp_path / "feedback.sqlite3",
        fhir_allowed_servers=[server.base_url],
        fhir_deadline=5.0,
        fhir_read_timeout=5.0,
        fhir_connect_timeout=5.0,
    )
    options.update(overrides)
    return Settings(**options)


def hook_call(server: FhirTestServer, prefetch: dict | None = None) -> dict:
    body = {
        "hook": "patient-view",
        "hookInstance": "2f6d1c8e-2b1c-4c0e-9a59-0c1a3f0e9b21",
        "fhirServer": server.base_url,
        "fhirAuthorization": {
            "access_token": TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Condition.read user/MedicationRequest.read user/Observation.read",
            "subject": "calciphylaxis-cds",
            "patient": PATIENT,
        },
        "context": {"userId": "Practitioner/nephro-1", "patientId": PATIENT},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def full_prefetch(server: FhirTestServer) -> dict:
    """What an EHR honouring every template would send: each filled template's complete result."""
    saved, server.max_page_size = server.max_page_size, None
    try:
        context = {"patientId": PATIENT, "userId": "Practitioner/nephro-1"}
        return {
            key: requests.get(
                f"{server.base_url}/{fill_template(template, context)}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=5,
            ).json()
            for key, template in ((k, v.template) for k, v in PREFETCH_KEYS.items())
        }
    finally:
        server.max_page_size = saved
        server.reset()


def cards_of(response) -> list[dict]:
    assert response.status_code == 200, response.get_json()
    return without_uuids(response.get_json()["cards"])


# --- the tests --------------------------------------------------------------------------------


def test_no_prefetch_gives_the_same_cards_as_full_prefetch_and_the_server_saw_the_token(tmp_path, fhir):
    client = create_app(settings_for(tmp_path, fhir), now=lambda: FROZEN_NOW).test_client()
    prefetch = full_prefetch(fhir)

    with_prefetch = cards_of(client.post(PATIENT_VIEW, json=hook_call(fhir, prefetch)))
    # With everything prefetched, the only call is the read of the referenced Medication.
    assert [seen.path for seen in fhir.seen()] == ["Medication/warfarin-5"]
    fhir.reset()

    without_prefetch = cards_of(client.post(PATIENT_VIEW, json=hook_call(fhir)))
    seen = fhir.seen()
    assert {s.resource_type for s in seen} == {
        "Patient",
        "Condition",
        "MedicationRequest",
        "Observation",
        "Medication",
        "Procedure",
        "MedicationStatement",
        "MedicationAdministration",
        "AllergyIntolerance",
    }
    assert sum(1 for s in seen if s.resource_type == "Condition") == 2  # both pages
    assert all(s.headers.get("authorization") == f"Bearer {TOKEN}" for s in seen)
    assert all(s.headers.get("accept") == "application/fhir+json" for s in seen)

    assert without_prefetch, "the engine returned no cards for a calciphylaxis patient on a calcium binder"
    assert without_prefetch == with_prefetch


def test_the_resolver_returns_the_same_data_fetched_as_prefetched(tmp_path, fhir):
    resolver = PrefetchResolver(settings_for(tmp_path, fhir))
    try:
        prefetch = full_prefetch(fhir)
        fetched = resolver.resolve(CDSRequest.model_validate(hook_call(fhir)), PREFETCH_KEYS)
        sent = resolver.resolve(CDSRequest.model_validate(hook_call(fhir, prefetch)), PREFETCH_KEYS)
    finally:
        resolver.close()
    assert fetched.unavailable == sent.unavailable == {}
    assert fetched.incomplete == sent.incomplete == {}

    def ids(data, key):
        value = data[key]
        if value.get("resourceType") != "Bundle":
            return [value["id"]]
        return [e["resource"]["id"] for e in value["entry"]]

    for key in PREFETCH_KEYS:
        assert ids(fetched.data, key) == ids(sent.data, key), key
    assert ids(fetched.data, "conditions") == ["esrd", "calci", "htn"]  # only this patient's, all pages
    assert ids(fetched.data, "meds") == ["binder", "vka", "warfarin-5"]  # stopped excluded; Medication read
    assert ids(fetched.data, "calcium") == ["ca-new", "ca-old"]  # newest first


def test_concurrent_hook_calls_share_the_resolver_safely(tmp_path, fhir):
    app = create_app(settings_for(tmp_path, fhir), now=lambda: FROZEN_NOW)
    expected = cards_of(app.test_client().post(PATIENT_VIEW, json=hook_call(fhir)))

    def one_call(_):
        return cards_of(app.test_client().post(PATIENT_VIEW, json=hook_call(fhir)))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one_call, range(16)))
    assert all(result == expected for result in results)


def test_a_loopback_server_that_is_not_on_the_allow_list_is_never_contacted(tmp_path, fhir):
    other = fhir.base_url.rsplit(":", 1)[0] + ":1/fhir"  # same host, another port
    client = create_app(
        settings_for(tmp_path, fhir, fhir_allowed_servers=[other]), now=lambda: FROZEN_NOW
    ).test_client()
    response = client.post(PATIENT_VIEW, json=hook_call(fhir))
    assert response.status_code == 412
    assert fhir.seen() == []
    assert "FHIR server not trusted" in response.get_json()["issue"][0]["diagnostics"]


def test_a_slow_server_costs_at_most_the_deadline_and_says_timed_out(tmp_path, fhir):
    fhir.delay = 2.0
    settings = settings_for(tmp_path, fhir, fhir_deadline=0.2, fhir_read_timeout=5.0)
    resolver = PrefetchResolver(settings)
    try:
        request = CDSRequest.model_validate({**hook_call(fhir), "hook": "order-sign"})
        resolved = resolver.resolve(request, PREFETCH_KEYS)
    finally:
        resolver.close()
    assert resolved.unavailable == dict.fromkeys(PREFETCH_KEYS, "timed out")


def test_a_wrong_token_is_reported_as_the_servers_answer(tmp_path, fhir):
    client = create_app(settings_for(tmp_path, fhir), now=lambda: FROZEN_NOW).test_client()
    body = hook_call(fhir)
    body["fhirAuthorization"]["access_token"] = "expired-token"
    response = client.post(PATIENT_VIEW, json=body)
    assert response.status_code == 412
    message = response.get_json()["issue"][0]["diagnostics"]
    assert "conditions (FHIR server answered 401)" in message
    assert "expired-token" not in response.get_data(as_text=True)


def test_the_test_server_rejects_search_parameters_it_does_not_know(fhir):
    query = urlencode({"patient": PATIENT, "_include": "MedicationRequest:medication"})
    response = requests.get(
        f"{fhir.base_url}/MedicationRequest?{query}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert response.status_code == 400
