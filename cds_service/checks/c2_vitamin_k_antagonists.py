"""C2: warfarin and other vitamin K antagonists (clinical-rules.md; seeds 000-004).

* calciphylaxis: critical, stop. Reduced-dose apixaban is offered only for atrial fibrillation
  and never with a prosthetic heart valve; otherwise the card says to agree an alternative with
  the anticoagulation team and offers no order (stopping anticoagulation outright can be unsafe);
* dialysis without calciphylaxis: info, and only on order hooks (a risk factor, seed 003);
* anyone else: silent.
"""

from __future__ import annotations

from cds_service.checks.findings import Finding
from cds_service.checks.labs import LabFacts
from cds_service.checks.rule import OrderRule
from cds_service.checks.scope import calciphylaxis_conditions, dialysis_evidence
from cds_service.checks.substitution import plan_for, with_notes
from cds_service.patient.model import OrderUnderReview, PatientRecord

RULE_CALCIPHYLAXIS = "C2-vka-calciphylaxis"
RULE_DIALYSIS = "C2-vka-dialysis"


def check_vka(record: PatientRecord, review: OrderUnderReview, labs: LabFacts) -> list[Finding]:
    if record.has_calciphylaxis:
        plan = plan_for(RULE_CALCIPHYLAXIS, record, labs)
        # Stopping anticoagulation that is still needed can be unsafe: the card offers to stop the
        # vitamin K antagonist alone only when a DOAC is suitable and merely its one-click dose
        # (the dialysis dose) does not fit; otherwise it asks for a plan with the anticoagulation
        # team and offers no order.
        stop_only = plan.blocked_only_by("on_dialysis")
        if not plan.substitutions and not stop_only:
            plan = with_notes(plan, "anticoagulation_team")
        return [
            Finding(
                rule_id=RULE_CALCIPHYLAXIS,
                indicator="critical",
                review=review,
                conditions=calciphylaxis_conditions(record)
                + record.conditions_of("atrial_fibrillation")
                + record.conditions_of("prosthetic_valve"),
                reasons=("calciphylaxis",),
                substitutions=plan.substitutions,
                stop_only=stop_only,
                safety_checks=plan.safety_checks,
                notes=plan.notes,
                gaps=plan.gaps,
            )
        ]
    if review.is_draft and record.on_dialysis:
        conditions, scope_labs = dialysis_evidence(record, labs)
        return [
            Finding(
                rule_id=RULE_DIALYSIS,
                indicator="info",
                review=review,
                conditions=conditions,
                labs=scope_labs,
                reasons=("dialysis",),
            )
        ]
    return []


RULE = OrderRule(
    name="c2_vitamin_k_antagonists",
    drug_class="vka",
    finding_ids=(RULE_CALCIPHYLAXIS, RULE_DIALYSIS),
    check=check_vka,
)
