"""C4: iron in calciphylaxis (clinical-rules.md "Other triggers"; seeds 002, 003).

Seed 002 lists stopping iron supplementation among the first mineral-management steps for a
haemodialysis patient with calciphylaxis; reviews of calciphylaxis list iron therapy (iron
dextran infusion, for one) among its reported risk factors; and iron is the standard treatment
of the anaemia of kidney failure on dialysis. No source weighs one against the other, so:

* calciphylaxis: a warning (not critical) on order hooks and on patient-view for any iron
  preparation (oral or intravenous, ordered, on the home list or given at dialysis), naming the
  conflict and leaving the decision to the clinician. No stop or substitute is suggested: one
  summary's "stop" against standard anaemia care is not enough to make stopping the default;
* anyone else (dialysis without calciphylaxis included): silent. Iron is routine anaemia care.
"""

from __future__ import annotations

from cds_service.checks.findings import Finding, Gap
from cds_service.checks.labs import LabFacts
from cds_service.checks.rule import OrderRule
from cds_service.checks.scope import calciphylaxis_conditions, dialysis_conditions
from cds_service.patient.model import OrderUnderReview, PatientRecord

RULE_CALCIPHYLAXIS = "C4-iron-calciphylaxis"


def check_iron(record: PatientRecord, review: OrderUnderReview, labs: LabFacts) -> list[Finding]:
    if not record.has_calciphylaxis:
        return []
    return [
        Finding(
            rule_id=RULE_CALCIPHYLAXIS,
            indicator="warning",
            review=review,
            conditions=calciphylaxis_conditions(record) + dialysis_conditions(record),
            reasons=("calciphylaxis",),
            # What the decision also needs and this service does not read.
            gaps=(Gap("anaemia_not_read"),),
        )
    ]


RULE = OrderRule(
    name="c4_iron",
    drug_class="iron",
    finding_ids=(RULE_CALCIPHYLAXIS,),
    check=check_iron,
)
