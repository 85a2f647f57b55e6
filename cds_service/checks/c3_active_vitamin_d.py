"""C3: active vitamin D sterols (clinical-rules.md; seeds 000, 001, 003, 004).

* calciphylaxis: critical, stop. Seed 000 says stop until the lesions heal; 003 says avoid; 004
  says use cautiously. We chose critical because stopping is the most specific recommendation and
  the drug raises calcium absorption; the card states the disagreement. Calcifediol, a prohormone
  that none of the sources' lists of active sterols names, gets a warning instead.
* dialysis without calciphylaxis: warning when a recent corrected calcium is above 10.2 mg/dL
  (K/DOQI 6.3: reduce or stop *until* calcium is back in target): the suggestion holds an active
  order (on-hold, not stopped); an out-of-date value gives an info card asking for a recheck.
* Substitute: cinacalcet 30 mg daily, only for a patient on dialysis (its label), with a recent
  PTH above target (300 pg/mL; above 500 offered but not recommended, beside the
  parathyroidectomy note) and a recent corrected calcium not below 8.4 mg/dL; PTH at or below
  target gets a note that no PTH-lowering drug is needed. When no substitute is safe the card
  offers to stop (or hold) the order alone.
* Hypocalcaemia guard: with a recent calcium below 8.4 mg/dL or a recent parathyroidectomy, the
  calciphylaxis card is a warning to review the dose, with no one-click stop.
* Doses given (administrations, no order under review): the card says to stop the standing
  order behind them; no substitute is checked or offered.
* Nutritional vitamin D (cholecalciferol, ergocalciferol) is a different class: never fires.
"""

from __future__ import annotations

import re

from cds_service.checks.findings import Finding
from cds_service.checks.labs import LabFacts, calcium_for_rules, calcium_notes, pth_notes
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
from cds_service.checks.substitution import SubstitutionPlan, plan_for, with_notes
from cds_service.patient.model import MedicationOrder, OrderUnderReview, PatientRecord

RULE_CALCIPHYLAXIS = "C3-active-vitamin-d-calciphylaxis"
RULE_DIALYSIS = "C3-active-vitamin-d-dialysis"
RULE_DIALYSIS_STALE = "C3-active-vitamin-d-dialysis-stale-data"
LAB_KEYS = ("calcium", "albumin", "pth")
_CALCIFEDIOL = re.compile(r"calcifediol|rayaldee|25-hydroxy(?:vitamin)?\s*d", re.IGNORECASE)


def _cinacalcet_plan(rule_id: str, record: PatientRecord, labs: LabFacts) -> SubstitutionPlan:
    """Cinacalcet as the substitute (when the patient can take it), with the PTH notes."""
    notes = calcium_notes(calcium_for_rules(labs)) + pth_notes(labs.latest_pth)
    plan = with_notes(plan_for(rule_id, record, labs), *notes)
    return with_notes(plan, "check_calcium_after_cinacalcet") if plan.substitutions else plan


def is_calcifediol(order: MedicationOrder) -> bool:
    """Calcifediol (25-hydroxyvitamin D3, Rayaldee): a prohormone, not an active sterol."""
    return any("calcifediol" in i for i in order.ingredients) or bool(_CALCIFEDIOL.search(order.drug_name))


def check_active_vitamin_d(record: PatientRecord, review: OrderUnderReview, labs: LabFacts) -> list[Finding]:
    calcium = calcium_for_rules(labs)
    cc = calcium.value if calcium is not None else None
    pth = labs.latest_pth
    used = (calcium.shown if calcium is not None else ()) + ((pth,) if pth is not None else ())
    wanted = calcium_wanted(cc) | {"pth": pth}
    given_only = review.order.kind == "administration"

    if record.has_calciphylaxis:
        gaps = lab_gaps(record, wanted) + unavailable_gaps(record, LAB_KEYS)
        guard = hypocalcaemia_guard(record, labs)
        if guard is not None:
            notes = calcium_notes(calcium) + pth_notes(pth)
            return [
                hypocalcaemia_review(
                    RULE_CALCIPHYLAXIS, review, record, guard, used, reasons=("calciphylaxis",), notes=notes, gaps=gaps
                )
            ]
        calcifediol = is_calcifediol(review.order)
        if given_only:
            # Doses given: no order here to replace; the card says to stop the one behind them.
            plan = with_notes(SubstitutionPlan(), *calcium_notes(calcium), *pth_notes(pth))
        else:
            plan = _cinacalcet_plan(RULE_CALCIPHYLAXIS, record, labs)
        return [
            Finding(
                rule_id=RULE_CALCIPHYLAXIS,
                indicator="warning" if calcifediol else "critical",
                review=review,
                conditions=calciphylaxis_conditions(record),
                labs=used,
                reasons=("calciphylaxis",),
                **plan.finding_fields(),
                gaps=gaps + plan.gaps,
                variant="calcifediol" if calcifediol else "",
            )
        ]
    if not record.on_dialysis or calcium is None or cc is None or not calcium.high:
        return []

    conditions, scope_labs = dialysis_evidence(record, labs)
    gaps = lab_gaps(record, wanted) + unavailable_gaps(record, LAB_KEYS)
    reason = "ionized_calcium_high" if cc.analyte == "ionized_calcium" else "corrected_calcium_high"
    if cc.stale:
        return [
            Finding(
                rule_id=RULE_DIALYSIS_STALE,
                indicator="info",
                review=review,
                conditions=conditions,
                labs=calcium.shown + scope_labs,
                reasons=(f"stale_{reason}",),
                notes=calcium_notes(calcium),
                gaps=gaps,
            )
        ]
    plan = SubstitutionPlan() if given_only else _cinacalcet_plan(RULE_DIALYSIS, record, labs)
    # K/DOQI 6.3: reduce or stop *until* calcium is back in target: hold an active order.
    return [
        Finding(
            rule_id=RULE_DIALYSIS,
            indicator="warning",
            review=review,
            conditions=conditions,
            labs=used + scope_labs,
            reasons=(reason,),
            **plan.finding_fields(),
            withhold=True,
            gaps=gaps + plan.gaps,
        )
    ]


RULE = OrderRule(
    name="c3_active_vitamin_d",
    drug_class="active_vitamin_d",
    finding_ids=(RULE_CALCIPHYLAXIS, RULE_DIALYSIS, RULE_DIALYSIS_STALE),
    check=check_active_vitamin_d,
)
