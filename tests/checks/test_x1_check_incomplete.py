"""X1 check incomplete when the conditions are unknown: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

from cds_service.checks import check_order, run_checks
from tests.checks.builders import CALCIUM_ACETATE, NORMAL_LABS, WARFARIN, draft, lab, med, only, record


def test_unreadable_conditions_give_one_info_finding_per_monitored_order():
    unavailable = {"conditions": "FHIR server timed out"}
    rec = record(labs=NORMAL_LABS, unavailable=unavailable)
    other = med(name="metformin 500 MG", rid="MedicationRequest/d9")
    findings = run_checks(rec, [draft(CALCIUM_ACETATE), draft(other), draft(WARFARIN)])
    assert [(f.rule_id, f.indicator, f.order.drug_name) for f in findings] == [
        ("X1-calciphylaxis-check-incomplete", "info", CALCIUM_ACETATE.drug_name),
        ("X1-calciphylaxis-check-incomplete", "info", WARFARIN.drug_name),
    ]
    assert findings[0].gaps[0].key == "prefetch_unavailable"
    assert findings[0].gaps[0].params == {"key": "conditions", "why": "FHIR server timed out"}


def test_unreadable_conditions_with_kidney_failure_by_egfr_still_warn_and_say_calciphylaxis_is_unknown():
    rec = record(labs=(lab("calcium", 10.8), lab("egfr", 9)), unavailable={"conditions": "not in prefetch"})
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert f.rule_id == "C1-calcium-binder-dialysis"
    assert f.gaps[0].key == "conditions_unavailable"


# --- M1 mineral status ----------------------------------------------------------------------


def test_a_partly_read_condition_list_never_silences_a_monitored_drug():
    rec = record(incomplete={"conditions": "page 2 not read (FHIR server answered 500)"})
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert f.rule_id == "X1-calciphylaxis-check-incomplete" and f.indicator == "info"
    assert f.gaps[0].key == "prefetch_incomplete" and f.gaps[0].params["key"] == "conditions"
