"""Synthetic but realistic CDS Hooks requests for the benchmarks.

A dialysis patient with calciphylaxis (so the checks do real work and cards come back), with the
number of Observations scaled: typical (~60 Observations, 15 MedicationRequests, 8 Conditions,
about 0.05 MB), large (1,000 Observations, 0.6 MB) and huge (10,000 Observations, 6 MB); any other
count works too (bench.run sends from 10 up to 100,000 Observations, the last about 60 MB).

`chart` numbers patients: chart 0 is the one patient every repeated call sends; any other number
is another patient, whose resources all differ from chart 0's (a chart the service has not seen).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

PATIENT_ID = "bench-patient-1"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"

SIZES = {"typical": 60, "large": 1_000, "huge": 10_000}

# (prefetch key, LOINC, UCUM unit, typical value) - codes from terminology.md section 2
_LABS = [
    ("calcium", "17861-6", "mg/dL", 9.6),
    ("albumin", "1751-7", "g/dL", 3.4),
    ("phosphate", "2777-1", "mg/dL", 6.1),
    ("pth", "2731-8", "pg/mL", 420.0),
    ("egfr", "98979-8", "mL/min/{1.73_m2}", 9.0),
]
# Observations no check reads (urea nitrogen, as in the Synthea bundles): the engine must skip them cheaply.
_NOISE = ("6299-2", "mg/dL", 48.0)

_MEDS = [  # RxNorm SCDs from terminology.md 1b: a dialysis patient's usual list
    ("1364435", "apixaban 2.5 MG Oral Tablet"),
    ("749206", "sevelamer carbonate 800 MG Oral Tablet"),
    ("432402", "cinacalcet 30 MG Oral Tablet"),
    ("198741", "magnesium oxide 400 MG Oral Tablet"),
    ("199362", "cholecalciferol 0.025 MG Oral Tablet"),
]


def _bundle(resources: list[dict]) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def _observation(i: int, code: str, unit: str, value: float, when: datetime, patient: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs-{i}",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": LOINC, "code": code}], "text": code},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when.isoformat(),
        "issued": when.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def _conditions(patient: str) -> list[dict]:
    def condition(i, system, code, display, status="active"):
        return {
            "resourceType": "Condition",
            "id": f"cond-{i}",
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
            },
            "verificationStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
                ]
            },
            "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{patient}"},
            "recordedDate": "2026-09-01",
        }

    return [
        condition(1, SNOMED, "236435004", "End stage renal failure on dialysis"),
        condition(2, ICD10, "E83.59", "Calciphylaxis"),
        condition(3, SNOMED, "49436004", "Atrial fibrillation"),
        condition(4, ICD10, "N25.81", "Secondary hyperparathyroidism of renal origin"),
        condition(5, ICD10, "Z99.2", "Dependence on renal dialysis"),
        condition(6, SNOMED, "44054006", "Diabetes mellitus type 2", "active"),
        condition(7, SNOMED, "38341003", "Hypertensive disorder", "active"),
        condition(8, SNOMED, "195967001", "Asthma", "resolved"),
    ]


def _medications(patient: str, count: int = 15) -> list[dict]:
    meds = []
    for i in range(count):
        code, name = _MEDS[i % len(_MEDS)]
        meds.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"med-{i}",
                "status": "active" if i < len(_MEDS) else "completed",
                "intent": "order",
                "medicationCodeableConcept": {
                    "coding": [{"system": RXNORM, "code": code, "display": name}],
                    "text": name,
                },
                "subject": {"reference": f"Patient/{patient}"},
                "authoredOn": "2026-08-01",
            }
        )
    return meds


def patient_id(chart: int = 0) -> str:
    """Chart 0 is the one patient every benchmark repeats; other numbers are other patients,
    whose resources all differ from it (a chart the service has not seen before)."""
    return PATIENT_ID if chart == 0 else f"bench-patient-{chart + 1}"


def prefetch(observations: int, now: datetime, chart: int = 0) -> dict:
    """Prefetch with `observations` Observations spread over the lab keys, newest first per key."""
    patient = patient_id(chart)
    rng = random.Random(observations)
    by_key: dict[str, list[dict]] = {key: [] for key, *_ in _LABS}
    for i in range(observations):
        when = now - timedelta(days=i // len(_LABS) * 3 + 1, hours=rng.randint(0, 12))
        if i % 6 == 5:
            code, unit, value = _NOISE
            key = "calcium"  # a search that over-returns: the engine must ignore these by code
        else:
            key, code, unit, value = _LABS[i % len(_LABS)]
        by_key[key].append(_observation(i, code, unit, round(value * rng.uniform(0.9, 1.1), 2), when, patient))
    data = {key: _bundle(resources) for key, resources in by_key.items()}
    data["patient"] = {"resourceType": "Patient", "id": patient, "gender": "female", "birthDate": "1958-03-02"}
    data["conditions"] = _bundle(_conditions(patient))
    data["meds"] = _bundle(_medications(patient))
    return data


def order_select(observations: int, now: datetime | None = None, chart: int = 0) -> dict:
    now = now or datetime.now(UTC)
    patient = patient_id(chart)
    draft = {
        "resourceType": "MedicationRequest",
        "id": "draft-1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "197433", "display": "calcium acetate 667 MG Oral Tablet"}],
            "text": "calcium acetate 667 MG Oral Tablet",
        },
        "subject": {"reference": f"Patient/{patient}"},
        "dosageInstruction": [{"text": "667 mg three times daily with meals"}],
    }
    return {
        "hook": "order-select",
        "hookInstance": "bench-order-select",
        "context": {
            "userId": "Practitioner/bench",
            "patientId": patient,
            "selections": ["MedicationRequest/draft-1"],
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]},
        },
        "prefetch": prefetch(observations, now, chart),
    }


def patient_view(observations: int, now: datetime | None = None, chart: int = 0) -> dict:
    now = now or datetime.now(UTC)
    return {
        "hook": "patient-view",
        "hookInstance": "bench-patient-view",
        "context": {"userId": "Practitioner/bench", "patientId": patient_id(chart)},
        "prefetch": prefetch(observations, now, chart),
    }


def body(request: dict) -> bytes:
    return json.dumps(request).encode()
