"""C1 calcium-based phosphate binders: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

from datetime import timedelta

from cds_service.checks import check_order
from tests.checks.builders import (
    CALCIPHYLAXIS,
    CALCIUM_ACETATE,
    ESRD,
    HIGH_PHOSPHATE_LABS,
    NORMAL_LABS,
    NOW,
    cond,
    draft,
    lab,
    med,
    only,
    record,
)


def test_calcium_binder_in_calciphylaxis_is_critical_and_offers_sevelamer_then_lanthanum():
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=HIGH_PHOSPHATE_LABS), draft(CALCIUM_ACETATE)))
    assert (f.rule_id, f.indicator) == ("C1-calcium-binder-calciphylaxis", "critical")
    assert [(s.key, s.recommended) for s in f.substitutions] == [("sevelamer", True), ("lanthanum", False)]
    assert f.conditions == (CALCIPHYLAXIS,)
    assert f.order is CALCIUM_ACETATE and not f.stop_only


def test_phosphate_at_target_offers_a_calcium_free_binder_without_recommending_it():
    # F10: phosphate 5.0 mg/dL is within 3.5-5.5: offered, not recommended, and the card says why.
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), draft(CALCIUM_ACETATE)))
    assert [(s.key, s.recommended) for s in f.substitutions] == [("sevelamer", False), ("lanthanum", False)]
    assert "phosphate_at_target" in f.notes


def test_low_phosphate_offers_no_binder_and_says_to_stop_and_recheck():
    # F10 (variant C): phosphate 2.6 mg/dL in calciphylaxis on dialysis: no binder one-click.
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("phosphate", 2.6), lab("pth", 250))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCIUM_ACETATE)))
    assert f.substitutions == () and f.stop_only and "binder_low_phosphate" in f.notes
    check = next(c for c in f.safety_checks if c.key == "phosphate_control_needed")
    assert check.passed is False and "2.6 mg/dL" in check.detail


def test_no_recent_phosphate_leaves_the_binder_not_checked_and_unoffered():
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("phosphate", 7.0, days_ago=60), lab("pth", 250))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCIUM_ACETATE)))
    assert f.substitutions == () and "binder_phosphate_unknown" in f.notes
    assert next(c for c in f.safety_checks if c.key == "phosphate_control_needed").passed is None


def test_phosphate_of_7_5_starts_sevelamer_at_the_labels_1600_mg():
    # F28: the Renvela label starts 1600 mg three times daily from 7.5 mg/dL.
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("phosphate", 7.5), lab("pth", 250))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCIUM_ACETATE)))
    assert [(s.key, s.recommended) for s in f.substitutions] == [("sevelamer_1600", True), ("lanthanum", False)]
    assert "phosphate 7.5 mg/dL" in f.substitutions[0].dose_basis


def test_sevelamer_replacing_calcium_acetate_starts_tablet_for_tablet():
    # F28: the Renvela label converts one 667 mg calcium acetate tablet to one 800 mg tablet.
    def acetate(dose: dict) -> object:
        raw = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft"}
        raw["dosageInstruction"] = [{"doseAndRate": [{"doseQuantity": dose}]}]
        order = med("calcium_binder", name="calcium acetate 667 MG Oral Tablet", raw=raw)
        return order.__class__(**{**order.__dict__, "ingredients": ("calcium acetate",)})

    rec = record(conditions=[CALCIPHYLAXIS, ESRD], labs=HIGH_PHOSPHATE_LABS)  # phosphate 6.4: 1 tablet by phosphate
    for dose, key in (
        ({"value": 2, "unit": "tablet", "code": "{tbl}"}, "sevelamer_1600"),
        ({"value": 2001, "unit": "mg"}, "sevelamer_2400"),  # 3 x 667 mg
        ({"value": 4, "unit": "tablet"}, "sevelamer_2400"),  # never past the 7.2 g/day maximum
        ({"value": 1, "unit": "tablet"}, "sevelamer"),
    ):
        f = only(check_order(rec, draft(acetate(dose))))
        assert f.substitutions[0].key == key, dose
        assert "tablet for tablet" in f.substitutions[0].dose_basis


def test_a_sevelamer_drafted_in_the_same_call_is_not_duplicated():
    # F09: the duplicate check reads the drafts of the call, not only the active orders.
    sevelamer = med("non_calcium_binder", name="sevelamer carbonate 800 MG", rid="MedicationRequest/draft-sev")
    rec = record(conditions=[CALCIPHYLAXIS, ESRD], labs=HIGH_PHOSPHATE_LABS, drafts=[sevelamer])
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert f.substitutions == () and f.stop_only and "substitute_already_drafted" in f.notes
    check = next(c for c in f.safety_checks if c.key == "no_active_non_calcium_binder")
    assert check.passed is False and "drafted now" in check.detail


def test_bowel_obstruction_rules_out_both_calcium_free_binders():
    obstruction = cond("bowel_obstruction", "Small bowel obstruction", rid="Condition/sbo")
    rec = record(conditions=[CALCIPHYLAXIS, ESRD, obstruction], labs=HIGH_PHOSPHATE_LABS)
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert f.substitutions == ()
    assert next(c for c in f.safety_checks if c.key == "no_bowel_obstruction").passed is False


def test_low_calcium_in_calciphylaxis_gets_a_review_warning_not_a_one_click_stop():
    # F08 (variant L): corrected calcium 6.7 mg/dL on calcium acetate.
    labs = (lab("calcium", 6.4), lab("albumin", 3.6), lab("phosphate", 6.0), lab("pth", 250))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCIUM_ACETATE)))
    assert (f.rule_id, f.indicator, f.variant) == ("C1-calcium-binder-calciphylaxis", "warning", "hypocalcaemia")
    assert f.substitutions == () and not f.stop_only and "hypocalcaemia_guard" in f.notes


def test_a_recent_parathyroidectomy_guards_the_calcium_binder_from_a_one_click_stop():
    surgery = cond("parathyroidectomy", "Parathyroidectomy", rid="Procedure/ptx")
    surgery = surgery.__class__(**{**surgery.__dict__, "recorded": NOW - timedelta(days=20)})
    rec = record(conditions=[CALCIPHYLAXIS, ESRD, surgery], labs=HIGH_PHOSPHATE_LABS)
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert f.indicator == "warning" and f.variant == "hypocalcaemia" and surgery in f.conditions
    old = surgery.__class__(**{**surgery.__dict__, "recorded": NOW - timedelta(days=400)})
    f = only(
        check_order(record(conditions=[CALCIPHYLAXIS, ESRD, old], labs=HIGH_PHOSPHATE_LABS), draft(CALCIUM_ACETATE))
    )
    assert f.indicator == "critical" and f.substitutions


def test_calcium_binder_in_calciphylaxis_with_sevelamer_already_active_only_removes_the_order():
    sevelamer = med(
        "non_calcium_binder", name="sevelamer carbonate 800 MG", rid="MedicationRequest/a1", status="active"
    )
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], medications=[sevelamer]), draft(CALCIUM_ACETATE)))
    assert f.substitutions == () and f.stop_only
    check = next(c for c in f.safety_checks if c.key == "no_active_non_calcium_binder")
    assert not check.passed and "MedicationRequest/a1" in check.detail


def test_calcium_binder_on_dialysis_warns_when_corrected_calcium_is_above_10_2():
    labs = (lab("calcium", 10.0), lab("albumin", 3.0), lab("pth", 250))  # Payne: 10.0 + 0.8 = 10.8
    f = only(check_order(record(conditions=[ESRD], labs=labs), draft(CALCIUM_ACETATE)))
    assert (f.rule_id, f.indicator) == ("C1-calcium-binder-dialysis", "warning")
    assert f.reasons == ("corrected_calcium_high",)
    cc = next(v for v in f.labs if v.analyte == "corrected_calcium")
    assert (cc.value, cc.method, cc.stale) == (10.8, "corrected", False)
    assert [i.analyte for i in cc.inputs] == ["calcium", "albumin"]
    assert any(g.key == "calcification_not_recorded" for g in f.gaps)


def test_calcium_binder_on_dialysis_warns_on_measured_calcium_when_no_albumin_is_near():
    f = only(check_order(record(conditions=[ESRD], labs=[lab("calcium", 10.5)]), draft(CALCIUM_ACETATE)))
    cc = next(v for v in f.labs if v.analyte == "corrected_calcium")
    assert (cc.value, cc.method) == (10.5, "measured")


def test_corrected_calcium_of_exactly_10_2_does_not_warn():
    labs = (lab("calcium", 10.2), lab("albumin", 4.0))
    assert check_order(record(conditions=[ESRD], labs=labs), draft(CALCIUM_ACETATE)) == []


def test_thresholds_compare_the_value_the_card_shows():
    # 10.24 is shown as 10.2 (not above 10.2); 10.25 is shown as 10.3 (above).
    assert check_order(record(conditions=[ESRD], labs=[lab("calcium", 10.24)]), draft(CALCIUM_ACETATE)) == []
    f = only(check_order(record(conditions=[ESRD], labs=[lab("calcium", 10.25)]), draft(CALCIUM_ACETATE)))
    assert next(v for v in f.labs if v.analyte == "corrected_calcium").value == 10.3


def test_calcium_binder_on_dialysis_warns_when_pth_is_below_150_twice_in_a_row():
    labs = NORMAL_LABS[:3] + (lab("pth", 120, days_ago=5), lab("pth", 140, days_ago=100))
    f = only(check_order(record(conditions=[ESRD], labs=labs), draft(CALCIUM_ACETATE)))
    assert f.reasons == ("pth_low_consecutive",)
    assert [v.value for v in f.labs if v.analyte == "pth"] == [120, 140]


def test_a_single_low_pth_does_not_warn():
    labs = NORMAL_LABS[:3] + (lab("pth", 120, days_ago=5), lab("pth", 210, days_ago=100))
    assert check_order(record(conditions=[ESRD], labs=labs), draft(CALCIUM_ACETATE)) == []


def test_calcium_binder_on_dialysis_with_normal_labs_is_silent():
    assert check_order(record(conditions=[ESRD], labs=NORMAL_LABS), draft(CALCIUM_ACETATE)) == []


def test_stale_high_calcium_gives_an_info_card_not_a_warning():
    labs = (lab("calcium", 10.9, days_ago=60), lab("albumin", 4.0, days_ago=60))
    f = only(check_order(record(conditions=[ESRD], labs=labs), draft(CALCIUM_ACETATE)))
    assert (f.rule_id, f.indicator) == ("C1-calcium-binder-dialysis-stale-data", "info")
    assert f.reasons == ("stale_corrected_calcium_high",)
    assert f.substitutions == () and next(v for v in f.labs if v.analyte == "corrected_calcium").stale
    assert any(g.key == "lab_stale" and g.params["analyte"] == "corrected_calcium" for g in f.gaps)


def test_osteoporosis_patient_on_calcium_carbonate_gets_nothing():
    carbonate = med("calcium_binder", name="calcium carbonate 1250 MG Oral Tablet")
    osteoporosis = record(labs=[lab("calcium", 10.8), lab("egfr", 75)])
    assert check_order(osteoporosis, draft(carbonate)) == []


def test_kidney_failure_by_egfr_below_15_puts_the_patient_in_scope_and_the_card_shows_it():
    labs = (lab("calcium", 10.8), lab("egfr", 12))
    f = only(check_order(record(labs=labs), draft(CALCIUM_ACETATE)))
    assert f.rule_id == "C1-calcium-binder-dialysis" and f.conditions == ()
    assert any(v.analyte == "egfr" and v.value == 12 for v in f.labs)


# --- C2 vitamin K antagonists ---------------------------------------------------------------


def test_two_low_pth_results_count_only_when_the_earlier_is_at_most_6_months_old():
    recent = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 120, days_ago=10), lab("pth", 130, days_ago=100))
    f = only(check_order(record(conditions=[ESRD], labs=recent), draft(CALCIUM_ACETATE)))
    assert "pth_low_consecutive" in f.reasons
    old = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 120, days_ago=10), lab("pth", 130, days_ago=400))
    assert check_order(record(conditions=[ESRD], labs=old), draft(CALCIUM_ACETATE)) == []
