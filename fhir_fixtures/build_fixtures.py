"""Write the named clinical scenarios in this folder as complete CDS Hooks requests.

Each ``<name>.json`` is a request (hook, hookInstance, context, prefetch) a client could POST,
with its expected outcome beside the request under ``_expected`` (the service and the
``evaluate`` command ignore that key). The scenarios are defined here, in code, so they are easy
to review; run ``python fhir_fixtures/build_fixtures.py`` after editing and commit the JSON.

All data is invented. Dates are fixed: tests freeze "now" at 2026-11-21T12:00Z
(``tests/conftest.py``), so "fresh" results are from November 2026.

Expected card fields (checked by tests/test_fixtures.py, in order):
  rule           rule id (shown in the card detail)
  indicator      info | warning | critical
  drug           text the summary must contain
  substitutes    RxNorm codes of the suggested substitutes, in order; the first recommended
  removes        resourceId every suggestion deletes (draft orders)
  stops          id of the active order every suggestion updates to status "stopped"
  holds          id of the active order every suggestion updates to status "on-hold"
  creates        RxNorm codes of the orders a chart-level card offers to create (nothing replaced)
  recommended    false when substitutes are offered but none is recommended (default: the first is)
  reasons        Condition references every created order names as reasonReference
  no_suggestions true when the card must offer no suggestion at all
  detail         texts the detail must contain
  detail_absent  texts the detail must not contain
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
NDC = "http://hl7.org/fhir/sid/ndc"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

FRESH = "2026-11-16T08:30:00Z"  # 5 days before "now"
FRESH_PTH = "2026-10-26T08:30:00Z"
OLD_PTH = "2026-07-20T08:30:00Z"
STALE = "2026-09-01T08:30:00Z"  # 81 days before "now": stale for calcium (35 days)


# --------------------------------------------------------------------------------------------
# Resource builders
# --------------------------------------------------------------------------------------------


def condition(
    cid: str,
    patient: str,
    system: str,
    code: str,
    display: str,
    *,
    text: str | None = None,
    clinical: str = "active",
    verification: str = "confirmed",
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
        "code": {"coding": [{"system": system, "code": code, "display": display}], "text": text or display},
        "subject": {"reference": f"Patient/{patient}"},
        "recordedDate": "2026-10-02",
    }


def calciphylaxis(patient: str, **kw) -> dict[str, Any]:
    return condition("calciphylaxis", patient, SNOMED, "237900002", "Calciphylaxis", **kw)


def esrd(patient: str) -> dict[str, Any]:
    return condition("esrd", patient, SNOMED, "46177005", "End-stage renal disease")


def dialysis_dependence(patient: str) -> dict[str, Any]:
    return condition("dialysis", patient, ICD10, "Z99.2", "Dependence on renal dialysis")


def atrial_fibrillation(patient: str) -> dict[str, Any]:
    return condition("af", patient, SNOMED, "49436004", "Atrial fibrillation")


def obs(
    oid: str, patient: str, loinc: str, display: str, value: float, unit: str, when: str = FRESH, status: str = "final"
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def calcium(
    patient: str, value: float, when: str = FRESH, oid: str = "ca-1", unit: str = "mg/dL", status: str = "final"
) -> dict[str, Any]:
    loinc, name = (
        ("17861-6", "Calcium [Mass/volume] in Serum or Plasma")
        if unit == "mg/dL"
        else ("2000-8", "Calcium [Moles/volume] in Serum or Plasma")
    )
    return obs(oid, patient, loinc, name, value, unit, when, status)


def albumin(patient: str, value: float, when: str = FRESH, oid: str = "alb-1", unit: str = "g/dL") -> dict[str, Any]:
    return obs(oid, patient, "1751-7", "Albumin [Mass/volume] in Serum or Plasma", value, unit, when)


def phosphate(
    patient: str, value: float, when: str = FRESH, oid: str = "phos-1", unit: str = "mg/dL"
) -> dict[str, Any]:
    loinc = "2777-1" if unit == "mg/dL" else "14879-1"
    return obs(oid, patient, loinc, "Phosphate in Serum or Plasma", value, unit, when)


def pth(patient: str, value: float, when: str = FRESH_PTH, oid: str = "pth-1", unit: str = "pg/mL") -> dict[str, Any]:
    loinc = "2731-8" if unit == "pg/mL" else "14866-8"
    return obs(oid, patient, loinc, "Parathyrin.intact in Serum or Plasma", value, unit, when)


def egfr(patient: str, value: float, when: str = FRESH) -> dict[str, Any]:
    return obs("egfr-1", patient, "98979-8", "eGFR (CKD-EPI 2021)", value, "mL/min/{1.73_m2}", when)


def crp(patient: str, value: float, when: str = FRESH, oid: str = "crp-1") -> dict[str, Any]:
    return obs(oid, patient, "1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", value, "mg/L", when)


def procedure(prid: str, patient: str, code: str, display: str, when: str = FRESH) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": prid,
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient}"},
        "performedDateTime": when,
    }


def rx(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def med_request(
    mid: str,
    patient: str,
    concept: dict[str, Any] | None,
    *,
    status: str = "draft",
    dose_text: str = "1 tablet by mouth three times daily with meals",
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "authoredOn": "2026-11-21",
        "dosageInstruction": [{"text": dose_text}],
    }
    if concept is not None:
        resource["medicationCodeableConcept"] = concept
    resource.update(extra)
    return resource


def allergy(aid: str, patient: str, concept: dict[str, Any], *, criticality: str = "high") -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "id": aid,
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}
            ]
        },
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}
            ]
        },
        "type": "intolerance",
        "criticality": criticality,
        "code": concept,
        "patient": {"reference": f"Patient/{patient}"},
        "recordedDate": "2025-06-01",
    }


def statement(sid: str, patient: str, concept: dict[str, Any], *, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "id": sid,
        "status": status,
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{patient}"},
        "dateAsserted": "2026-11-01",
        "dosage": [{"text": "as on the home medication list"}],
    }


def administration(aid: str, patient: str, concept: dict[str, Any], when: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": aid,
        "status": "completed",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "dosage": {"route": {"text": "intravenous"}, "text": "IV push into the venous line at the end of dialysis"},
    }


def text_only(text: str) -> dict[str, Any]:
    return {"text": text}


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"http://ehr.example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r} for r in resources
        ],
    }


def patient(pid: str, gender: str = "female", born: str = "1958-03-14") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "gender": gender,
        "birthDate": born,
        "name": [{"family": "Fixture", "given": [pid]}],
    }


def labs_prefetch(pid: str, *, ca=(), alb=(), phos=(), pth_=(), egfr_=(), crp_=(), weight_=()) -> dict[str, Any]:
    def key(items):
        return bundle(*items) if items else None

    return {
        "calcium": key(ca),
        "albumin": key(alb),
        "phosphate": key(phos),
        "pth": key(pth_),
        "egfr": key(egfr_),
        "crp": key(crp_),
        "weight": key(weight_),
    }


def weight(patient: str, kg: float, when: str = FRESH) -> dict[str, Any]:
    return obs("weight-1", patient, "29463-7", "Body weight", kg, "kg", when)


def request(
    hook: str,
    pid: str,
    *,
    instance: str,
    conditions: list | None,
    medications: list | None = (),
    labs: dict | None = None,
    drafts: list | None = None,
    selections: list[str] | None = None,
    omit: tuple[str, ...] = (),
    allergies: list | None = None,
    statements: list | None = None,
    administrations: list | None = None,
    procedures: list | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/nephrologist-1", "patientId": pid, "encounterId": f"enc-{pid}"}
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = bundle(*(drafts or []))
        if hook == "order-select":
            context["selections"] = selections or [f"{d['resourceType']}/{d['id']}" for d in drafts or []]
    prefetch: dict[str, Any] = {
        "patient": patient(pid),
        "conditions": bundle(*conditions) if conditions else None,
        "meds": bundle(*medications) if medications else None,
        # null: the EHR holds none (an absent key would mean it was not looked up).
        "allergies": bundle(*allergies) if allergies else None,
        "medstatements": bundle(*statements) if statements else None,
        "medadmins": bundle(*administrations) if administrations else None,
        **(labs or labs_prefetch(pid)),
    }
    # Keys the services ask for that most scenarios hold nothing under (null: looked up, none).
    prefetch.setdefault("weight", None)
    prefetch.setdefault("parathyroidectomy", None)
    if procedures is not None:
        prefetch["procedures"] = bundle(*procedures) if procedures else None
    for key in omit:
        prefetch.pop(key, None)
    return {"hookInstance": instance, "hook": hook, "context": context, "prefetch": prefetch}


# --------------------------------------------------------------------------------------------
# Drugs used in the scenarios (RxNorm / ATC codes from ../shared/reference/terminology.md)
# --------------------------------------------------------------------------------------------

CALCIUM_ACETATE = rx(RXNORM, "197433", "calcium acetate 667 MG Oral Tablet")
CALCIUM_CARBONATE_IN = rx(RXNORM, "1897", "calcium carbonate")
CALCIUM_CARBONATE_ATC = {"coding": [{"system": ATC, "code": "A12AA04", "display": "calcium carbonate"}]}
CALCIUM_CARBONATE_SCD = rx(RXNORM, "282465", "calcium carbonate 1250 MG Oral Tablet")
WARFARIN = rx(RXNORM, "855332", "warfarin sodium 5 MG Oral Tablet")
CALCITRIOL = rx(RXNORM, "308867", "calcitriol 0.00025 MG Oral Capsule")
PARICALCITOL = rx(RXNORM, "577315", "paricalcitol 0.001 MG Oral Capsule")
CHOLECALCIFEROL = rx(RXNORM, "199362", "cholecalciferol 0.025 MG Oral Tablet")
SEVELAMER = rx(RXNORM, "749206", "sevelamer carbonate 800 MG Oral Tablet")
CINACALCET = rx(RXNORM, "432402", "cinacalcet 30 MG Oral Tablet")
METFORMIN_TEXT = {"text": "metformin 500 mg tablet"}
LEUCOVORIN_TEXT = {"text": "Leucovorin calcium 5 mg tablet"}

IRON_SUCROSE = rx(RXNORM, "1741261", "10 ML iron sucrose 20 MG/ML Injection")
ALUMINIUM_HYDROXIDE_ATC = {
    "coding": [{"system": ATC, "code": "A02AB01", "display": "aluminium hydroxide"}],
    "text": "Aluminium hydroxide 475 mg capsule",
}
ALUMINIUM_MAGNESIUM_ANTACID = rx(
    RXNORM, "243463", "aluminum hydroxide 40 MG/ML / magnesium hydroxide 40 MG/ML Oral Suspension"
)
CINACALCET_60 = rx(RXNORM, "432401", "cinacalcet 60 MG Oral Tablet")
ETELCALCETIDE = rx(RXNORM, "1876137", "0.5 ML etelcalcetide 5 MG/ML Injection")
SODIUM_THIOSULFATE = rx(RXNORM, "237832", "50 ML sodium thiosulfate 250 MG/ML Injection")
HAEMODIALYSIS = ("302497006", "Hemodialysis (procedure)")
PERITONEAL_DIALYSIS = ("71192002", "Peritoneal dialysis (procedure)")

SEVELAMER_RX, LANTHANUM_RX, APIXABAN_RX, CINACALCET_RX = "749206", "477347", "1364435", "432402"
SODIUM_THIOSULFATE_RX = "237832"
APIXABAN_5_RX = "1364445"
SEVERITY_ORDER = ["critical", "warning", "info"]


def dose(value: float, unit: str, *, per_day: int = 1, text: str = "") -> dict[str, Any]:
    """A coded dosage: value and unit per dose, ``per_day`` doses a day."""
    return {
        "text": text or f"{value:g} {unit} {per_day} times daily",
        "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}],
    }


def calciphylaxis_labs(pid: str, *, ca=9.4, alb=3.6, phos=6.1, pth_value=320.0, kg=72.0) -> dict[str, Any]:
    """A calciphylaxis patient on dialysis as usually seen: phosphate above target on a calcium
    binder (a calcium-free binder is then recommended), PTH above target, weight recorded."""
    return labs_prefetch(
        pid,
        ca=[calcium(pid, ca)],
        alb=[albumin(pid, alb)],
        phos=[phosphate(pid, phos)],
        pth_=[pth(pid, pth_value)],
        egfr_=[egfr(pid, 7)],
        weight_=[weight(pid, kg)],
    )


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


def scenarios() -> dict[str, dict[str, Any]]:
    s: dict[str, dict[str, Any]] = {}

    def add(name: str, req: dict[str, Any], scenario: str, cards: list[dict[str, Any]]) -> None:
        # The service answers the most important card first: critical, warning, info.
        cards = sorted(cards, key=lambda card: SEVERITY_ORDER.index(card["indicator"]))
        req["_expected"] = {"scenario": scenario, "cards": cards}
        s[name] = req

    # --- C1 calcium-based binders ----------------------------------------------------------
    pid = "c1-calciphylaxis"
    add(
        "c1-calcium-acetate-calciphylaxis",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000001",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE)],
        ),
        "Haemodialysis patient with calciphylaxis; calcium acetate selected (RxNorm SCD 197433).",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium acetate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "removes": "MedicationRequest/draft-ca",
                "detail": [
                    "Calciphylaxis",
                    "Condition/calciphylaxis",
                    "Corrected calcium: 9.7 mg/dL on 2026-11-16",
                    "albumin-corrected",
                    "Intact PTH: 320 pg/mL on 2026-10-26",
                    "RxNorm 197433",
                    "Nigwekar",
                    "pubmed.ncbi.nlm.nih.gov/25960299",
                ],
            }
        ],
    )

    pid = "c1-dialysis-high-ca-si"
    add(
        "c1-calcium-carbonate-dialysis-high-calcium-mmol",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000002",
            conditions=[esrd(pid), dialysis_dependence(pid)],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 2.62, unit="mmol/L")],
                alb=[albumin(pid, 32, unit="g/L")],
                phos=[phosphate(pid, 1.9, unit="mmol/L")],
                pth_=[pth(pid, 260)],
            ),
            drafts=[med_request("draft-caco3", pid, CALCIUM_CARBONATE_IN)],
        ),
        "Dialysis, no calciphylaxis; SI units (calcium 2.62 mmol/L = 10.5 mg/dL, albumin 32 g/L): corrected "
        "calcium 11.1 mg/dL > 10.2 (K/DOQI). Calcium carbonate by RxNorm ingredient code.",
        [
            {
                "rule": "C1-calcium-binder-dialysis",
                "indicator": "warning",
                "drug": "calcium carbonate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "removes": "MedicationRequest/draft-caco3",
                "detail": [
                    "11.1 mg/dL",
                    "reported as 2.62 mmol/L",
                    "32 g/L",
                    "above 10.2 mg/dL",
                    "calcification: not assessed",
                    "End-stage renal disease",
                ],
            }
        ],
    )

    pid = "c1-dialysis-low-pth"
    add(
        "c1-calcium-acetate-dialysis-low-pth-pmol",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000003",
            conditions=[esrd(pid)],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 9.2)],
                alb=[albumin(pid, 4.0)],
                phos=[phosphate(pid, 5.0)],
                pth_=[pth(pid, 12.0, unit="pmol/L"), pth(pid, 14.5, when=OLD_PTH, oid="pth-0", unit="pmol/L")],
            ),
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE)],
        ),
        "Dialysis, no calciphylaxis; PTH 12 and 14.5 pmol/L (113 and 137 pg/mL): below 150 on 2 "
        "consecutive results (K/DOQI: no calcium-based binders).",
        [
            {
                "rule": "C1-calcium-binder-dialysis",
                "indicator": "warning",
                "drug": "calcium acetate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "recommended": False,  # phosphate 5.0 mg/dL: at target
                "removes": "MedicationRequest/draft-ca",
                "detail": ["113 pg/mL", "reported as 12 pmol/L", "137 pg/mL", "2 consecutive results"],
            }
        ],
    )

    pid = "c1-dialysis-normal"
    add(
        "c1-calcium-acetate-dialysis-normal-labs",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000004",
            conditions=[esrd(pid)],
            labs=labs_prefetch(
                pid, ca=[calcium(pid, 9.1)], alb=[albumin(pid, 3.9)], phos=[phosphate(pid, 5.1)], pth_=[pth(pid, 240)]
            ),
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE)],
        ),
        "Dialysis, no calciphylaxis, calcium and PTH in range: calcium acetate is acceptable, silent.",
        [],
    )

    pid = "c1-dialysis-stale"
    add(
        "c1-calcium-acetate-dialysis-stale-calcium",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000005",
            conditions=[esrd(pid)],
            labs=labs_prefetch(
                pid, ca=[calcium(pid, 10.9, when=STALE)], alb=[albumin(pid, 4.0, when=STALE)], pth_=[pth(pid, 230)]
            ),
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE)],
        ),
        "Dialysis; the only high calcium (10.9 mg/dL) is 81 days old: no warning on stale data, an "
        "info card asks for a recheck and says the value is out of date.",
        [
            {
                "rule": "C1-calcium-binder-dialysis-stale-data",
                "indicator": "info",
                "drug": "calcium acetate",
                "no_suggestions": True,
                "detail": ["10.9 mg/dL on 2026-09-01", "out of date", "older than 35 days"],
            }
        ],
    )

    pid = "c1-osteoporosis"
    add(
        "c1-osteoporosis-calcium-carbonate-out-of-scope",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000006",
            conditions=[condition("osteoporosis", pid, SNOMED, "64859006", "Osteoporosis")],
            labs=labs_prefetch(pid, ca=[calcium(pid, 9.6)], egfr_=[egfr(pid, 78)]),
            drafts=[med_request("draft-caco3", pid, CALCIUM_CARBONATE_SCD)],
        ),
        "Osteoporosis, normal kidney function, calcium carbonate: out of scope, silent.",
        [],
    )

    pid = "c1-text-only"
    add(
        "c1-calcium-acetate-text-only",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000007",
            conditions=[calciphylaxis(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-text", pid, {"text": "Calcium acetate 667 mg capsule"})],
        ),
        "Calciphylaxis; the draft names calcium acetate only in free text: the card says it matched by name.",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "Calcium acetate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "removes": "MedicationRequest/draft-text",
                "detail": ["recognised from its name", "not from a drug code"],
            }
        ],
    )

    pid = "c1-atc-only"
    add(
        "c1-calcium-carbonate-atc-only",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000008",
            conditions=[calciphylaxis(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-atc", pid, CALCIUM_CARBONATE_ATC)],
        ),
        "Calciphylaxis; calcium carbonate coded with WHO ATC A12AA04 only.",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium carbonate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "removes": "MedicationRequest/draft-atc",
                "detail": ["ATC A12AA04"],
            }
        ],
    )

    pid = "c1-contained"
    contained_draft = med_request(
        "draft-contained",
        pid,
        None,
        contained=[
            {
                "resourceType": "Medication",
                "id": "med1",
                "code": rx(RXNORM, "359296", "calcium acetate 667 MG Oral Capsule"),
            }
        ],
        medicationReference={"reference": "#med1"},
    )
    add(
        "c1-calcium-acetate-contained-medication",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000009",
            conditions=[calciphylaxis(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[contained_draft],
        ),
        "Calciphylaxis; the draft refers to a contained Medication (RxNorm 359296 capsule).",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium acetate 667 MG Oral Capsule",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "removes": "MedicationRequest/draft-contained",
                "detail": ["RxNorm 359296"],
            }
        ],
    )

    pid = "c1-r5"
    r5_draft = med_request("draft-r5", pid, None, medication={"concept": CALCIUM_ACETATE})
    add(
        "c1-calcium-acetate-r5-shape",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000010",
            conditions=[calciphylaxis(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[r5_draft],
        ),
        "Calciphylaxis; an R5-shaped draft (medication.concept). The substitute is written in the same shape.",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium acetate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "removes": "MedicationRequest/draft-r5",
            }
        ],
    )

    pid = "c1-leucovorin"
    add(
        "c1-leucovorin-calcium-is-not-a-binder",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000011",
            conditions=[calciphylaxis(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-leu", pid, LEUCOVORIN_TEXT)],
        ),
        "Calciphylaxis; leucovorin calcium contains the word calcium but is no calcium load: silent.",
        [],
    )

    # --- C2 vitamin K antagonists ------------------------------------------------------------
    pid = "c2-af"
    add(
        "c2-warfarin-calciphylaxis-atrial-fibrillation",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000012",
            conditions=[calciphylaxis(pid), esrd(pid), atrial_fibrillation(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-warf", pid, WARFARIN, dose_text="5 mg by mouth daily")],
        ),
        "Calciphylaxis on dialysis (ESRD) with atrial fibrillation, 68 years old, 72 kg; warfarin "
        "selected: stop, apixaban 5 mg twice daily offered (the US label's dose on dialysis under 80 "
        "years and over 60 kg), the dose conflict stated.",
        [
            {
                "rule": "C2-vka-calciphylaxis",
                "indicator": "critical",
                "drug": "warfarin",
                "substitutes": [APIXABAN_5_RX],
                "removes": "MedicationRequest/draft-warf",
                "reasons": ["Condition/af"],
                "detail": [
                    "Atrial fibrillation recorded",
                    "No mechanical or unspecified prosthetic heart valve recorded",
                    "No mitral stenosis recorded",
                    "No antiphospholipid syndrome recorded",
                    "Apixaban 5 mg twice daily, the US label's dose on dialysis (age 68, weight 72 kg",
                    "INR has fallen below 2.0",
                    "EU product information does not recommend apixaban on dialysis",
                    "Hayashi",
                ],
            }
        ],
    )

    pid = "c2-valve"
    add(
        "c2-warfarin-calciphylaxis-mechanical-valve",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000013",
            conditions=[
                calciphylaxis(pid),
                atrial_fibrillation(pid),
                condition(
                    "valve",
                    pid,
                    ICD10,
                    "Z95.2",
                    "Presence of prosthetic heart valve",
                    text="Mechanical aortic valve replacement 2015",
                ),
            ],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-warf", pid, WARFARIN, dose_text="5 mg by mouth daily")],
        ),
        "Calciphylaxis, atrial fibrillation and a mechanical heart valve: no DOAC may be suggested; "
        "the card says to agree an alternative with the anticoagulation team and offers no order.",
        [
            {
                "rule": "C2-vka-calciphylaxis",
                "indicator": "critical",
                "drug": "warfarin",
                "no_suggestions": True,
                "detail": ["Prosthetic heart valve recorded", "Condition/valve", "anticoagulation team"],
                "detail_absent": ["apixaban 2.5 MG Oral Tablet"],
            }
        ],
    )

    pid = "c2-bioprosthetic"
    add(
        "c2-warfarin-calciphylaxis-bioprosthetic-valve",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000030",
            conditions=[
                calciphylaxis(pid),
                esrd(pid),
                atrial_fibrillation(pid),
                condition(
                    "valve", pid, ICD10, "Z95.3", "Presence of xenogenic heart valve", text="Bioprosthetic aortic valve"
                ),
            ],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-warf", pid, WARFARIN, dose_text="5 mg by mouth daily")],
        ),
        "A bioprosthetic (xenogenic, Z95.3) valve is not a mechanical valve: apixaban is still offered "
        "for the atrial fibrillation on dialysis.",
        [
            {
                "rule": "C2-vka-calciphylaxis",
                "indicator": "critical",
                "drug": "warfarin",
                "substitutes": [APIXABAN_5_RX],
                "removes": "MedicationRequest/draft-warf",
                "detail": ["No mechanical or unspecified prosthetic heart valve recorded"],
            }
        ],
    )

    pid = "c2-dialysis"
    add(
        "c2-warfarin-dialysis-no-calciphylaxis",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000014",
            conditions=[esrd(pid), atrial_fibrillation(pid)],
            labs=labs_prefetch(pid, ca=[calcium(pid, 9.0)], alb=[albumin(pid, 4.0)], pth_=[pth(pid, 250)]),
            drafts=[med_request("draft-warf", pid, WARFARIN, dose_text="5 mg by mouth daily")],
        ),
        "Dialysis without calciphylaxis; warfarin: information only (a risk factor), no suggestion.",
        [{"rule": "C2-vka-dialysis", "indicator": "info", "drug": "warfarin", "no_suggestions": True}],
    )

    pid = "c2-refuted"
    add(
        "c2-warfarin-refuted-calciphylaxis",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000015",
            conditions=[calciphylaxis(pid, verification="refuted"), esrd(pid), atrial_fibrillation(pid)],
            labs=labs_prefetch(pid, ca=[calcium(pid, 9.0)], alb=[albumin(pid, 4.0)], pth_=[pth(pid, 250)]),
            drafts=[med_request("draft-warf", pid, WARFARIN, dose_text="5 mg by mouth daily")],
        ),
        "A refuted calciphylaxis diagnosis does not count: the dialysis rule (info) applies, not the critical one.",
        [
            {
                "rule": "C2-vka-dialysis",
                "indicator": "info",
                "drug": "warfarin",
                "no_suggestions": True,
                "detail_absent": ["Condition/calciphylaxis"],
            }
        ],
    )

    pid = "c2-dstu2"
    dstu2_draft = {
        "resourceType": "MedicationOrder",
        "id": "draft-mo",
        "status": "draft",
        "patient": {"reference": f"Patient/{pid}"},
        "dateWritten": "2026-11-21",
        "medicationCodeableConcept": WARFARIN,
        "dosageInstruction": [{"text": "5 mg by mouth daily"}],
    }
    add(
        "c2-warfarin-dstu2-medicationorder",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000016",
            conditions=[calciphylaxis(pid), esrd(pid), atrial_fibrillation(pid)],
            labs=calciphylaxis_labs(pid, kg=58.0),
            drafts=[dstu2_draft],
        ),
        "The public sandbox's DSTU2 shape: a MedicationOrder draft. The substitute is a DSTU2 "
        "MedicationOrder (apixaban 2.5 mg: 58 kg, the label's reduced dose on dialysis) and the "
        "suggestion deletes MedicationOrder/draft-mo.",
        [
            {
                "rule": "C2-vka-calciphylaxis",
                "indicator": "critical",
                "drug": "warfarin",
                "substitutes": [APIXABAN_RX],
                "detail": ["weight 58 kg", "60 kg or less"],
                "removes": "MedicationOrder/draft-mo",
            }
        ],
    )

    pid = "c2-e83"
    add(
        "c2-warfarin-e83-59-without-calciphylaxis-text",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000017",
            conditions=[condition("e83", pid, ICD10, "E83.59", "Other disorders of calcium metabolism"), esrd(pid)],
            labs=labs_prefetch(pid, ca=[calcium(pid, 9.0)], alb=[albumin(pid, 4.0)], pth_=[pth(pid, 250)]),
            drafts=[med_request("draft-warf", pid, WARFARIN, dose_text="5 mg by mouth daily")],
        ),
        "ICD-10-CM E83.59 is a catch-all: without the word calciphylaxis it is not calciphylaxis.",
        [{"rule": "C2-vka-dialysis", "indicator": "info", "drug": "warfarin", "no_suggestions": True}],
    )

    # --- C3 active vitamin D ---------------------------------------------------------------
    pid = "c3-cinacalcet"
    add(
        "c3-calcitriol-calciphylaxis-cinacalcet",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000018",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid, ca=9.1, alb=4.0, pth_value=320),
            drafts=[med_request("draft-ctr", pid, CALCITRIOL, dose_text="0.25 mcg by mouth daily")],
        ),
        "Calciphylaxis, PTH 320 pg/mL and corrected calcium 9.1 mg/dL: stop calcitriol, cinacalcet offered.",
        [
            {
                "rule": "C3-active-vitamin-d-calciphylaxis",
                "indicator": "critical",
                "drug": "calcitriol",
                "substitutes": [CINACALCET_RX],
                "removes": "MedicationRequest/draft-ctr",
                "detail": [
                    "PTH above the 150-300 pg/mL target (320 pg/mL on 2026-10-26)",
                    "On dialysis (End-stage renal disease",
                    "Corrected calcium not below 8.4 mg/dL",
                    "within 1 week",
                    "Where sources disagree",
                ],
            }
        ],
    )

    pid = "c3-low-ca"
    add(
        "c3-paricalcitol-calciphylaxis-low-calcium",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000019",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid, ca=7.8, alb=4.0, pth_value=300),
            drafts=[med_request("draft-pari", pid, PARICALCITOL, dose_text="1 mcg by mouth daily")],
        ),
        "Calciphylaxis with corrected calcium 7.8 mg/dL: cinacalcet must not be suggested (it lowers "
        "calcium); the only suggestion removes the draft.",
        [
            {
                "rule": "C3-active-vitamin-d-calciphylaxis",
                "indicator": "warning",
                "drug": "paricalcitol",
                "no_suggestions": True,
                "detail": ["7.8 mg/dL", "deepen hypocalcaemia", "hungry bone", "Where sources disagree"],
            }
        ],
    )

    pid = "c3-high-pth"
    add(
        "c3-calcitriol-calciphylaxis-pth-above-500",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000020",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid, ca=9.3, alb=4.0, pth_value=780),
            drafts=[med_request("draft-ctr", pid, CALCITRIOL, dose_text="0.25 mcg by mouth daily")],
        ),
        "Calciphylaxis with PTH 780 pg/mL: parathyroidectomy referral to consider, with the "
        "conflicting thresholds (500 vs 1000-1500 pg/mL) stated.",
        [
            {
                "rule": "C3-active-vitamin-d-calciphylaxis",
                "indicator": "critical",
                "drug": "calcitriol",
                "substitutes": [CINACALCET_RX],
                "recommended": False,
                "removes": "MedicationRequest/draft-ctr",
                "detail": [
                    "parathyroidectomy",
                    "above 500 pg/mL",
                    "1000-1500 pg/mL",
                    "780 pg/mL",
                    "cinacalcet is an option meanwhile",
                ],
            }
        ],
    )

    pid = "c3-dialysis-high-ca"
    add(
        "c3-calcitriol-dialysis-high-calcium",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000021",
            conditions=[esrd(pid)],
            labs=labs_prefetch(
                pid, ca=[calcium(pid, 10.4)], alb=[albumin(pid, 3.7)], phos=[phosphate(pid, 5.0)], pth_=[pth(pid, 280)]
            ),
            drafts=[med_request("draft-ctr", pid, CALCITRIOL, dose_text="0.25 mcg by mouth daily")],
        ),
        "Dialysis without calciphylaxis, corrected calcium 10.6 mg/dL: hold calcitriol (K/DOQI).",
        [
            {
                "rule": "C3-active-vitamin-d-dialysis",
                "indicator": "warning",
                "drug": "calcitriol",
                "removes": "MedicationRequest/draft-ctr",
                "detail": [
                    "10.6 mg/dL",
                    "above 10.2 mg/dL",
                    "PTH is within the 150-300 pg/mL target",
                    "PTH not above the 150-300 pg/mL target",
                    "KDIGO 2017",
                ],
                "detail_absent": ["cinacalcet 30 MG Oral Tablet. 30 mg"],
            }
        ],
    )

    pid = "c3-cholecalciferol"
    add(
        "c3-cholecalciferol-is-not-active-vitamin-d",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000022",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-d3", pid, CHOLECALCIFEROL, dose_text="1000 units by mouth daily")],
        ),
        "Nutritional vitamin D (cholecalciferol) is not an active sterol: silent even in calciphylaxis.",
        [],
    )

    pid = "c3-eie"
    add(
        "c3-calcitriol-dialysis-entered-in-error-calcium",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000023",
            conditions=[esrd(pid)],
            labs=labs_prefetch(
                pid,
                ca=[
                    calcium(pid, 11.4, oid="ca-wrong", status="entered-in-error", when="2026-11-19T08:00:00Z"),
                    calcium(pid, 9.3),
                ],
                alb=[albumin(pid, 4.0)],
                pth_=[pth(pid, 250)],
            ),
            drafts=[med_request("draft-ctr", pid, CALCITRIOL, dose_text="0.25 mcg by mouth daily")],
        ),
        "A calcium of 11.4 mg/dL marked entered-in-error is ignored; the valid 9.3 mg/dL is normal: silent.",
        [],
    )

    # --- patient-view ----------------------------------------------------------------------
    pid = "pv-calciphylaxis"
    active_ca = med_request("ma-ca", pid, CALCIUM_ACETATE, status="active")
    active_warf = med_request("ma-warf", pid, WARFARIN, status="active", dose_text="5 mg by mouth daily")
    stopped_ctr = med_request("ma-ctr", pid, CALCITRIOL, status="stopped", dose_text="0.25 mcg daily")
    add(
        "m1-calciphylaxis-active-trigger-medications",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000024",
            conditions=[calciphylaxis(pid, verification="provisional"), esrd(pid), atrial_fibrillation(pid)],
            medications=[active_ca, active_warf, stopped_ctr],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 9.8)],
                alb=[albumin(pid, 3.4)],
                phos=[phosphate(pid, 6.4)],
                pth_=[pth(pid, 410, when=OLD_PTH)],
                egfr_=[egfr(pid, 6)],
                weight_=[weight(pid, 81.0)],
            ),
        ),
        "Chart opened for a patient with suspected (provisional) calciphylaxis: a mineral summary "
        "(corrected calcium 10.3, phosphate 6.4, Ca x P 66, PTH overdue, no sodium thiosulfate), then "
        "one card per active problem drug; suggestions stop the active order and create the "
        "substitute. The stopped calcitriol is ignored.",
        [
            {
                "rule": "M1-mineral-status-calciphylaxis",
                "indicator": "info",
                "drug": "Calciphylaxis mineral review",
                "no_suggestions": True,
                "detail": [
                    "| Corrected calcium | 10.3 mg/dL on 2026-11-16",
                    "above target",
                    "| Phosphate | 6.4 mg/dL",
                    "| Calcium x phosphate | 66 mg2/dL2",
                    "overdue",
                    "No sodium thiosulfate",
                    "meta-analysis",
                    "verification provisional",
                ],
            },
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium acetate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "stops": "ma-ca",
            },
            {
                "rule": "C2-vka-calciphylaxis",
                "indicator": "critical",
                "drug": "warfarin",
                "substitutes": [APIXABAN_5_RX],
                "stops": "ma-warf",
            },
        ],
    )

    pid = "pv-dialysis-stable"
    add(
        "pv-dialysis-stable-no-cards",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000025",
            conditions=[esrd(pid)],
            medications=[
                med_request("ma-sev", pid, SEVELAMER, status="active"),
                med_request("ma-cina", pid, CINACALCET, status="active", dose_text="30 mg daily"),
            ],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 9.0)],
                alb=[albumin(pid, 4.0)],
                phos=[phosphate(pid, 5.0)],
                pth_=[pth(pid, 260)],
                egfr_=[egfr(pid, 8)],
            ),
        ),
        "Dialysis patient on sevelamer and cinacalcet with labs in range: nothing to say.",
        [],
    )

    pid = "pv-out-of-scope"
    add(
        "pv-out-of-scope-calcium-carbonate",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000026",
            conditions=[condition("htn", pid, SNOMED, "38341003", "Hypertensive disorder")],
            medications=[
                med_request("ma-caco3", pid, CALCIUM_CARBONATE_SCD, status="active"),
                med_request("ma-warf", pid, WARFARIN, status="active"),
            ],
            labs=labs_prefetch(pid, ca=[calcium(pid, 9.5)], egfr_=[egfr(pid, 82)]),
        ),
        "Hypertension, normal kidney function, on calcium carbonate and warfarin: out of scope, silent.",
        [],
    )

    # --- orders under review, missing data -----------------------------------------------------
    pid = "x1-no-conditions"
    add(
        "x1-conditions-unavailable",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000027",
            conditions=None,
            labs=calciphylaxis_labs(pid) | {"egfr": None},
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE)],
            omit=("conditions",),
        ),
        "The EHR did not prefetch the conditions and no FHIR server is available: the check cannot "
        "be completed, and the card says so (drug, what was missing and why).",
        [
            {
                "rule": "X1-calciphylaxis-check-incomplete",
                "indicator": "info",
                "drug": "calcium acetate",
                "no_suggestions": True,
                "detail": ["conditions (diagnoses): not available"],
            }
        ],
    )

    pid = "sign-two-drafts"
    add(
        "order-sign-only-the-calcium-binder-of-two-drafts",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000028",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE), med_request("draft-sev", pid, SEVELAMER)],
        ),
        "order-sign with two drafts: calcium acetate is flagged, sevelamer is not. Sevelamer is "
        "already drafted in the same order set, so no second calcium-free binder is offered: the "
        "suggestion only removes the calcium acetate draft and the card says sevelamer is drafted.",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium acetate",
                "removes": "MedicationRequest/draft-ca",
                "detail": ["draft-sev, drafted now", "already drafted in this order set"],
                "detail_absent": ["Replace with sevelamer"],
            }
        ],
    )

    pid = "select-other"
    add(
        "order-select-unselected-draft-is-context-only",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000029",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE), med_request("draft-met", pid, METFORMIN_TEXT)],
            selections=["MedicationRequest/draft-met"],
        ),
        "order-select: only the selected draft (metformin) is reviewed; the unselected calcium "
        "acetate draft is context only: silent.",
        [],
    )

    # --- real-world EHR data (issue 10): brands, shorthand, misspellings, IV at dialysis,
    # --- home medication lists, problem-list wording, eligibility of substitutes
    pid = "rw-phoslo-brand"
    add(
        "c1-phoslo-brand-name-only-calciphylaxis",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000101",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-phoslo", pid, text_only("PhosLo 667mg gelcap, 2 with each meal"))],
        ),
        "Calcium acetate ordered by its brand only (free text 'PhosLo'): still a calcium-based binder; "
        "the card says it was recognised from the brand name.",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "PhosLo",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "removes": "MedicationRequest/draft-phoslo",
                "detail": ["recognised from its brand name", '"PhosLo"'],
            }
        ],
    )

    pid = "rw-caco3-abbrev"
    add(
        "c1-caco3-abbreviation-dialysis-high-calcium",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000102",
            conditions=[esrd(pid)],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 10.6)],
                alb=[albumin(pid, 4.0)],
                phos=[phosphate(pid, 6.1)],
                pth_=[pth(pid, 280)],
                egfr_=[egfr(pid, 8)],
            ),
            drafts=[med_request("draft-caco3", pid, text_only("CaCO3 1250 mg PO TID c meals"))],
        ),
        "Dialysis patient, corrected calcium 10.6 mg/dL; calcium carbonate written as the chemical "
        "abbreviation 'CaCO3': the K/DOQI warning fires and the card admits the abbreviation match.",
        [
            {
                "rule": "C1-calcium-binder-dialysis",
                "indicator": "warning",
                "drug": "CaCO3",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "detail": ["recognised from its abbreviation", '"CaCO3"', "Corrected calcium: 10.6 mg/dL"],
            }
        ],
    )

    pid = "rw-calcitriol-typo"
    add(
        "c3-calcitriol-misspelled-calciphylaxis",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000103",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-calcitirol", pid, text_only("calcitirol 0.25 mcg cap daily"))],
        ),
        "Calcitriol misspelled 'calcitirol' in a free-text order: recognised by a close spelling, "
        "which the card admits, and the calciphylaxis card fires.",
        [
            {
                "rule": "C3-active-vitamin-d-calciphylaxis",
                "indicator": "critical",
                "drug": "calcitirol",
                "substitutes": [CINACALCET_RX],
                "detail": ["close spelling", '"calcitirol"', "read as calcitriol"],
            }
        ],
    )

    pid = "rw-zemplar-iv"
    add(
        "c3-paricalcitol-iv-given-at-dialysis-patient-view",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000104",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            medications=[],
            administrations=[
                administration(
                    "adm-1", pid, text_only("Zemplar (paricalcitol) 5 mcg/mL inj 2 mcg IV"), "2026-11-19T15:40:00Z"
                ),
                administration(
                    "adm-2", pid, text_only("Zemplar (paricalcitol) 5 mcg/mL inj 2 mcg IV"), "2026-11-17T15:35:00Z"
                ),
            ],
        ),
        "IV paricalcitol given at each dialysis session, charted only as MedicationAdministrations "
        "(no active order in the list): current exposure on patient-view. One card for the drug, "
        "no one-click stop (a dose given cannot be stopped), and the card says to stop the order "
        "behind the doses.",
        [
            {"rule": "M1-mineral-status-calciphylaxis", "indicator": "info", "drug": "", "no_suggestions": True},
            {
                "rule": "C3-active-vitamin-d-calciphylaxis",
                "indicator": "critical",
                "drug": "Zemplar",
                "no_suggestions": True,
                "detail": ["Given: Zemplar", "MedicationAdministration/adm-1", "standing order"],
            },
        ],
    )

    pid = "rw-home-list"
    add(
        "c1-calcium-acetate-on-home-medication-list-patient-view",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000105",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            medications=[],
            statements=[statement("ms-ca", pid, CALCIUM_ACETATE)],
        ),
        "Calcium acetate only on the home medication list (MedicationStatement): the calciphylaxis "
        "card fires and its suggestion marks the statement stopped.",
        [
            {"rule": "M1-mineral-status-calciphylaxis", "indicator": "info", "drug": "", "no_suggestions": True},
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium acetate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "stops": "ms-ca",
                "detail": ["Home medication list: calcium acetate"],
            },
        ],
    )

    pid = "rw-cua"
    add(
        "c2-warfarin-cua-abbreviation-on-problem-list",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000106",
            conditions=[
                {
                    **condition("cua", pid, SNOMED, "0", "x"),
                    "code": {"text": "CUA - biopsy pending, L thigh"},
                },
                esrd(pid),
                atrial_fibrillation(pid),
            ],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-warf", pid, WARFARIN)],
        ),
        "Calciphylaxis recorded only as the abbreviation 'CUA' (calcific uraemic arteriolopathy) in "
        "the problem text: the calciphylaxis tier applies; apixaban for AF on dialysis.",
        [
            {
                "rule": "C2-vka-calciphylaxis",
                "indicator": "critical",
                "drug": "warfarin",
                "substitutes": [APIXABAN_5_RX],
                "detail": ['recognised from the text: "CUA"'],
            }
        ],
    )

    pid = "rw-onx-valve"
    add(
        "c2-warfarin-mechanical-valve-brand-abbreviation",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000107",
            conditions=[
                calciphylaxis(pid),
                esrd(pid),
                atrial_fibrillation(pid),
                {**condition("valve", pid, SNOMED, "0", "x"), "code": {"text": "s/p AVR 2019 (On-X 23mm)"}},
            ],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-warf", pid, WARFARIN)],
        ),
        "A mechanical valve written the way problem lists write it ('s/p AVR (On-X)'): no DOAC is "
        "offered; agree an alternative with the anticoagulation team.",
        [
            {
                "rule": "C2-vka-calciphylaxis",
                "indicator": "critical",
                "drug": "warfarin",
                "no_suggestions": True,
                "detail": ["Prosthetic heart valve recorded", "Condition/valve", "anticoagulation team"],
                "detail_absent": ["apixaban 2.5 MG Oral Tablet"],
            }
        ],
    )

    pid = "rw-af-no-dialysis"
    add(
        "c2-warfarin-calciphylaxis-not-on-dialysis-no-one-click-apixaban",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000108",
            conditions=[calciphylaxis(pid), atrial_fibrillation(pid)],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 9.4)],
                alb=[albumin(pid, 3.8)],
                phos=[phosphate(pid, 4.1)],
                pth_=[pth(pid, 90)],
                egfr_=[egfr(pid, 42)],
            ),
            drafts=[med_request("draft-warf", pid, WARFARIN)],
        ),
        "Calciphylaxis without kidney failure (eGFR 42), atrial fibrillation: the apixaban doses "
        "offered are the label's doses on dialysis, so no one-click order; the card offers to stop "
        "warfarin and start the replacement by hand now, at the label's other dose criteria.",
        [
            {
                "rule": "C2-vka-calciphylaxis",
                "indicator": "critical",
                "drug": "warfarin",
                "removes": "MedicationRequest/draft-warf",
                "detail": ["Dialysis not shown", "label's other criteria", "eGFR 42"],
                "detail_absent": ["apixaban 2.5 MG Oral Tablet", "apixaban 5 MG Oral Tablet"],
            }
        ],
    )

    pid = "rw-caco3-no-phos-problem"
    add(
        "c1-calcium-carbonate-calciphylaxis-not-on-dialysis-no-binder-offered",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000109",
            conditions=[calciphylaxis(pid)],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 9.1)],
                alb=[albumin(pid, 3.9)],
                phos=[phosphate(pid, 3.9)],
                egfr_=[egfr(pid, 55)],
            ),
            drafts=[med_request("draft-caco3", pid, CALCIUM_CARBONATE_SCD)],
        ),
        "Non-uraemic calciphylaxis (eGFR 55, phosphate 3.9 mg/dL) on calcium carbonate as a "
        "supplement: stop it; no phosphate binder is offered because phosphate needs no binding.",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium carbonate",
                "removes": "MedicationRequest/draft-caco3",
                "detail": ["Phosphate does not need a binder", "choose a binder by hand"],
                "detail_absent": ["sevelamer carbonate 800 MG Oral Tablet"],
            }
        ],
    )

    pid = "rw-apixaban-allergy"
    add(
        "c2-warfarin-apixaban-intolerance-blocks-the-substitute",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000110",
            conditions=[calciphylaxis(pid), esrd(pid), atrial_fibrillation(pid)],
            labs=calciphylaxis_labs(pid),
            allergies=[allergy("allergy-eliquis", pid, text_only("Eliquis - GI bleed 2024"))],
            drafts=[med_request("draft-warf", pid, WARFARIN)],
        ),
        "An intolerance to apixaban recorded by its brand (Eliquis): apixaban is never offered and "
        "the card names the AllergyIntolerance that blocked it.",
        [
            {
                "rule": "C2-vka-calciphylaxis",
                "indicator": "critical",
                "drug": "warfarin",
                "no_suggestions": True,
                "detail": ["Allergy or intolerance recorded", "AllergyIntolerance/allergy-eliquis"],
                "detail_absent": ["apixaban 2.5 MG Oral Tablet"],
            }
        ],
    )

    pid = "rw-sevelamer-intolerance"
    add(
        "c1-sevelamer-intolerance-offers-lanthanum-only",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000111",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            allergies=[allergy("allergy-renvela", pid, rx(RXNORM, "214824", "sevelamer"), criticality="low")],
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE)],
        ),
        "A sevelamer intolerance (coded RxNorm ingredient): only lanthanum is offered.",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium acetate",
                "substitutes": [LANTHANUM_RX],
                "removes": "MedicationRequest/draft-ca",
                "detail": ["AllergyIntolerance/allergy-renvela"],
            }
        ],
    )

    pid = "rw-ionized-only"
    add(
        "c3-calcitriol-dialysis-ionized-calcium-only",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000112",
            conditions=[esrd(pid)],
            labs={
                **labs_prefetch(pid, pth_=[pth(pid, 260)], egfr_=[egfr(pid, 6)]),
                "calcium": bundle(
                    obs("ica-1", pid, "1995-0", "Calcium.ionized [Moles/volume] in Serum or Plasma", 1.42, "mmol/L")
                ),
            },
            drafts=[med_request("draft-calcitriol", pid, CALCITRIOL)],
        ),
        "Only an ionized calcium (1.42 mmol/L, above 1.32) is on file: used in place of a total "
        "calcium with its own threshold, and the card says so.",
        [
            {
                "rule": "C3-active-vitamin-d-dialysis",
                "indicator": "warning",
                "drug": "calcitriol",
                "detail": ["Ionized calcium: 1.42 mmol/L", "the ionized calcium was used", "1.16-1.32 mmol/L"],
            }
        ],
    )

    pid = "rw-pth-text"
    add(
        "c1-calcium-acetate-dialysis-pth-text-results-with-comparator",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000113",
            conditions=[esrd(pid)],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 9.0)],
                alb=[albumin(pid, 4.0)],
                phos=[phosphate(pid, 5.0)],
                pth_=[
                    {
                        **{k: v for k, v in pth(pid, 0, oid="pth-new").items() if k != "valueQuantity"},
                        "valueString": "<50 pg/mL",
                    },
                    {
                        **{k: v for k, v in pth(pid, 0, when=OLD_PTH, oid="pth-old").items() if k != "valueQuantity"},
                        "valueString": "<50",
                    },
                ],
                egfr_=[egfr(pid, 8)],
            ),
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE)],
        ),
        "PTH reported as text with a comparator ('<50 pg/mL', '<50') on 2 consecutive results: read "
        "with the comparator kept, so PTH is below 150 twice and the K/DOQI warning fires.",
        [
            {
                "rule": "C1-calcium-binder-dialysis",
                "indicator": "warning",
                "drug": "calcium acetate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "recommended": False,  # phosphate 5.0 mg/dL: at target
                "detail": ["Intact PTH: <50 pg/mL", "below 150 pg/mL on 2 consecutive results"],
            }
        ],
    )

    pid = "rw-transplant"
    add(
        "pv-transplant-with-working-graft-is-not-on-dialysis",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000114",
            conditions=[
                condition("esrd-old", pid, ICD10, "N18.6", "End stage renal disease"),
                condition("ktx", pid, ICD10, "Z94.0", "Kidney transplant status"),
            ],
            medications=[med_request("mr-ca", pid, CALCIUM_CARBONATE_SCD, status="active")],
            labs=labs_prefetch(pid, ca=[calcium(pid, 10.5)], alb=[albumin(pid, 4.0)], egfr_=[egfr(pid, 58)]),
        ),
        "Kidney transplant recipient with a working graft (Z94.0, eGFR 58) and an old ESRD entry "
        "still active on the problem list, on calcium carbonate: not on dialysis, so silent.",
        [],
    )

    pid = "rw-calcification"
    add(
        "c1-calcium-acetate-dialysis-vascular-calcification-in-text",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000115",
            conditions=[
                esrd(pid),
                {
                    **condition("calc", pid, SNOMED, "0", "x"),
                    "code": {"text": "Severe medial arterial calcification (CT 2025)"},
                },
            ],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 9.0)],
                alb=[albumin(pid, 4.0)],
                phos=[phosphate(pid, 5.0)],
                pth_=[pth(pid, 250)],
                egfr_=[egfr(pid, 8)],
            ),
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE)],
        ),
        "Dialysis with severe vascular calcification recorded in the problem text and normal labs: "
        "K/DOQI advises against calcium-based binders; the warning names the calcification.",
        [
            {
                "rule": "C1-calcium-binder-dialysis",
                "indicator": "warning",
                "drug": "calcium acetate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "recommended": False,  # phosphate 5.0 mg/dL: at target
                "detail": [
                    "Vascular or soft-tissue calcification: Severe medial arterial calcification",
                    "Condition/calc",
                ],
            }
        ],
    )

    pid = "rw-false-friends"
    add(
        "c1-false-friends-are-silent",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000116",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[
                med_request("d1", pid, text_only("amlodipine 5 mg (calcium channel blocker) daily")),
                med_request("d2", pid, text_only("rosuvastatin calcium 10 mg tab")),
                med_request("d3", pid, text_only("Vitamin D3 1000 IU daily")),
                med_request("d4", pid, text_only("calcipotriol 0.005% ointment")),
                med_request("d5", pid, text_only("phytonadione (vitamin K) 10 mg IV")),
                med_request("d6", pid, text_only("calcium gluconate 10% 10 mL IV for hyperkalaemia")),
            ],
        ),
        "False friends on order-sign for a calciphylaxis patient: a calcium channel blocker, "
        "rosuvastatin calcium, nutritional vitamin D, topical calcipotriol, vitamin K and IV calcium "
        "gluconate for hyperkalaemia: no card.",
        [],
    )

    # --- C4 iron in calciphylaxis (issue 14) ------------------------------------------------
    pid = "c4-calciphylaxis"
    add(
        "c4-iron-sucrose-calciphylaxis-warning-without-stop",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000201",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-iron", pid, IRON_SUCROSE, dose_text="100 mg IV at each dialysis x 10")],
        ),
        "Haemodialysis patient with calciphylaxis; IV iron sucrose selected. One summary says stop iron, "
        "reviews list iron among risk factors, and iron is standard anaemia care: a warning that names "
        "the conflict and leaves the decision to the clinician, with no stop or substitute offered.",
        [
            {
                "rule": "C4-iron-calciphylaxis",
                "indicator": "warning",
                "drug": "iron sucrose",
                "no_suggestions": True,
                "detail": [
                    "Where sources disagree",
                    "stopping iron supplementation",
                    "anaemia of kidney disease",
                    "Anaemia and iron stores",
                    "RxNorm 1741261",
                    "Condition/calciphylaxis",
                    "kdigo.org",
                ],
            }
        ],
    )

    pid = "c4-venofer-given"
    add(
        "c4-iron-given-at-dialysis-patient-view",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000202",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            medications=[],
            administrations=[
                administration("adm-iron", pid, text_only("Venofer (iron sucrose) 100 mg IV"), "2026-11-19T15:40:00Z")
            ],
        ),
        "IV iron given at dialysis (a MedicationAdministration, brand Venofer) in calciphylaxis: the "
        "mineral review, then one iron warning with no suggestion and no advice to stop the order.",
        [
            {"rule": "M1-mineral-status-calciphylaxis", "indicator": "info", "drug": "", "no_suggestions": True},
            {
                "rule": "C4-iron-calciphylaxis",
                "indicator": "warning",
                "drug": "Venofer",
                "no_suggestions": True,
                "detail": ["Given: Venofer", "MedicationAdministration/adm-iron", "brand name"],
                "detail_absent": ["standing order"],
            },
        ],
    )

    pid = "c4-dialysis-only"
    add(
        "c4-iron-sucrose-dialysis-without-calciphylaxis-silent",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000203",
            conditions=[esrd(pid), dialysis_dependence(pid)],
            labs=labs_prefetch(pid, ca=[calcium(pid, 9.1)], alb=[albumin(pid, 3.9)], pth_=[pth(pid, 260)]),
            drafts=[med_request("draft-iron", pid, IRON_SUCROSE, dose_text="100 mg IV at each dialysis x 10")],
        ),
        "Dialysis without calciphylaxis: IV iron is routine anaemia care, silent.",
        [],
    )

    pid = "c4-out-of-scope"
    add(
        "c4-ferrous-sulfate-out-of-scope",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000204",
            conditions=[condition("ida", pid, ICD10, "D50.9", "Iron deficiency anemia, unspecified")],
            labs=labs_prefetch(pid, egfr_=[egfr(pid, 84)]),
            drafts=[med_request("draft-fe", pid, text_only("Ferrous sulfate 325 mg tablet"), dose_text="1 tab daily")],
        ),
        "Iron deficiency with normal kidney function, no calciphylaxis: out of scope, silent.",
        [],
    )

    # --- C5 aluminium-based binders beyond 4 weeks (issue 14) --------------------------------
    pid = "c5-supply"
    add(
        "c5-aluminium-hydroxide-dialysis-90-days-of-supply",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000205",
            conditions=[esrd(pid), dialysis_dependence(pid)],
            labs=labs_prefetch(
                pid, ca=[calcium(pid, 9.0)], alb=[albumin(pid, 4.0)], phos=[phosphate(pid, 7.4)], pth_=[pth(pid, 240)]
            ),
            drafts=[
                med_request(
                    "draft-alu",
                    pid,
                    ALUMINIUM_HYDROXIDE_ATC,
                    dose_text="1 capsule by mouth three times daily with meals",
                    dispenseRequest={
                        "expectedSupplyDuration": {"value": 30, "unit": "days", "system": UCUM, "code": "d"},
                        "numberOfRepeatsAllowed": 2,
                    },
                )
            ],
        ),
        "Dialysis patient with phosphate 7.4 mg/dL; an aluminium hydroxide draft with a 30-day supply and "
        "2 repeats (90 days): past the 4-week limit. The card names the dates used and offers sevelamer "
        "(recommended) or lanthanum in its place.",
        [
            {
                "rule": "C5-aluminium-binder-beyond-4-weeks",
                "indicator": "warning",
                "drug": "Aluminium hydroxide",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "removes": "MedicationRequest/draft-alu",
                "detail": [
                    "Start: 2026-11-21 (read from authoredOn)",
                    "Runs to 2027-02-19, 90 days from the start",
                    "dispenseRequest.expectedSupplyDuration: 30 days x (1 + 2 repeats)",
                    "Phosphate: 7.4 mg/dL",
                    "ATC A02AB01",
                    "Phosphate needs a binder",
                ],
            }
        ],
    )

    pid = "c5-running"
    add(
        "c5-aluminium-hydroxide-calciphylaxis-taken-7-weeks-patient-view",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000206",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            medications=[
                {
                    **med_request("ma-alu", pid, ALUMINIUM_HYDROXIDE_ATC, status="active"),
                    "authoredOn": "2026-10-01",
                }
            ],
        ),
        "Calciphylaxis; an active aluminium hydroxide order written on 2026-10-01 with no end: taken for "
        "51 days, past 4 weeks. Mineral review, then the warning; the suggestion stops the order and "
        "creates sevelamer.",
        [
            {"rule": "M1-mineral-status-calciphylaxis", "indicator": "info", "drug": "", "no_suggestions": True},
            {
                "rule": "C5-aluminium-binder-beyond-4-weeks",
                "indicator": "warning",
                "drug": "Aluminium hydroxide",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "stops": "ma-alu",
                "detail": ["Start: 2026-10-01 (read from authoredOn)", "Taken for 51 days so far, since 2026-10-01"],
            },
        ],
    )

    pid = "c5-short"
    add(
        "c5-aluminium-hydroxide-dialysis-two-week-course-silent",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000207",
            conditions=[esrd(pid)],
            labs=labs_prefetch(pid, ca=[calcium(pid, 9.0)], alb=[albumin(pid, 4.0)], phos=[phosphate(pid, 8.1)]),
            drafts=[
                med_request(
                    "draft-alu",
                    pid,
                    ALUMINIUM_HYDROXIDE_ATC,
                    dosageInstruction=[
                        {
                            "text": "1 capsule three times daily with meals for 14 days",
                            "timing": {
                                "repeat": {
                                    "frequency": 3,
                                    "period": 1,
                                    "periodUnit": "d",
                                    "boundsDuration": {"value": 14, "unit": "days", "system": UCUM, "code": "d"},
                                }
                            },
                        }
                    ],
                )
            ],
        ),
        "Severe hyperphosphataemia on dialysis; aluminium hydroxide for 14 days (timing boundsDuration): "
        "within the 4-week limit, silent.",
        [],
    )

    pid = "c5-no-end"
    add(
        "c5-aluminium-hydroxide-dialysis-no-end-date",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000208",
            conditions=[esrd(pid)],
            labs=labs_prefetch(pid, ca=[calcium(pid, 9.0)], alb=[albumin(pid, 4.0)], phos=[phosphate(pid, 6.8)]),
            drafts=[med_request("draft-alu", pid, ALUMINIUM_HYDROXIDE_ATC)],
        ),
        "Dialysis; an aluminium hydroxide draft with no end date, duration or supply: how long it runs "
        "cannot be told, so an info card asks for a stop date within 4 weeks.",
        [
            {
                "rule": "C5-aluminium-binder-no-end-date",
                "indicator": "info",
                "drug": "Aluminium hydroxide",
                "no_suggestions": True,
                "detail": ["No end date, duration or supply found", "Start: 2026-11-21 (read from authoredOn)"],
            }
        ],
    )

    pid = "c5-antacid"
    add(
        "c5-aluminium-magnesium-antacid-out-of-scope",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000209",
            conditions=[condition("gerd", pid, ICD10, "K21.9", "Gastro-esophageal reflux disease without esophagitis")],
            labs=labs_prefetch(pid, egfr_=[egfr(pid, 88)]),
            drafts=[
                med_request(
                    "draft-antacid",
                    pid,
                    ALUMINIUM_MAGNESIUM_ANTACID,
                    dose_text="10 mL after meals as needed",
                    dispenseRequest={
                        "expectedSupplyDuration": {"value": 90, "unit": "days", "system": UCUM, "code": "d"}
                    },
                )
            ],
        ),
        "An aluminium/magnesium hydroxide antacid for 90 days in reflux, normal kidney function, no "
        "calciphylaxis: out of scope, silent.",
        [],
    )

    # --- C6 calcimimetics while calcium is low (issue 14) --------------------------------------
    pid = "c6-hold-draft"
    add(
        "c6-cinacalcet-dialysis-calcium-below-7-5-withhold",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000210",
            conditions=[esrd(pid), dialysis_dependence(pid)],
            labs=labs_prefetch(
                pid, ca=[calcium(pid, 7.0)], alb=[albumin(pid, 3.6)], phos=[phosphate(pid, 5.0)], pth_=[pth(pid, 520)]
            ),
            drafts=[
                med_request("draft-cina", pid, CINACALCET_60, dosageInstruction=[dose(60, "mg", text="60 mg daily")])
            ],
        ),
        "Dialysis; cinacalcet 60 mg selected while corrected calcium is 7.3 mg/dL (7.0 with albumin 3.6): "
        "below 7.5, so withhold (critical): the draft is removed, restart at 8.0 mg/dL one step lower "
        "(30 mg).",
        [
            {
                "rule": "C6-calcimimetic-calcium-below-7-5",
                "indicator": "critical",
                "drug": "cinacalcet",
                "removes": "MedicationRequest/draft-cina",
                "detail": [
                    "Corrected calcium: 7.3 mg/dL on 2026-11-16",
                    "back to 8 mg/dL",
                    "Current dose: 60 mg",
                    "next lower step of the titration is 30 mg",
                    "withholds the order",
                ],
            }
        ],
    )

    pid = "c6-hold-active"
    add(
        "c6-cinacalcet-calciphylaxis-calcium-below-7-5-put-on-hold-patient-view",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000211",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid, ca=7.1, alb=4.0, pth_value=300),
            medications=[
                med_request(
                    "ma-cina", pid, CINACALCET, status="active", dosageInstruction=[dose(30, "mg", text="30 mg daily")]
                )
            ],
        ),
        "Calciphylaxis with corrected calcium 7.1 mg/dL on cinacalcet 30 mg: the suggestion puts the "
        "active order on hold (not stopped); 30 mg is already the lowest step, which the card says, "
        "with the conflict over raising calcium in calciphylaxis.",
        [
            {"rule": "M1-mineral-status-calciphylaxis", "indicator": "info", "drug": "", "no_suggestions": True},
            {
                "rule": "C6-calcimimetic-calcium-below-7-5",
                "indicator": "critical",
                "drug": "cinacalcet",
                "holds": "ma-cina",
                "detail": ["already the lowest step", "Where sources disagree", "case by case"],
            },
        ],
    )

    pid = "c6-etelcalcetide"
    add(
        "c6-etelcalcetide-dialysis-calcium-below-7-5-its-own-label",
        request(
            "order-sign",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000212",
            conditions=[esrd(pid)],
            labs=labs_prefetch(pid, ca=[calcium(pid, 7.2)], alb=[albumin(pid, 4.0)], egfr_=[egfr(pid, 6)]),
            drafts=[
                med_request("draft-etel", pid, ETELCALCETIDE, dose_text="2.5 mg IV three times weekly at dialysis")
            ],
        ),
        "Dialysis; etelcalcetide with corrected calcium 7.2 mg/dL: withheld by its own label (stop below "
        "7.5 mg/dL; restart 5 mg lower once calcium is at or above the lower limit of normal), critical "
        "like cinacalcet.",
        [
            {
                "rule": "C6-calcimimetic-calcium-below-7-5",
                "indicator": "critical",
                "drug": "etelcalcetide",
                "removes": "MedicationRequest/draft-etel",
                "detail": ["Etelcalcetide's own label", "5 mg lower", "8.4 mg/dL", "etelcalcetide", "RxNorm 1876137"],
                "detail_absent": ["Current dose"],
            }
        ],
    )

    pid = "c6-ionized"
    add(
        "c6-cinacalcet-dialysis-ionized-calcium-below-cut-off",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000213",
            conditions=[esrd(pid)],
            labs={
                **labs_prefetch(pid, pth_=[pth(pid, 400)], egfr_=[egfr(pid, 6)]),
                "calcium": bundle(
                    obs("ica-1", pid, "1995-0", "Calcium.ionized [Moles/volume] in Serum or Plasma", 0.98, "mmol/L")
                ),
            },
            drafts=[med_request("draft-cina", pid, CINACALCET, dose_text="30 mg by mouth daily")],
        ),
        "Only an ionized calcium (0.98 mmol/L) is on file: below the derived cut-off of 1.04 mmol/L; the "
        "card says the ionized calcium was used and that the cut-offs are derived.",
        [
            {
                "rule": "C6-calcimimetic-calcium-below-7-5",
                "indicator": "critical",
                "drug": "cinacalcet",
                "removes": "MedicationRequest/draft-cina",
                "detail": ["Ionized calcium: 0.98 mmol/L", "1.04 and 1.1 mmol/L", "No source gives"],
            }
        ],
    )

    pid = "c6-band-calciphylaxis"
    add(
        "c6-cinacalcet-calciphylaxis-calcium-7-9-conflict",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000214",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid, ca=7.9, alb=4.0, pth_value=350),
            drafts=[med_request("draft-cina", pid, CINACALCET, dose_text="30 mg by mouth daily")],
        ),
        "Calciphylaxis with corrected calcium 7.9 mg/dL and a new cinacalcet draft: the labels say do "
        "not start a calcimimetic below the lower limit of normal, so the warning says so and removes "
        "the draft; the protocol's remedy would add calcium, which calciphylaxis care avoids (the "
        "conflict is stated).",
        [
            {
                "rule": "C6-calcimimetic-low-calcium-calciphylaxis",
                "indicator": "warning",
                "drug": "cinacalcet",
                "removes": "MedicationRequest/draft-cina",
                "detail": [
                    "Do not start or increase a calcimimetic now",
                    "Corrected calcium: 7.9 mg/dL",
                    "calcium-containing binders",
                    "Where sources disagree",
                    "Dialysate calcium advice differs",
                ],
            }
        ],
    )

    pid = "c6-band-dialysis"
    add(
        "c6-cinacalcet-dialysis-calcium-8-1-info",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000215",
            conditions=[esrd(pid)],
            labs=labs_prefetch(
                pid, ca=[calcium(pid, 8.1)], alb=[albumin(pid, 4.0)], phos=[phosphate(pid, 5.0)], pth_=[pth(pid, 280)]
            ),
            medications=[med_request("ma-cina", pid, CINACALCET, status="active", dose_text="30 mg daily")],
        ),
        "Dialysis without calciphylaxis, corrected calcium 8.1 mg/dL on cinacalcet: info with the "
        "protocol's advice (calcium-containing binders and/or vitamin D; withhold only below 7.5).",
        [
            {
                "rule": "C6-calcimimetic-low-calcium-dialysis",
                "indicator": "info",
                "drug": "cinacalcet",
                "no_suggestions": True,
                "detail": ["8.1 mg/dL", "withholds it only below 7.5 mg/dL"],
                "detail_absent": ["Where sources disagree"],
            }
        ],
    )

    pid = "c6-normal"
    add(
        "c6-cinacalcet-dialysis-normal-calcium-silent",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000216",
            conditions=[esrd(pid)],
            labs=labs_prefetch(pid, ca=[calcium(pid, 9.0)], alb=[albumin(pid, 4.0)], pth_=[pth(pid, 420)]),
            drafts=[med_request("draft-cina", pid, CINACALCET, dose_text="30 mg by mouth daily")],
        ),
        "Dialysis, corrected calcium 9.0 mg/dL: cinacalcet is fine, silent.",
        [],
    )

    pid = "c6-pth-at-target"
    add(
        "c6-cinacalcet-new-order-with-pth-at-target-is-not-started",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000218",
            conditions=[esrd(pid)],
            labs=labs_prefetch(pid, ca=[calcium(pid, 9.3)], alb=[albumin(pid, 4.0)], pth_=[pth(pid, 210)]),
            drafts=[med_request("draft-cina", pid, CINACALCET, dose_text="30 mg by mouth daily")],
        ),
        "Dialysis, calcium 9.3 mg/dL, PTH 210 pg/mL (within the 150-300 target): a new cinacalcet order "
        "would lower a PTH already at target, and over-suppression is itself a calciphylaxis risk: a "
        "warning not to start it, and the draft is removed.",
        [
            {
                "rule": "C6-calcimimetic-pth-not-above-target",
                "indicator": "warning",
                "drug": "cinacalcet",
                "removes": "MedicationRequest/draft-cina",
                "detail": ["Intact PTH: 210 pg/mL", "within the 150-300 pg/mL target", "adynamic bone"],
            }
        ],
    )

    pid = "c6-out-of-scope"
    add(
        "c6-cinacalcet-normal-kidney-function-out-of-scope",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000217",
            conditions=[condition("phpt", pid, ICD10, "E21.0", "Primary hyperparathyroidism")],
            labs=labs_prefetch(pid, ca=[calcium(pid, 7.2)], alb=[albumin(pid, 4.0)], egfr_=[egfr(pid, 76)]),
            drafts=[med_request("draft-cina", pid, CINACALCET, dose_text="30 mg by mouth twice daily")],
        ),
        "Primary hyperparathyroidism with normal kidney function, no calciphylaxis: out of scope, silent.",
        [],
    )

    # --- M1: sodium thiosulfate as an order, CRP with its trend (issue 14) --------------------
    pid = "m1-haemodialysis"
    add(
        "m1-sodium-thiosulfate-offered-on-haemodialysis-with-crp-trend",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000218",
            conditions=[calciphylaxis(pid), esrd(pid)],
            procedures=[procedure("hd-1", pid, *HAEMODIALYSIS, when="2026-11-19T14:00:00Z")],
            medications=[med_request("ma-sev", pid, SEVELAMER, status="active")],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 9.1)],
                alb=[albumin(pid, 4.0)],
                phos=[phosphate(pid, 6.2)],
                pth_=[pth(pid, 260)],
                egfr_=[egfr(pid, 7)],
                crp_=[crp(pid, 42.0), crp(pid, 18.0, when="2026-10-20T08:30:00Z", oid="crp-0")],
            ),
        ),
        "Calciphylaxis on haemodialysis (a dialysis Procedure 2 days ago) without sodium thiosulfate: "
        "the mineral review offers it as a one-click order (25 g IV during the last part of dialysis, "
        "3 times weekly; RxNorm 237832), with the 12.5-25 g range and the meta-analysis; CRP 42 mg/L, "
        "up from 18; phosphate above target brings the intensified-dialysis conflict.",
        [
            {
                "rule": "M1-mineral-status-calciphylaxis",
                "indicator": "info",
                "drug": "Calciphylaxis mineral review",
                "creates": [SODIUM_THIOSULFATE_RX],
                "detail": [
                    "| CRP | 42.0 mg/L on 2026-11-16",
                    "up from 18.0 mg/L on 2026-10-20",
                    "no monitoring interval given",
                    "On haemodialysis (Hemodialysis (procedure) (Procedure/hd-1))",
                    "No allergy or intolerance recorded to sodium thiosulfate",
                    "No sodium thiosulfate already active",
                    "12.5-25 g",
                    "meta-analysis",
                    "Intensified dialysis",
                    "no data that it helps",
                ],
            }
        ],
    )

    pid = "m1-peritoneal"
    add(
        "m1-no-sodium-thiosulfate-order-on-peritoneal-dialysis",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000219",
            conditions=[calciphylaxis(pid), esrd(pid)],
            procedures=[procedure("pd-1", pid, *PERITONEAL_DIALYSIS, when="2026-11-20T07:00:00Z")],
            medications=[med_request("ma-sev", pid, SEVELAMER, status="active")],
            labs=calciphylaxis_labs(pid),
        ),
        "Calciphylaxis on peritoneal dialysis: the haemodialysis regimen of sodium thiosulfate is not "
        "offered as an order; the card names it and says why.",
        [
            {
                "rule": "M1-mineral-status-calciphylaxis",
                "indicator": "info",
                "drug": "no sodium thiosulfate",
                "no_suggestions": True,
                "detail": ["Haemodialysis not confirmed", "peritoneal dialysis recorded", "Procedure/pd-1"],
            }
        ],
    )

    pid = "m1-sts-given"
    add(
        "m1-sodium-thiosulfate-already-given-at-dialysis",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000220",
            conditions=[calciphylaxis(pid), esrd(pid)],
            procedures=[procedure("hd-1", pid, *HAEMODIALYSIS, when="2026-11-19T14:00:00Z")],
            medications=[med_request("ma-sev", pid, SEVELAMER, status="active")],
            administrations=[administration("adm-sts", pid, SODIUM_THIOSULFATE, "2026-11-19T17:20:00Z")],
            labs=calciphylaxis_labs(pid),
        ),
        "Calciphylaxis on haemodialysis, sodium thiosulfate given at the last session (an "
        "administration): no second order is offered and the card does not say it is missing.",
        [
            {
                "rule": "M1-mineral-status-calciphylaxis",
                "indicator": "info",
                "drug": "Calciphylaxis mineral review",
                "no_suggestions": True,
                "detail_absent": ["No sodium thiosulfate", "no sodium thiosulfate"],
            }
        ],
    )

    pid = "m1-modality-unknown"
    add(
        "m1-dialysis-modality-not-recorded-asks-to-confirm",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000221",
            conditions=[calciphylaxis(pid), dialysis_dependence(pid)],
            medications=[med_request("ma-sev", pid, SEVELAMER, status="active")],
            labs=calciphylaxis_labs(pid),
        ),
        "Calciphylaxis with 'Dependence on renal dialysis' (Z99.2), modality not recorded: no order is "
        "offered; the card asks to confirm haemodialysis.",
        [
            {
                "rule": "M1-mineral-status-calciphylaxis",
                "indicator": "info",
                "drug": "no sodium thiosulfate",
                "no_suggestions": True,
                "detail": ["dialysis modality not recorded", "Condition/dialysis", "record it, or order by hand"],
            }
        ],
    )

    # --- Recognition beyond US data (issue 19) ---------------------------------------------
    pid = "c2-europe-fluindione"
    add(
        "c2-fluindione-atc-european-chart-si-units",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000301",
            conditions=[calciphylaxis(pid), esrd(pid), atrial_fibrillation(pid)],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 2.35, unit="mmol/L")],
                alb=[albumin(pid, 36, unit="g/L")],
                phos=[phosphate(pid, 1.95, unit="mmol/L")],
                pth_=[pth(pid, 34, unit="pmol/L")],
                egfr_=[egfr(pid, 7)],
                weight_=[weight(pid, 72.0)],
            ),
            drafts=[
                med_request(
                    "draft-fluindione",
                    pid,
                    {
                        "coding": [{"system": ATC, "code": "B01AA12"}],
                        "text": "Préviscan 20 mg, comprimé quadrisécable",
                    },
                    dose_text="1 comprimé le soir",
                )
            ],
        ),
        "A French chart: fluindione ordered by its local brand (Préviscan) and the ATC code B01AA12 "
        "(the whole B01AA group is vitamin K antagonists), labs in SI units (calcium mmol/L, "
        "albumin g/L, phosphate mmol/L, PTH pmol/L): the calciphylaxis card for a VKA, by code.",
        [
            {
                "rule": "C2-vka-calciphylaxis",
                "indicator": "critical",
                "drug": "Préviscan",
                "substitutes": [APIXABAN_5_RX],
                "removes": "MedicationRequest/draft-fluindione",
                "detail": ["Recognised by code ATC B01AA12", "Order: Préviscan 20 mg", "age 68, weight 72 kg"],
            }
        ],
    )

    pid = "c3-japan-maxacalcitol"
    add(
        "c3-maxacalcitol-iv-given-at-dialysis-japanese-text",
        request(
            "patient-view",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000302",
            conditions=[esrd(pid), dialysis_dependence(pid)],
            administrations=[
                administration("adm-oxarol", pid, {"text": "オキサロール注5μg 静注透析用"}, "2026-11-19T17:00:00Z")
            ],
            labs=labs_prefetch(
                pid,
                ca=[calcium(pid, 2.75, unit="mmol/L")],
                alb=[albumin(pid, 38, unit="g/L")],
                phos=[phosphate(pid, 1.6, unit="mmol/L")],
                pth_=[pth(pid, 180)],
                egfr_=[egfr(pid, 5)],
            ),
        ),
        "A Japanese dialysis unit: maxacalcitol (Oxarol, 'オキサロール注') given IV at the end of "
        "haemodialysis, named only in Japanese; calcium 2.75 mmol/L (corrected 11.1 mg/dL): the "
        "active vitamin D card, recognised from the brand in katakana.",
        [
            {
                "rule": "C3-active-vitamin-d-dialysis",
                "indicator": "warning",
                "drug": "オキサロール",
                "detail": ["オキサロール", "brand name", "given 2026-11-19", "reported as 2.75 mmol/L"],
            }
        ],
    )

    pid = "c1-ndc-only"
    add(
        "c1-calcium-acetate-coded-only-by-ndc",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000303",
            conditions=[calciphylaxis(pid), esrd(pid)],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-ndc", pid, {"coding": [{"system": NDC, "code": "00054008813"}]})],
        ),
        "A US order coded only by its NDC (00054008813, calcium acetate 667 mg capsules), with no "
        "display and no text: recognised through the NDC table and named in words on the card.",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium acetate 667 MG Oral Capsule",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "removes": "MedicationRequest/draft-ndc",
                "detail": ["NDC 00054008813"],
                "detail_absent": ["http://hl7.org/fhir/sid/ndc"],
            }
        ],
    )

    pid = "c3-calcium-meq"
    add(
        "c3-calcitriol-dialysis-calcium-in-meq-per-litre",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000304",
            conditions=[esrd(pid)],
            labs=labs_prefetch(
                pid,
                ca=[obs("ca-meq", pid, "17861-6", "Calcium [Mass/volume] in Serum or Plasma", 5.6, "meq/L")],
                alb=[albumin(pid, 3.8)],
                phos=[phosphate(pid, 5.0)],
                pth_=[pth(pid, 280)],
            ),
            drafts=[med_request("draft-ctr", pid, CALCITRIOL, dose_text="0.25 mcg by mouth daily")],
        ),
        "Calcium reported in mEq/L: 5.6 mEq/L is 2.8 mmol/L, 11.2 mg/dL (calcium is divalent), "
        "corrected 11.4 mg/dL: hold calcitriol on dialysis (K/DOQI).",
        [
            {
                "rule": "C3-active-vitamin-d-dialysis",
                "indicator": "warning",
                "drug": "calcitriol",
                "removes": "MedicationRequest/draft-ctr",
                "detail": ["11.4 mg/dL", "reported as 5.6 meq/L"],
            }
        ],
    )

    pid = "c1-stray"
    stray_condition = calciphylaxis("someone-else")
    stray_condition["id"] = "stray-calciphylaxis"
    stray_order = med_request("stray-warf", "someone-else", WARFARIN, status="active")
    add(
        "c1-one-stray-resource-about-another-patient-is-dropped-alone",
        request(
            "order-select",
            pid,
            instance="5d0a1c52-6d3e-4c0b-9a55-000000000305",
            conditions=[calciphylaxis(pid), esrd(pid), stray_condition],
            medications=[med_request("own-metformin", pid, METFORMIN_TEXT, status="active"), stray_order],
            labs=calciphylaxis_labs(pid),
            drafts=[med_request("draft-ca", pid, CALCIUM_ACETATE)],
        ),
        "Prefetch holding one Condition and one MedicationRequest about another patient: each is "
        "dropped alone and never acted on; this patient's calciphylaxis card keeps its substitutes "
        "and says what was left out.",
        [
            {
                "rule": "C1-calcium-binder-calciphylaxis",
                "indicator": "critical",
                "drug": "calcium acetate",
                "substitutes": [SEVELAMER_RX, LANTHANUM_RX],
                "removes": "MedicationRequest/draft-ca",
                "detail": [
                    "2 resource(s) about another patient",
                    "1 in conditions (diagnoses), 1 in active medication list",
                ],
                "detail_absent": ["stray-warf", "someone-else", "stray-calciphylaxis"],
            }
        ],
    )

    return s


def main() -> None:
    written = scenarios()
    for old in HERE.glob("*.json"):
        if old.stem not in written:
            old.unlink()
    for name, body in written.items():
        (HERE / f"{name}.json").write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(written)} fixtures to {HERE}")


if __name__ == "__main__":
    main()
