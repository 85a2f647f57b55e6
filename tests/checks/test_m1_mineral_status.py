"""M1 mineral status on patient-view: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

from cds_service.checks import review_chart
from tests.checks.builders import CALCIPHYLAXIS, ESRD, NORMAL_LABS, lab, med, only, record


def test_mineral_status_flags_out_of_range_and_overdue_results_and_missing_thiosulfate():
    labs = (lab("calcium", 9.9), lab("albumin", 4.0), lab("phosphate", 6.5), lab("pth", 280, days_ago=140))
    f = only(review_chart(record(conditions=[CALCIPHYLAXIS], labs=labs)))
    assert (f.rule_id, f.indicator, f.review) == ("M1-mineral-status-calciphylaxis", "info", None)
    assert set(f.reasons) == {"corrected_calcium_high", "phosphate_high", "ca_x_p_high"}  # 9.9 x 6.5 = 64
    assert {"calcium_above_target", "sts_not_prescribed"} <= set(f.notes)
    assert any(g.key == "lab_stale" and g.params["analyte"] == "pth" for g in f.gaps)


def test_mineral_status_does_not_nag_about_thiosulfate_when_it_is_prescribed():
    sts = med("sodium_thiosulfate", name="sodium thiosulfate 250 MG/ML", rid="MedicationRequest/s1", status="active")
    f = only(review_chart(record(conditions=[CALCIPHYLAXIS], labs=NORMAL_LABS, medications=[sts])))
    assert "sts_not_prescribed" not in f.notes
    assert f.reasons == ()  # 9.0 / 5.0 / 45 / 250: all within target


def test_mineral_status_is_only_for_calciphylaxis():
    assert review_chart(record(conditions=[ESRD], labs=NORMAL_LABS)) == []
