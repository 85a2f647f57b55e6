"""Builders of hand-built PatientRecords for the rule tests (no FHIR parsing, no HTTP)."""

from __future__ import annotations

from datetime import timedelta

from cds_service.patient.model import ConditionFact, LabResult, MedicationOrder, OrderUnderReview, PatientRecord
from tests.conftest import FROZEN_NOW

NOW = FROZEN_NOW
UNITS = {
    "calcium": "mg/dL",
    "corrected_calcium": "mg/dL",
    "albumin": "g/dL",
    "phosphate": "mg/dL",
    "pth": "pg/mL",
    "egfr": "mL/min/{1.73_m2}",
    "crp": "mg/L",
    "ionized_calcium": "mmol/L",
    "body_weight": "kg",
}

_counter = iter(range(1, 10_000))


def lab(analyte: str, value: float, days_ago: float = 3, *, original: tuple[float, str] | None = None) -> LabResult:
    unit = UNITS[analyte]
    return LabResult(
        analyte=analyte,
        value=value,
        unit=unit,
        original_value=original[0] if original else value,
        original_unit=original[1] if original else unit,
        effective=NOW - timedelta(days=days_ago),
        resource_id=f"Observation/{analyte}-{next(_counter)}",
        loinc="x",
        status="final",
    )


def cond(
    kind: str, display: str | None = None, rid: str | None = None, *, dialysis_implied: bool = False
) -> ConditionFact:
    return ConditionFact(
        dialysis_implied=dialysis_implied,
        kind=kind,
        resource_id=rid or f"Condition/{kind}",
        display=display or kind,
        matched_by="code",
        code="1",
        system="http://snomed.info/sct",
        clinical_status="active",
        verification_status="confirmed",
    )


def med(
    *classes: str,
    name: str = "some drug",
    rid: str = "MedicationRequest/d1",
    status: str = "draft",
    matched_by: str = "code",
    raw: dict | None = None,
) -> MedicationOrder:
    return MedicationOrder(
        resource_id=rid,
        resource_type=rid.split("/")[0],
        status=status,
        drug_name=name,
        drug_classes=frozenset(classes),
        matched_by=matched_by,
        matched_code="http://www.nlm.nih.gov/research/umls/rxnorm|1" if matched_by == "code" else None,
        raw=raw if raw is not None else {"resourceType": rid.split("/")[0], "id": rid.split("/")[-1], "status": status},
    )


def record(
    *, conditions=(), labs=(), medications=(), unavailable=None, incomplete=None, drafts=(), birth_date=None
) -> PatientRecord:
    series: dict[str, list[LabResult]] = {}
    for item in labs:
        series.setdefault(item.analyte, []).append(item)
    return PatientRecord(
        patient_id="p1",
        now=NOW,
        conditions=tuple(conditions),
        medications=tuple(medications),
        labs={k: tuple(sorted(v, key=lambda r: r.effective, reverse=True)) for k, v in series.items()},
        unavailable=dict(unavailable or {}),
        incomplete=dict(incomplete or {}),
        drafts=tuple(drafts),
        birth_date=birth_date,
    )


def draft(order: MedicationOrder) -> OrderUnderReview:
    return OrderUnderReview(order=order, is_draft=True)


def active(order: MedicationOrder) -> OrderUnderReview:
    return OrderUnderReview(order=order, is_draft=False)


CALCIUM_ACETATE = med("calcium_binder", name="calcium acetate 667 MG Oral Tablet")
WARFARIN = med("vka", name="warfarin sodium 5 MG Oral Tablet")
CALCITRIOL = med("active_vitamin_d", name="calcitriol 0.00025 MG Oral Capsule")
CALCIPHYLAXIS = cond("calciphylaxis", "Calciphylaxis")
# End-stage renal disease implies dialysis (ICD-10-CM N18.6 includes CKD requiring chronic dialysis).
ESRD = cond("kidney_failure", "End-stage renal disease", dialysis_implied=True)
# CKD stage 5 without dialysis: kidney failure, dialysis not shown.
CKD5 = cond("kidney_failure", "Chronic kidney disease stage 5", rid="Condition/ckd5")
NORMAL_LABS = (lab("calcium", 9.0), lab("albumin", 4.0), lab("phosphate", 5.0), lab("pth", 250))
# Phosphate above target on a calcium binder: a calcium-free binder is recommended.
HIGH_PHOSPHATE_LABS = (lab("calcium", 9.0), lab("albumin", 4.0), lab("phosphate", 6.4), lab("pth", 250))


def only(findings):
    assert len(findings) == 1, [f.rule_id for f in findings]
    return findings[0]


# --- C1 calcium-based binders ---------------------------------------------------------------
