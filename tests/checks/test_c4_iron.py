"""C4 iron in calciphylaxis: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

from cds_service.checks import check_order, review_chart
from tests.checks.builders import CALCIPHYLAXIS, ESRD, NORMAL_LABS, active, draft, med, only, record

IRON_SUCROSE = med("iron", name="10 ML iron sucrose 20 MG/ML Injection")


def test_iron_in_calciphylaxis_is_a_warning_that_names_the_conflict_and_stops_nothing():
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), draft(IRON_SUCROSE)))
    assert (f.rule_id, f.indicator) == ("C4-iron-calciphylaxis", "warning")
    assert f.substitutions == () and not f.stop_only and not f.withhold
    assert [c.kind for c in f.conditions] == ["calciphylaxis", "kidney_failure"]
    assert [g.key for g in f.gaps] == ["anaemia_not_read"]


def test_active_iron_on_patient_view_gets_the_same_warning():
    active_iron = med("iron", name="ferrous sulfate 325 mg", rid="MedicationRequest/a1", status="active")
    f = only(check_order(record(conditions=[CALCIPHYLAXIS]), active(active_iron)))
    assert (f.rule_id, f.indicator, f.review.is_draft) == ("C4-iron-calciphylaxis", "warning", False)


def test_iron_on_dialysis_without_calciphylaxis_and_out_of_scope_is_silent():
    assert check_order(record(conditions=[ESRD], labs=NORMAL_LABS), draft(IRON_SUCROSE)) == []
    assert check_order(record(), draft(IRON_SUCROSE)) == []


def test_iron_is_one_card_per_order_and_the_mineral_review_is_separate():
    rec = record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS)
    assert len(check_order(rec, draft(IRON_SUCROSE))) == 1
    assert [f.rule_id for f in review_chart(rec)] == ["M1-mineral-status-calciphylaxis"]
