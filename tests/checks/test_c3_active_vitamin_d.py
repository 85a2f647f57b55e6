"""C3 active vitamin D sterols: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

from cds_service.checks import check_order
from tests.checks.builders import CALCIPHYLAXIS, CALCITRIOL, ESRD, NORMAL_LABS, draft, lab, med, only, record


def test_calcitriol_in_calciphylaxis_is_critical_and_offers_cinacalcet_when_pth_and_calcium_allow():
    labs = (lab("calcium", 9.2), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert (f.rule_id, f.indicator) == ("C3-active-vitamin-d-calciphylaxis", "critical")
    assert [s.key for s in f.substitutions] == ["cinacalcet"]
    assert "check_calcium_after_cinacalcet" in f.notes
    assert all(c.passed for c in f.safety_checks)


def test_no_cinacalcet_when_corrected_calcium_is_below_8_4():
    labs = (lab("calcium", 7.9), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == () and f.stop_only
    check = next(c for c in f.safety_checks if c.key == "corrected_calcium_not_low")
    assert not check.passed and "7.9 mg/dL" in check.detail


def test_corrected_calcium_of_exactly_8_4_still_allows_cinacalcet():
    labs = (lab("calcium", 8.4), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert [s.key for s in f.substitutions] == ["cinacalcet"]


def test_pth_above_500_suggests_parathyroidectomy_referral_instead_of_cinacalcet():
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 620))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == () and "parathyroidectomy_referral" in f.notes


def test_pth_below_100_warns_against_further_suppression():
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 80))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == () and "pth_below_avoid" in f.notes


def test_stale_pth_withholds_cinacalcet_and_says_so():
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 300, days_ago=120))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == ()
    assert "out of date" in next(c for c in f.safety_checks if c.key == "pth_in_cinacalcet_range").detail
    assert any(g.key == "lab_stale" and g.params["analyte"] == "pth" for g in f.gaps)


def test_active_vitamin_d_on_dialysis_warns_only_above_10_2():
    high = (lab("calcium", 10.3), lab("albumin", 3.8), lab("pth", 300))  # 10.46 -> 10.5
    f = only(check_order(record(conditions=[ESRD], labs=high), draft(CALCITRIOL)))
    assert (f.rule_id, f.indicator, f.reasons) == (
        "C3-active-vitamin-d-dialysis",
        "warning",
        ("corrected_calcium_high",),
    )
    assert [s.key for s in f.substitutions] == ["cinacalcet"]
    assert check_order(record(conditions=[ESRD], labs=NORMAL_LABS), draft(CALCITRIOL)) == []


def test_active_vitamin_d_on_dialysis_with_only_a_stale_high_calcium_is_info():
    labs = (lab("calcium", 10.8, days_ago=50), lab("albumin", 4.0, days_ago=50))
    f = only(check_order(record(conditions=[ESRD], labs=labs), draft(CALCITRIOL)))
    assert (f.rule_id, f.indicator) == ("C3-active-vitamin-d-dialysis-stale-data", "info")


def test_nutritional_vitamin_d_never_fires():
    cholecalciferol = med("nutritional_vitamin_d", name="cholecalciferol 0.025 MG Oral Tablet")
    assert check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), draft(cholecalciferol)) == []
