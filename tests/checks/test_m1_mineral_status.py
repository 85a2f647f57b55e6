"""M1 mineral status on patient-view: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

import dataclasses

import pytest

from cds_service.checks import review_chart
from cds_service.checks.labs import trend
from cds_service.checks.modality import fact_modality
from cds_service.patient.model import AllergyFact, ConditionFact
from cds_service.patient.terminology import ICD10CM, SNOMED
from tests.checks.builders import CALCIPHYLAXIS, ESRD, NORMAL_LABS, cond, lab, med, only, record


def test_mineral_status_flags_out_of_range_and_overdue_results_and_missing_thiosulfate():
    labs = (lab("calcium", 9.9), lab("albumin", 4.0), lab("phosphate", 6.5), lab("pth", 280, days_ago=140))
    f = only(review_chart(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs)))
    assert (f.rule_id, f.indicator, f.review) == ("M1-mineral-status-calciphylaxis", "info", None)
    assert set(f.reasons) == {"corrected_calcium_high", "phosphate_high", "ca_x_p_high"}  # 9.9 x 6.5 = 64
    assert {"calcium_above_target_dialysis", "sts_not_prescribed"} <= set(f.notes)
    assert any(g.key == "lab_stale" and g.params["analyte"] == "pth" for g in f.gaps)


def test_non_uraemic_calciphylaxis_is_not_judged_against_dialysis_targets():
    # F16 (variant K): eGFR 62, no dialysis: PTH 45 and phosphate 3.2 are normal values there.
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("phosphate", 3.2), lab("pth", 45), lab("egfr", 62))
    f = only(review_chart(record(conditions=[CALCIPHYLAXIS], labs=labs)))
    assert f.reasons == () and "not_on_dialysis_targets" in f.notes
    assert "pth_below_avoid" not in f.notes


def test_mineral_status_does_not_nag_about_thiosulfate_when_it_is_prescribed():
    sts = med("sodium_thiosulfate", name="sodium thiosulfate 250 MG/ML", rid="MedicationRequest/s1", status="active")
    f = only(review_chart(record(conditions=[CALCIPHYLAXIS], labs=NORMAL_LABS, medications=[sts])))
    assert "sts_not_prescribed" not in f.notes
    assert f.reasons == ()  # 9.0 / 5.0 / 45 / 250: all within target


def test_mineral_status_is_only_for_calciphylaxis():
    assert review_chart(record(conditions=[ESRD], labs=NORMAL_LABS)) == []


# --- sodium thiosulfate as an order, haemodialysis vs peritoneal dialysis (issue 14) ----------

HAEMODIALYSIS = cond("dialysis", "Hemodialysis (procedure)", rid="Procedure/hd-1")
PERITONEAL = cond("dialysis", "Peritoneal dialysis", rid="Procedure/pd-1")


def test_on_haemodialysis_without_thiosulfate_the_review_offers_it_as_an_order_to_create():
    f = only(review_chart(record(conditions=[CALCIPHYLAXIS, HAEMODIALYSIS], labs=NORMAL_LABS)))
    assert [(s.key, s.recommended) for s in f.substitutions] == [("sodium_thiosulfate", False)]
    assert not f.stop_only and f.review is None
    checks = {c.key: c for c in f.safety_checks}
    assert checks["on_haemodialysis"].passed and "Procedure/hd-1" in checks["on_haemodialysis"].detail
    assert checks["no_allergy"].passed and checks["no_active_sodium_thiosulfate"].passed


@pytest.mark.parametrize(
    ("conditions", "why"),
    [
        ([CALCIPHYLAXIS, PERITONEAL], "peritoneal dialysis recorded"),
        ([CALCIPHYLAXIS, ESRD], "dialysis modality not recorded"),
        ([CALCIPHYLAXIS, HAEMODIALYSIS, PERITONEAL], "both haemodialysis and peritoneal dialysis"),
        ([CALCIPHYLAXIS], "not on dialysis"),
    ],
)
def test_no_order_unless_haemodialysis_is_recorded_and_the_card_says_why(conditions, why):
    f = only(review_chart(record(conditions=conditions, labs=NORMAL_LABS)))
    assert f.substitutions == () and "sts_not_prescribed" in f.notes
    check = next(c for c in f.safety_checks if c.key == "on_haemodialysis")
    assert not check.passed and why in check.detail


def test_thiosulfate_given_at_dialysis_counts_as_taken():
    given = med("sodium_thiosulfate", name="sodium thiosulfate 25 g IV", rid="MedicationAdministration/x1")
    given = dataclasses.replace(given, kind="administration")
    f = only(review_chart(record(conditions=[CALCIPHYLAXIS, HAEMODIALYSIS], medications=[given])))
    assert f.substitutions == () and f.safety_checks == () and "sts_not_prescribed" not in f.notes


def test_an_allergy_to_thiosulfate_withholds_the_order():
    rec = dataclasses.replace(
        record(conditions=[CALCIPHYLAXIS, HAEMODIALYSIS]),
        allergies=(
            AllergyFact("AllergyIntolerance/a1", "sodium thiosulfate", frozenset({"sodium_thiosulfate"}), (), "text"),
        ),
    )
    f = only(review_chart(rec))
    assert f.substitutions == () and not next(c for c in f.safety_checks if c.key == "no_allergy").passed


@pytest.mark.parametrize(
    ("fact", "modality"),
    [
        (ConditionFact("dialysis", "Procedure/p", "x", "code", code="302497006", system=SNOMED), "haemodialysis"),
        (ConditionFact("dialysis", "Condition/c", "x", "code", code="443143006", system=SNOMED), "haemodialysis"),
        (ConditionFact("dialysis", "Procedure/p", "x", "code", code="238318009", system=SNOMED), "peritoneal"),
        (ConditionFact("dialysis", "Condition/c", "x", "code", code="Z4902", system=ICD10CM), "peritoneal"),
        (ConditionFact("dialysis", "Condition/c", "ESRD on HD MWF", "text", matched_text="HD"), "haemodialysis"),
        (ConditionFact("dialysis", "Condition/c", "CAPD since 2024", "text", matched_text="CAPD"), "peritoneal"),
        (ConditionFact("dialysis", "Condition/c", "Dependence on renal dialysis", "code", code="Z99.2"), "unknown"),
    ],
)
def test_how_the_modality_is_told(fact, modality):
    assert fact_modality(fact) == modality


# --- CRP with its trend, and evidence only where it helps -------------------------------------


def test_crp_is_shown_with_the_previous_result_and_missing_crp_is_said():
    labs = (*NORMAL_LABS, lab("crp", 42.0, days_ago=5), lab("crp", 18.0, days_ago=32))
    f = only(review_chart(record(conditions=[CALCIPHYLAXIS], labs=labs)))
    crp = next(v for v in f.labs if v.analyte == "crp")
    assert (crp.value, crp.previous.value, trend(crp)) == (42.0, 18.0, "up")
    assert not crp.stale and "crp" not in {p for p, _ in f.positions}
    missing = only(review_chart(record(conditions=[CALCIPHYLAXIS], labs=NORMAL_LABS)))
    assert any(g.key == "lab_missing" and g.params["analyte"] == "crp" for g in missing.gaps)


def test_dialysate_and_intensified_dialysis_evidence_only_for_patients_on_dialysis():
    labs = (lab("calcium", 9.9), lab("albumin", 4.0), lab("phosphate", 6.5), lab("pth", 280))
    on_dialysis = only(review_chart(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs)))
    assert {"calcium_above_target_dialysis", "phosphate_above_target_dialysis"} <= set(on_dialysis.notes)
    not_on_dialysis = only(review_chart(record(conditions=[CALCIPHYLAXIS], labs=labs)))
    assert "calcium_above_target" in not_on_dialysis.notes
    assert not {"calcium_above_target_dialysis", "phosphate_above_target_dialysis"} & set(not_on_dialysis.notes)
