"""C2 vitamin K antagonists: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

from cds_service.checks import check_order
from tests.checks.builders import CALCIPHYLAXIS, ESRD, WARFARIN, active, cond, draft, med, only, record


def test_warfarin_in_calciphylaxis_with_atrial_fibrillation_offers_apixaban():
    af = cond("atrial_fibrillation", "Atrial fibrillation")
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD, af]), draft(WARFARIN)))
    assert (f.rule_id, f.indicator) == ("C2-vka-calciphylaxis", "critical")
    assert [(s.key, s.recommended) for s in f.substitutions] == [("apixaban", True)]
    assert {c.key: c.passed for c in f.safety_checks} == {
        "af_recorded": True,
        "on_dialysis": True,
        "no_prosthetic_valve": True,
        "no_allergy": True,
        "no_active_doac": True,
    }


def test_warfarin_with_a_prosthetic_valve_gets_no_doac_and_no_remove_only_suggestion():
    af = cond("atrial_fibrillation")
    valve = cond("prosthetic_valve", "Presence of prosthetic heart valve", rid="Condition/valve")
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, af, valve]), draft(WARFARIN)))
    assert f.indicator == "critical" and f.substitutions == () and not f.stop_only
    assert "anticoagulation_team" in f.notes
    failed = next(c for c in f.safety_checks if c.key == "no_prosthetic_valve")
    assert not failed.passed and "Condition/valve" in failed.detail
    assert valve in f.conditions


def test_warfarin_without_atrial_fibrillation_gets_no_apixaban():
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD]), draft(WARFARIN)))
    assert f.substitutions == () and "anticoagulation_team" in f.notes
    assert not next(c for c in f.safety_checks if c.key == "af_recorded").passed


def test_warfarin_with_a_doac_already_active_gets_no_second_anticoagulant():
    apixaban = med("doac", name="apixaban 5 MG", rid="MedicationRequest/a2", status="active")
    f = only(
        check_order(
            record(conditions=[CALCIPHYLAXIS, cond("atrial_fibrillation")], medications=[apixaban]), draft(WARFARIN)
        )
    )
    assert f.substitutions == ()


def test_warfarin_on_dialysis_without_calciphylaxis_is_info_on_order_hooks_only():
    f = only(check_order(record(conditions=[ESRD]), draft(WARFARIN)))
    assert (f.rule_id, f.indicator, f.substitutions) == ("C2-vka-dialysis", "info", ())
    assert check_order(record(conditions=[ESRD]), active(WARFARIN)) == []


# --- C3 active vitamin D --------------------------------------------------------------------
