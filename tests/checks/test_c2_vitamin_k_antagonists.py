"""C2 vitamin K antagonists: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

from datetime import date

from cds_service.checks import check_order
from tests.checks.builders import CALCIPHYLAXIS, CKD5, ESRD, WARFARIN, active, cond, draft, lab, med, only, record

AF = cond("atrial_fibrillation", "Atrial fibrillation", rid="Condition/af")
BORN_1958 = date(1958, 3, 14)  # 68 at the frozen now


def test_warfarin_in_calciphylaxis_with_atrial_fibrillation_offers_apixaban_at_the_labels_dose():
    rec = record(conditions=[CALCIPHYLAXIS, ESRD, AF], labs=[lab("body_weight", 72)], birth_date=BORN_1958)
    f = only(check_order(rec, draft(WARFARIN)))
    assert (f.rule_id, f.indicator, f.variant) == ("C2-vka-calciphylaxis", "critical", "")
    assert [(s.key, s.recommended) for s in f.substitutions] == [("apixaban", True)]
    assert f.substitutions[0].indications == ("Condition/af",)
    assert "age 68" in f.substitutions[0].dose_basis
    assert {c.key: c.passed for c in f.safety_checks} == {
        "af_recorded": True,
        "on_dialysis": True,
        "apixaban_standard_dose": True,
        "no_prosthetic_valve": True,
        "no_mitral_stenosis": True,
        "no_antiphospholipid_syndrome": True,
        "no_allergy": True,
        "no_active_doac": True,
    }
    assert "apixaban_offered" in f.notes  # the dose conflict, and start once the INR is below 2.0


def test_apixaban_is_2_5_mg_only_at_80_or_older_or_60_kg_or_less():
    # F02: the US label on dialysis: 5 mg; 2.5 mg at age >= 80 or weight <= 60 kg.
    light = record(conditions=[CALCIPHYLAXIS, ESRD, AF], labs=[lab("body_weight", 58)], birth_date=BORN_1958)
    assert [s.key for s in only(check_order(light, draft(WARFARIN))).substitutions] == ["apixaban_reduced"]
    old = record(conditions=[CALCIPHYLAXIS, ESRD, AF], birth_date=date(1940, 1, 1))
    f = only(check_order(old, draft(WARFARIN)))
    assert [s.key for s in f.substitutions] == ["apixaban_reduced"] and "80 or older" in f.substitutions[0].dose_basis


def test_apixaban_dose_undetermined_without_weight_withholds_the_one_click_order():
    rec = record(conditions=[CALCIPHYLAXIS, ESRD, AF], birth_date=BORN_1958)
    f = only(check_order(rec, draft(WARFARIN)))
    assert f.substitutions == () and "apixaban_dose_undetermined" in f.notes
    assert next(c for c in f.safety_checks if c.key == "apixaban_standard_dose").passed is None
    assert f.stop_only  # remove warfarin, start apixaban by hand at the label's dose


def test_kidney_failure_without_dialysis_gets_no_dialysis_dosed_apixaban():
    # F03 (variant B2): CKD 5 / ESRF untreated by RRT / eGFR < 15 alone is not dialysis.
    for conditions, labs in (
        ([CALCIPHYLAXIS, CKD5, AF], [lab("body_weight", 72)]),
        ([CALCIPHYLAXIS, AF], [lab("egfr", 9), lab("body_weight", 72)]),
    ):
        f = only(check_order(record(conditions=conditions, labs=labs, birth_date=BORN_1958), draft(WARFARIN)))
        assert f.substitutions == () and f.stop_only, conditions
        check = next(c for c in f.safety_checks if c.key == "on_dialysis")
        assert check.passed is False
        assert "dialysis_not_confirmed" in f.notes and "apixaban_label_dose" in f.notes


def test_mitral_stenosis_or_antiphospholipid_syndrome_rule_out_apixaban():
    # F04a/b (variant I): severe rheumatic mitral stenosis; triple-positive APS (label 5.6).
    for kind in ("mitral_stenosis", "antiphospholipid_syndrome"):
        excluded = cond(kind, kind, rid=f"Condition/{kind}")
        rec = record(
            conditions=[CALCIPHYLAXIS, ESRD, AF, excluded], labs=[lab("body_weight", 72)], birth_date=BORN_1958
        )
        f = only(check_order(rec, draft(WARFARIN)))
        assert f.substitutions == () and not f.stop_only and f.variant == "plan_replacement", kind
        assert next(c for c in f.safety_checks if c.key == f"no_{kind}").passed is False


def test_a_partly_read_conditions_list_leaves_the_valve_not_checked_and_withholds_apixaban():
    # F04d (variant E): a later page of conditions not read: never a tick.
    rec = record(
        conditions=[CALCIPHYLAXIS, ESRD, AF],
        labs=[lab("body_weight", 72)],
        birth_date=BORN_1958,
        incomplete={"conditions": "later pages not read (no FHIR server given)"},
    )
    f = only(check_order(rec, draft(WARFARIN)))
    assert f.substitutions == () and f.variant == "plan_replacement"
    valve = next(c for c in f.safety_checks if c.key == "no_prosthetic_valve")
    assert valve.passed is None and "only partly read" in valve.detail


def test_a_doac_drafted_in_the_same_call_is_not_duplicated():
    drafted = med("doac", name="apixaban 5 MG Oral Tablet", rid="MedicationRequest/draft-apx")
    rec = record(
        conditions=[CALCIPHYLAXIS, ESRD, AF], labs=[lab("body_weight", 72)], birth_date=BORN_1958, drafts=[drafted]
    )
    f = only(check_order(rec, draft(WARFARIN)))
    assert f.substitutions == () and "substitute_already_drafted" in f.notes


def test_warfarin_with_a_prosthetic_valve_gets_no_doac_and_no_remove_only_suggestion():
    af = cond("atrial_fibrillation")
    valve = cond("prosthetic_valve", "Presence of prosthetic heart valve", rid="Condition/valve")
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, af, valve]), draft(WARFARIN)))
    assert f.indicator == "critical" and f.substitutions == () and not f.stop_only
    # F01: no bare "stop" in the summary when nothing replaces it.
    assert "anticoagulation_team" in f.notes and f.variant == "plan_replacement"
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


def test_a_mechanical_valve_never_gets_advice_to_stop_warfarin_and_start_apixaban_by_hand():
    # F01 in another shape: no dialysis *and* a mechanical valve; the label-dose note ("stop the
    # vitamin K antagonist and start the replacement by hand") must not appear beside the valve.
    valve = cond("prosthetic_valve", "Mechanical mitral valve", rid="Condition/valve")
    rec = record(conditions=[CALCIPHYLAXIS, CKD5, AF, valve], labs=[lab("body_weight", 72)], birth_date=BORN_1958)
    f = only(check_order(rec, draft(WARFARIN)))
    assert f.variant == "plan_replacement" and not f.stop_only and f.substitutions == ()
    assert "apixaban_label_dose" not in f.notes and "anticoagulation_team" in f.notes
