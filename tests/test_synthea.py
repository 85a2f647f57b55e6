"""Real-shaped patients: the Synthea R4 bundles in ../shared/fhir-data (skipped when absent).

The bundles are Synthea transaction bundles (urn:uuid references, hundreds of unrelated
resources). A request is built the way an EHR would fill our prefetch templates: each key gets
the patient's resources its query would return. Untouched, none of these patients is in scope,
so they must get no warning; with dialysis, calciphylaxis and mineral labs added in code, the
expected cards appear.
"""

from __future__ import annotations

import copy
import json
import uuid
from functools import cache

import pytest

from cds_service.patient.terminology import LAB_LOINC
from tests.conftest import FHIR_DATA, skip_without_shared

BUNDLES = FHIR_DATA / "synthea-r4-bundles"
BUNDLE_NAMES = [
    "Dirk_Kuhlman_1e503533-b8c2-42cb-a6d5-bbd7d70d07ad.json",
    "Isaiah_Schaden_b6b36717-6ad2-433d-bf5c-6c77bc2fcd96.json",
    "Marcos_Delagarza_4acb6705-25a7-430a-b799-a4ad8d7fbb38.json",
]
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LAB_KEYS = {
    "calcium": ("calcium", "ionized_calcium", "corrected_calcium"),
    "albumin": ("albumin",),
    "phosphate": ("phosphate",),
    "pth": ("pth",),
    "egfr": ("egfr",),
    "weight": ("body_weight",),
}


@cache
def _bundle_text(name: str) -> str:
    path = BUNDLES / name
    skip_without_shared(path, "Synthea bundles")
    return path.read_text(encoding="utf-8")


def load_resources(name: str) -> list[dict]:
    return [entry["resource"] for entry in json.loads(_bundle_text(name))["entry"]]


def searchset(resources: list[dict]) -> dict | None:
    if not resources:
        return None
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def _loinc_codes(resource: dict) -> set[str]:
    return {c.get("code") for c in resource.get("code", {}).get("coding", []) if "loinc" in c.get("system", "")}


def prefetch_for(resources: list[dict]) -> dict:
    """What an EHR would return for each of our prefetch templates."""
    by_type: dict[str, list[dict]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    prefetch = {
        "patient": by_type["Patient"][0],
        "conditions": searchset(by_type.get("Condition", [])),
        "meds": searchset(
            [m for m in by_type.get("MedicationRequest", []) if m.get("status") in ("active", "on-hold")]
        ),
        "allergies": searchset(by_type.get("AllergyIntolerance", [])),
    }
    for key, analytes in LAB_KEYS.items():
        codes = set().union(*(LAB_LOINC[a] for a in analytes))
        matches = [o for o in by_type.get("Observation", []) if _loinc_codes(o) & codes]
        matches.sort(key=lambda o: o.get("effectiveDateTime", ""), reverse=True)
        prefetch[key] = searchset(matches[:10])
    return prefetch


def hook_request(hook: str, resources: list[dict], drafts: list[dict] = ()) -> dict:
    patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    context = {"userId": "Practitioner/synthea-1", "patientId": patient_id}
    if hook != "patient-view":
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        }
        if hook == "order-select":
            context["selections"] = [f"MedicationRequest/{d['id']}" for d in drafts]
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, "prefetch": prefetch_for(resources)}


def draft(patient_id: str, code: str, display: str, rid: str = "draft-1") -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": display}],
            "text": display,
        },
    }


def post(client, body: dict) -> list[dict]:
    response = client.post(f"/cds-services/calciphylaxis-{body['hook']}", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["cards"]


# --- untouched patients: no warnings -----------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLE_NAMES, ids=lambda n: n.split("_")[0])
def test_untouched_synthea_patient_gets_no_card_on_patient_view(client, name):
    assert post(client, hook_request("patient-view", load_resources(name))) == []


@pytest.mark.parametrize("name", BUNDLE_NAMES, ids=lambda n: n.split("_")[0])
def test_untouched_synthea_patient_gets_no_card_for_a_benign_drug_or_even_a_calcium_binder(client, name):
    resources = load_resources(name)
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    benign = draft(pid, "1364445", "apixaban 5 MG Oral Tablet")  # a drug the service does not monitor
    assert post(client, hook_request("order-select", resources, [benign])) == []
    # Not in scope (no kidney failure, no calciphylaxis): even a calcium binder is silent.
    binder = draft(pid, "197433", "calcium acetate 667 MG Oral Tablet", rid="draft-2")
    assert post(client, hook_request("order-sign", resources, [benign, binder])) == []


# --- the same patient with calciphylaxis on dialysis ------------------------------------------


def _condition(pid: str, code: str, display: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": str(uuid.uuid4()),
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}], "text": display},
        "subject": {"reference": f"urn:uuid:{pid}"},
        "recordedDate": "2026-10-01",
    }


def _observation(pid: str, loinc: str, value: float, unit: str, when: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": f"urn:uuid:{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def with_calciphylaxis_on_dialysis(name: str) -> tuple[list[dict], str]:
    resources = copy.deepcopy(load_resources(name))
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    resources += [
        _condition(pid, "46177005", "End-stage renal disease"),
        _condition(pid, "237900002", "Calciphylaxis"),
        _condition(pid, "49436004", "Atrial fibrillation"),
        _observation(pid, "17861-6", 9.9, "mg/dL", "2026-11-17T09:00:00Z"),
        _observation(pid, "1751-7", 3.5, "g/dL", "2026-11-17T09:00:00Z"),
        _observation(pid, "2777-1", 6.1, "mg/dL", "2026-11-17T09:00:00Z"),
        _observation(pid, "2731-8", 340, "pg/mL", "2026-11-02T09:00:00Z"),
        # Dry weight at dialysis: 58 kg, so apixaban is the US label's reduced dose whatever the age.
        _observation(pid, "29463-7", 58, "kg", "2026-11-19T09:00:00Z"),
        {
            "resourceType": "MedicationRequest",
            "id": "synthea-warfarin",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"urn:uuid:{pid}"},
            "medicationCodeableConcept": {
                "coding": [{"system": RXNORM, "code": "855332", "display": "warfarin sodium 5 MG Oral Tablet"}]
            },
        },
    ]
    return resources, pid


def test_synthea_patient_with_calciphylaxis_on_dialysis_gets_the_calcium_binder_card(client):
    resources, pid = with_calciphylaxis_on_dialysis(BUNDLE_NAMES[0])
    body = hook_request("order-select", resources, [draft(pid, "197433", "calcium acetate 667 MG Oral Tablet")])
    (card,) = post(client, body)
    assert card["indicator"] == "critical" and "calcium acetate" in card["summary"]
    assert "`C1-calcium-binder-calciphylaxis`" in card["detail"]
    assert "Corrected calcium: 10.3 mg/dL on 2026-11-17" in card["detail"]
    first = card["suggestions"][0]["actions"]
    assert first[0]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "749206"
    assert first[1] == {
        "type": "delete",
        "description": first[1]["description"],
        "resourceId": "MedicationRequest/draft-1",
    }


def test_synthea_patient_with_calciphylaxis_on_dialysis_gets_mineral_and_warfarin_cards_on_chart_open(client):
    resources, pid = with_calciphylaxis_on_dialysis(BUNDLE_NAMES[0])
    warfarin, summary = post(client, hook_request("patient-view", resources))  # critical first
    assert "`M1-mineral-status-calciphylaxis`" in summary["detail"]
    assert "| Phosphate | 6.1 mg/dL on 2026-11-17" in summary["detail"]
    assert warfarin["indicator"] == "critical" and "warfarin" in warfarin["summary"]
    create, stop = warfarin["suggestions"][0]["actions"]
    assert create["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "1364435"  # 2.5 mg: 58 kg
    assert stop["type"] == "update" and stop["resource"]["id"] == "synthea-warfarin"
    assert stop["resource"]["status"] == "stopped"
