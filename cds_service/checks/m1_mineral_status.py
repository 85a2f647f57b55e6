"""M1: on patient-view, one info card summarising mineral status for a calciphylaxis patient.

Latest corrected calcium, phosphate, Ca x P and PTH against their targets (the analyte table;
the phosphate, PTH and Ca x P targets are those of stage 5 CKD and dialysis, so for a patient
neither on dialysis nor in kidney failure they are shown but not applied, and the card says to
use the laboratory's reference ranges), CRP with its trend (seeds 001, 004: the most helpful test
to follow, which seed 003 disputes, a conflict the card states; no interval given, so a missing
CRP is "not measured", never "overdue"), which monitoring is overdue or missing, and whether
sodium thiosulfate is taken (an order, the home list or a dose given lately).

Without sodium thiosulfate, the card offers it as a one-click order to create, with the
conflicting evidence (info only: a meta-analysis found no benefit, seed 004): the MGH regimen
(seed 003) of 25 g IV in 100 mL saline during the last part of each haemodialysis, three times
weekly. Only for a patient on haemodialysis (``modality``: peritoneal dialysis, an unrecorded
modality or no dialysis get the text and a line saying why there is no order) and never with
an allergy to it; what was checked is listed on the card.

Evidence shown where it helps the decision: the dialysate calcium conflict when calcium is above
target on dialysis; the intensified-dialysis conflict when phosphate is above target on
dialysis; the parathyroidectomy thresholds when PTH is above 500 pg/mL.
"""

from __future__ import annotations

from cds_service.checks.findings import Finding, LabValue
from cds_service.checks.labs import LabFacts, above, below, calcium_for_rules, calcium_notes, pth_notes
from cds_service.checks.rule import ChartRule
from cds_service.checks.scope import calciphylaxis_conditions, calcium_wanted, lab_gaps, unavailable_gaps
from cds_service.checks.substitution import SubstitutionPlan, plan_for
from cds_service.patient import sources
from cds_service.patient.analytes import ANALYTES
from cds_service.patient.model import PatientRecord

RULE_ID = "M1-mineral-status-calciphylaxis"


def position(lab: LabValue) -> str:
    """'low', 'high' or 'in_range' against the analyte's target (a result reported as "<x" or
    ">x" is out of range only when its bound shows it)."""
    spec = ANALYTES[lab.analyte]
    assert spec.target is not None, f"{lab.analyte} has no target"
    low, high = spec.target
    if low is not None and below(lab, low):
        return "low"
    if high is not None and (not below(lab, high) if spec.target_high_exclusive else above(lab, high)):
        return "high"
    return "in_range"


def out_of_range(labs: tuple[LabValue, ...]) -> tuple[tuple[str, str], ...]:
    """(analyte, "low" | "high") for each recent value outside its target."""
    positions = (
        (lab.analyte, position(lab)) for lab in labs if ANALYTES[lab.analyte].target is not None and not lab.stale
    )
    return tuple((analyte, where) for analyte, where in positions if where != "in_range")


# Targets that are those of stage 5 CKD and dialysis (K/DOQI via seed 000): not applied to a
# patient who is neither on dialysis nor in kidney failure (non-uraemic calciphylaxis).
DIALYSIS_TARGETS = frozenset({"phosphate", "pth", "ca_x_p"})


def mineral_status(record: PatientRecord, labs: LabFacts) -> list[Finding]:
    if not record.has_calciphylaxis:
        return []
    kidney_failure = record.on_dialysis
    # The corrected calcium, or the ionized calcium when there is no total calcium.
    calcium = calcium_for_rules(labs)
    cc, pth = (calcium.value if calcium is not None else None), labs.latest_pth
    calcium_labs = calcium.shown if calcium is not None else ()
    shown = calcium_labs + tuple(v for v in (labs.phosphate, labs.ca_x_p, pth, labs.crp) if v is not None)
    notes: list[str] = []
    if calcium is not None and cc is not None and not cc.stale:
        has_target = ANALYTES[cc.analyte].target is not None
        if (position(cc) == "high") if has_target else calcium.high:
            # The dialysate is a source of calcium only for a patient on dialysis.
            notes.append("calcium_above_target_dialysis" if record.on_dialysis else "calcium_above_target")
    phosphate = labs.phosphate
    if record.on_dialysis and phosphate is not None and not phosphate.stale and position(phosphate) == "high":
        notes.append("phosphate_above_target_dialysis")  # where intensified dialysis is argued
    notes += calcium_notes(calcium)
    if kidney_failure:
        notes += pth_notes(pth)
    else:
        notes.append("not_on_dialysis_targets")
    checked: tuple[str, ...] = (
        sources.CALCIUM,
        sources.ALBUMIN,
        sources.PHOSPHATE,
        sources.PTH,
        sources.CRP,
        sources.MEDICATIONS,
    )
    plan = SubstitutionPlan()
    if sources.MEDICATIONS not in record.unavailable and not any(
        "sodium_thiosulfate" in m.drug_classes for m in record.medications
    ):
        notes.append("sts_not_prescribed")
        # Offered to create (there is no order to replace) when the patient may have it; doses
        # given at dialysis are on the administrations, so say when those could not be read.
        plan = plan_for(RULE_ID, record, labs)
        checked += (sources.MEDICATION_STATEMENTS, sources.MEDICATION_ADMINISTRATIONS)
    gaps = lab_gaps(
        record, calcium_wanted(cc) | {"phosphate": labs.phosphate, "pth": pth, "crp": labs.crp}
    ) + unavailable_gaps(record, checked)
    flagged = out_of_range(shown)
    if not kidney_failure:
        flagged = tuple((analyte, where) for analyte, where in flagged if analyte not in DIALYSIS_TARGETS)
    return [
        Finding(
            rule_id=RULE_ID,
            indicator="info",
            review=None,
            conditions=calciphylaxis_conditions(record),
            labs=shown,
            reasons=tuple(f"{analyte}_{where}" for analyte, where in flagged),
            positions=flagged,
            notes=tuple(notes) + plan.notes,
            substitutions=plan.substitutions,
            safety_checks=plan.safety_checks,
            gaps=gaps + plan.gaps,
        )
    ]


RULE = ChartRule(name="m1_mineral_status", finding_ids=(RULE_ID,), check=mineral_status)
