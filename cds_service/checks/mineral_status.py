"""M1: on patient-view, one info card summarising mineral status for a calciphylaxis patient.

Latest corrected calcium, phosphate, Ca x P and PTH against their targets (thresholds.py), which
monitoring is overdue (record.STALE_AFTER) or missing, and whether sodium thiosulfate is on the
active medication list (with the conflicting evidence; info only, seed 004).
"""

from __future__ import annotations

from cds_service.checks import thresholds as T
from cds_service.checks.findings import Finding, LabValue
from cds_service.checks.labs import LabFacts, lab_facts
from cds_service.checks.scope import calciphylaxis_conditions, lab_gaps, unavailable_gaps
from cds_service.prefetch import MEDICATIONS_KEY
from cds_service.record import PatientRecord

RULE = "M1-mineral-status-calciphylaxis"

# Analytes with a target: (low, high); None = no bound on that side.
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "corrected_calcium": T.CORRECTED_CALCIUM_TARGET,
    "phosphate": T.PHOSPHATE_TARGET,
    "ca_x_p": (None, T.CA_X_P_MAX),
    "pth": T.PTH_TARGET,
}


def position(analyte: str, value: float) -> str:
    low, high = TARGETS[analyte]
    if analyte == "ca_x_p":  # "keep below 55": 55 itself is out of target
        return "high" if high is not None and value >= high else "in_range"
    if low is not None and value < low:
        return "low"
    if high is not None and value > high:
        return "high"
    return "in_range"


def out_of_range(labs: tuple[LabValue, ...]) -> tuple[str, ...]:
    """Reason keys like "phosphate_high" for each recent value outside its target."""
    return tuple(
        f"{lab.analyte}_{position(lab.analyte, lab.value)}"
        for lab in labs
        if lab.analyte in TARGETS and not lab.stale and position(lab.analyte, lab.value) != "in_range"
    )


def mineral_status(record: PatientRecord, labs: LabFacts | None = None) -> list[Finding]:
    if not record.has_calciphylaxis:
        return []
    labs = labs or lab_facts(record)
    shown = tuple(
        v for v in (labs.corrected_calcium, labs.phosphate, labs.ca_x_p, labs.latest_pth, labs.crp) if v is not None
    )
    notes: list[str] = []
    cc, pth = labs.corrected_calcium, labs.latest_pth
    if cc is not None and not cc.stale and position("corrected_calcium", cc.value) == "high":
        notes.append("calcium_above_target")
    if pth is not None and not pth.stale:
        if pth.value > T.PTH_PARATHYROIDECTOMY_001_004:
            notes.append("parathyroidectomy_referral")
        elif pth.value < T.PTH_AVOID_BELOW:
            notes.append("pth_below_avoid")
    if MEDICATIONS_KEY not in record.unavailable and not any(
        "sodium_thiosulfate" in m.drug_classes for m in record.medications
    ):
        notes.append("sts_not_prescribed")
    gaps = (
        lab_gaps(record, {"corrected_calcium": cc, "phosphate": labs.phosphate, "pth": pth})
        + unavailable_gaps(record, ("calcium", "albumin", "phosphate", "pth", MEDICATIONS_KEY))
    )
    return [
        Finding(
            rule_id=RULE,
            indicator="info",
            review=None,
            conditions=calciphylaxis_conditions(record),
            labs=shown,
            reasons=out_of_range(shown),
            notes=tuple(notes),
            gaps=gaps,
        )
    ]
