"""C1: calcium-based phosphate binders (clinical-rules.md; seeds 000, 001, 002).

* calciphylaxis: critical, stop; substitute a calcium-free binder (sevelamer at the label's
  starting dose for the phosphate, recommended, or lanthanum) where a recent phosphate shows one is
  needed (at target: offered, not recommended; below target: none);
* dialysis without calciphylaxis: warning only when corrected calcium > 10.2 mg/dL, PTH < 150
  pg/mL on 2 consecutive results (K/DOQI), or vascular / soft-tissue calcification is recorded
  (by code or in the problem-list text; imaging reports are not read, which the card says).
  Results older than the monitoring interval never fire the warning: they give an info card
  asking for a recheck instead;
* hypocalcaemia guard (both tiers): with a recent calcium below the lower limit of normal, or a
  recent parathyroidectomy (hungry bone), the card is a warning to review the dose with the
  calcium in its summary, and offers no one-click stop;
* anyone else: silent.
"""

from __future__ import annotations

from datetime import timedelta

from cds_service.checks.findings import Finding, Gap
from cds_service.checks.labs import LabFacts, below, calcium_for_rules, calcium_notes
from cds_service.checks.rule import OrderRule
from cds_service.checks.scope import (
    calciphylaxis_conditions,
    calcium_wanted,
    dialysis_evidence,
    hypocalcaemia_guard,
    hypocalcaemia_review,
    lab_gaps,
    unavailable_gaps,
)
from cds_service.checks.substitution import plan_for, with_notes
from cds_service.knowledge import thresholds as T
from cds_service.patient.model import OrderUnderReview, PatientRecord

RULE_CALCIPHYLAXIS = "C1-calcium-binder-calciphylaxis"
RULE_DIALYSIS = "C1-calcium-binder-dialysis"
RULE_DIALYSIS_STALE = "C1-calcium-binder-dialysis-stale-data"
LAB_KEYS = ("calcium", "albumin", "pth")


def check_calcium_binder(record: PatientRecord, review: OrderUnderReview, labs: LabFacts) -> list[Finding]:
    calcium = calcium_for_rules(labs)
    cc = calcium.value if calcium is not None else None
    calcium_labs = calcium.shown if calcium is not None else ()
    shown_labs = calcium_labs + tuple(v for v in (labs.phosphate, labs.latest_pth) if v is not None)

    guard = hypocalcaemia_guard(record, labs)
    if record.has_calciphylaxis:
        if guard is not None:
            notes = calcium_notes(calcium)
            return [
                hypocalcaemia_review(
                    RULE_CALCIPHYLAXIS, review, record, guard, shown_labs, reasons=("calciphylaxis",), notes=notes
                )
            ]
        plan = with_notes(plan_for(RULE_CALCIPHYLAXIS, record, labs, review.order), *calcium_notes(calcium))
        return [
            Finding(
                rule_id=RULE_CALCIPHYLAXIS,
                indicator="critical",
                review=review,
                conditions=calciphylaxis_conditions(record),
                labs=shown_labs,
                reasons=("calciphylaxis",),
                **plan.finding_fields(),
                gaps=plan.gaps,
            )
        ]
    if not record.on_dialysis:
        return []

    conditions, scope_labs = dialysis_evidence(record, labs)
    fired: list[str] = []
    stale: list[str] = []
    gaps: list[Gap] = []

    calcification = record.conditions_of("vascular_calcification")
    if calcification:
        fired.append("calcification")
        conditions = conditions + calcification
    else:
        gaps.append(Gap("calcification_not_recorded"))

    if calcium is not None and cc is not None and calcium.high:
        kind = "ionized_calcium_high" if cc.analyte == "ionized_calcium" else "corrected_calcium_high"
        (stale if cc.stale else fired).append(kind)

    recent_pth = labs.pth[: T.PTH_OVERSUPPRESSED_CONSECUTIVE]
    pth_labs = recent_pth
    low = [below(p, T.PTH_OVERSUPPRESSED) for p in recent_pth]
    # "2 consecutive" results of the current course: the earlier one at most 6 months old.
    series_window = timedelta(days=T.PTH_CONSECUTIVE_WITHIN_DAYS)
    current = all(p.effective is not None and record.now - p.effective <= series_window for p in recent_pth)
    if len(recent_pth) == T.PTH_OVERSUPPRESSED_CONSECUTIVE and all(low) and current:
        # "2 consecutive": the latest must be recent; the one before is older by design.
        (stale if recent_pth[0].stale else fired).append("pth_low_consecutive")
    elif recent_pth and low[0] and not recent_pth[0].stale:
        gaps.append(Gap("pth_low_once"))
        pth_labs = recent_pth[:1]
    else:
        pth_labs = recent_pth[:1]

    gaps += lab_gaps(record, calcium_wanted(cc) | {"pth": labs.latest_pth})
    gaps += unavailable_gaps(record, LAB_KEYS)
    used = calcium_labs + tuple(v for v in (*pth_labs, labs.phosphate) if v is not None) + scope_labs

    if fired and guard is not None:
        return [
            hypocalcaemia_review(
                RULE_DIALYSIS,
                review,
                record,
                guard,
                used,
                reasons=tuple(fired),
                notes=calcium_notes(calcium),
                gaps=tuple(gaps),
                conditions=conditions,
            )
        ]
    if fired:
        plan = with_notes(plan_for(RULE_DIALYSIS, record, labs, review.order), *calcium_notes(calcium))
        return [
            Finding(
                rule_id=RULE_DIALYSIS,
                indicator="warning",
                review=review,
                conditions=conditions,
                labs=used,
                reasons=tuple(fired),
                **plan.finding_fields(),
                gaps=tuple(gaps) + plan.gaps,
            )
        ]
    if stale:
        return [
            Finding(
                rule_id=RULE_DIALYSIS_STALE,
                indicator="info",
                review=review,
                conditions=conditions,
                labs=used,
                reasons=tuple(f"stale_{r}" for r in stale),
                notes=calcium_notes(calcium),
                gaps=tuple(gaps),
            )
        ]
    return []


RULE = OrderRule(
    name="c1_calcium_binders",
    drug_class="calcium_binder",
    finding_ids=(RULE_CALCIPHYLAXIS, RULE_DIALYSIS, RULE_DIALYSIS_STALE),
    check=check_calcium_binder,
)
