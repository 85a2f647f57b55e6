"""C2: warfarin and other vitamin K antagonists (clinical-rules.md; seeds 000-004).

* calciphylaxis: critical. Apixaban is offered in one click only for atrial fibrillation on
  dialysis, at the US label's dose (5 mg twice daily; 2.5 mg at 80 years or older or 60 kg or
  less, which the order says), never with a mechanical or unspecified valve, mitral stenosis,
  antiphospholipid syndrome, an intolerance or a DOAC already active or drafted, and only when
  each of those was checked on complete data. Then the card says "stop". When apixaban would
  suit but cannot be ordered in one click (not on dialysis, dose undetermined), the suggestion
  removes the vitamin K antagonist and says to start the replacement by hand now. Otherwise
  (valve, another indication, an intolerance, data not checked) the summary asks for a plan
  with the anticoagulation team and the card offers no order: stopping anticoagulation outright
  can be unsafe (clinical review F01);
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
        plan = plan_for(RULE_CALCIPHYLAXIS, record, labs, review.order)
        # Stopping anticoagulation that is still needed can be unsafe: the card offers to stop the
        # vitamin K antagonist alone only when a DOAC is suitable and merely its one-click dose
        # (the label's dialysis doses) cannot be given; otherwise it asks for a plan with the
        # anticoagulation team, offers no order, and its summary does not say "stop".
        stop_only = plan.blocked_only_by("on_dialysis", "apixaban_standard_dose", "apixaban_reduced_dose")
        variant = ""
        if plan.substitutions:
            plan = with_notes(plan, "apixaban_offered")
        elif not stop_only:
            plan = with_notes(plan, "anticoagulation_team")
            variant = "plan_replacement"
        return [
            Finding(
                rule_id=RULE_CALCIPHYLAXIS,
                indicator="critical",
                review=review,
                conditions=calciphylaxis_conditions(record)
                + record.conditions_of("atrial_fibrillation")
                + record.conditions_of("prosthetic_valve")
                + record.conditions_of("mitral_stenosis")
                + record.conditions_of("antiphospholipid_syndrome"),
                reasons=("calciphylaxis",),
                variant=variant,
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
