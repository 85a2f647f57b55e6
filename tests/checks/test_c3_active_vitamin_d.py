"""C3 active vitamin D sterols: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

from datetime import timedelta

from cds_service.checks import check_order
from tests.checks.builders import (
    CALCIPHYLAXIS,
    CALCITRIOL,
    CKD5,
    ESRD,
    NORMAL_LABS,
    NOW,
    active,
    cond,
    draft,
    lab,
    med,
    only,
    record,
)


def test_calcitriol_in_calciphylaxis_is_critical_and_offers_cinacalcet_when_pth_and_calcium_allow():
    labs = (lab("calcium", 9.2), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert (f.rule_id, f.indicator) == ("C3-active-vitamin-d-calciphylaxis", "critical")
    assert [s.key for s in f.substitutions] == ["cinacalcet"]
    assert "check_calcium_after_cinacalcet" in f.notes
    assert all(c.passed for c in f.safety_checks)


def test_no_cinacalcet_when_corrected_calcium_is_below_8_4_and_no_one_click_stop_either():
    # F08: below the lower limit of normal the card is a review warning, with no suggestion.
    labs = (lab("calcium", 7.9), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert (f.indicator, f.variant) == ("warning", "hypocalcaemia")
    assert f.substitutions == () and not f.stop_only and "hypocalcaemia_guard" in f.notes


def test_corrected_calcium_of_exactly_8_4_still_allows_cinacalcet():
    labs = (lab("calcium", 8.4), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert [s.key for s in f.substitutions] == ["cinacalcet"]


def test_pth_above_500_offers_cinacalcet_unrecommended_beside_the_parathyroidectomy_referral():
    # F14: above 500 cinacalcet is still an option (003), not recommended, with the PTX note.
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 620))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert [(s.key, s.recommended) for s in f.substitutions] == [("cinacalcet", False)]
    assert "parathyroidectomy_referral" in f.notes


def test_pth_at_or_below_target_gets_no_pth_lowering_drug():
    # F06 (variant A and the 280 fixture): PTH 120 and 280 are at or below the 150-300 target.
    for value, note in ((280, "pth_at_target"), (120, "pth_below_target")):
        labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", value))
        f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
        assert f.substitutions == () and note in f.notes, value
        assert next(c for c in f.safety_checks if c.key == "pth_above_target").passed is False


def test_cinacalcet_is_not_offered_outside_dialysis():
    # F05 (variant B): CKD 5 not on dialysis; the label is for patients on dialysis only.
    labs = (lab("calcium", 9.2), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, CKD5], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == () and "cinacalcet_outside_dialysis" in f.notes
    assert next(c for c in f.safety_checks if c.key == "on_dialysis").passed is False


def test_calcifediol_is_a_warning_not_a_critical_stop():
    # F26: a prohormone none of the sources' active-sterol lists names.
    calcifediol = med("active_vitamin_d", name="calcifediol 30 MCG Extended Release Oral Capsule")
    labs = (lab("calcium", 9.2), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(calcifediol)))
    assert (f.indicator, f.variant) == ("warning", "calcifediol")


def test_doses_given_at_dialysis_get_no_substitute_checks():
    # F29: no order to replace, so no safety list and no cinacalcet note.
    given = med("active_vitamin_d", name="paricalcitol 2 mcg IV", rid="MedicationAdministration/g1", status="completed")
    given = given.__class__(**{**given.__dict__, "kind": "administration"})
    labs = (lab("calcium", 9.2), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), active(given)))
    assert f.substitutions == () and f.safety_checks == () and "check_calcium_after_cinacalcet" not in f.notes


def test_a_recent_parathyroidectomy_guards_active_vitamin_d():
    surgery = cond("parathyroidectomy", "Total parathyroidectomy", rid="Procedure/ptx")
    surgery = surgery.__class__(**{**surgery.__dict__, "recorded": NOW - timedelta(days=30)})
    labs = (lab("calcium", 9.2), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD, surgery], labs=labs), draft(CALCITRIOL)))
    assert (f.indicator, f.variant, f.substitutions) == ("warning", "hypocalcaemia", ())


def test_pth_below_100_warns_against_further_suppression():
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 80))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == () and "pth_below_avoid" in f.notes


def test_stale_pth_withholds_cinacalcet_and_says_so():
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 300, days_ago=120))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == ()
    check = next(c for c in f.safety_checks if c.key == "pth_above_target")
    assert check.passed is None and "out of date" in check.detail
    assert any(g.key == "lab_stale" and g.params["analyte"] == "pth" for g in f.gaps)


def test_active_vitamin_d_on_dialysis_warns_only_above_10_2_and_holds_it():
    # F13: "hold" acts as a hold; cinacalcet only above the PTH target, never recommended here.
    high = (lab("calcium", 10.3), lab("albumin", 3.8), lab("pth", 300))  # 10.46 -> 10.5
    f = only(check_order(record(conditions=[ESRD], labs=high), draft(CALCITRIOL)))
    assert (f.rule_id, f.indicator, f.reasons) == (
        "C3-active-vitamin-d-dialysis",
        "warning",
        ("corrected_calcium_high",),
    )
    assert f.withhold and f.substitutions == () and "pth_at_target" in f.notes
    above = (lab("calcium", 10.3), lab("albumin", 3.8), lab("pth", 420))
    f = only(check_order(record(conditions=[ESRD], labs=above), draft(CALCITRIOL)))
    assert f.withhold and [(s.key, s.recommended) for s in f.substitutions] == [("cinacalcet", False)]
    assert check_order(record(conditions=[ESRD], labs=NORMAL_LABS), draft(CALCITRIOL)) == []


def test_active_vitamin_d_on_dialysis_with_only_a_stale_high_calcium_is_info():
    labs = (lab("calcium", 10.8, days_ago=50), lab("albumin", 4.0, days_ago=50))
    f = only(check_order(record(conditions=[ESRD], labs=labs), draft(CALCITRIOL)))
    assert (f.rule_id, f.indicator) == ("C3-active-vitamin-d-dialysis-stale-data", "info")


def test_nutritional_vitamin_d_never_fires():
    cholecalciferol = med("nutritional_vitamin_d", name="cholecalciferol 0.025 MG Oral Tablet")
    assert check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), draft(cholecalciferol)) == []
