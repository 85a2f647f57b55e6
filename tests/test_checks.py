"""The clinical checks as pure functions, on hand-built PatientRecords (no FHIR parsing, no HTTP).

The builders at the top are reused by the other test_checks_* modules.
"""

from __future__ import annotations

from datetime import timedelta

from cds_service.checks import check_order, review_chart, run_checks
from cds_service.patient.model import ConditionFact, LabResult, MedicationOrder, OrderUnderReview, PatientRecord
from tests.conftest import FROZEN_NOW

NOW = FROZEN_NOW
UNITS = {
    "calcium": "mg/dL",
    "corrected_calcium": "mg/dL",
    "albumin": "g/dL",
    "phosphate": "mg/dL",
    "pth": "pg/mL",
    "egfr": "mL/min/{1.73_m2}",
    "crp": "mg/L",
    "ionized_calcium": "mmol/L",
}

_counter = iter(range(1, 10_000))


def lab(analyte: str, value: float, days_ago: float = 3, *, original: tuple[float, str] | None = None) -> LabResult:
    unit = UNITS[analyte]
    return LabResult(
        analyte=analyte,
        value=value,
        unit=unit,
        original_value=original[0] if original else value,
        original_unit=original[1] if original else unit,
        effective=NOW - timedelta(days=days_ago),
        resource_id=f"Observation/{analyte}-{next(_counter)}",
        loinc="x",
        status="final",
    )


def cond(kind: str, display: str | None = None, rid: str | None = None) -> ConditionFact:
    return ConditionFact(
        kind=kind,
        resource_id=rid or f"Condition/{kind}",
        display=display or kind,
        matched_by="code",
        code="1",
        system="http://snomed.info/sct",
        clinical_status="active",
        verification_status="confirmed",
    )


def med(
    *classes: str,
    name: str = "some drug",
    rid: str = "MedicationRequest/d1",
    status: str = "draft",
    matched_by: str = "code",
    raw: dict | None = None,
) -> MedicationOrder:
    return MedicationOrder(
        resource_id=rid,
        resource_type=rid.split("/")[0],
        status=status,
        drug_name=name,
        drug_classes=frozenset(classes),
        matched_by=matched_by,
        matched_code="http://www.nlm.nih.gov/research/umls/rxnorm|1" if matched_by == "code" else None,
        raw=raw if raw is not None else {"resourceType": rid.split("/")[0], "id": rid.split("/")[-1], "status": status},
    )


def record(*, conditions=(), labs=(), medications=(), unavailable=None, incomplete=None) -> PatientRecord:
    series: dict[str, list[LabResult]] = {}
    for item in labs:
        series.setdefault(item.analyte, []).append(item)
    return PatientRecord(
        patient_id="p1",
        now=NOW,
        conditions=tuple(conditions),
        medications=tuple(medications),
        labs={k: tuple(sorted(v, key=lambda r: r.effective, reverse=True)) for k, v in series.items()},
        unavailable=dict(unavailable or {}),
        incomplete=dict(incomplete or {}),
    )


def draft(order: MedicationOrder) -> OrderUnderReview:
    return OrderUnderReview(order=order, is_draft=True)


def active(order: MedicationOrder) -> OrderUnderReview:
    return OrderUnderReview(order=order, is_draft=False)


CALCIUM_ACETATE = med("calcium_binder", name="calcium acetate 667 MG Oral Tablet")
WARFARIN = med("vka", name="warfarin sodium 5 MG Oral Tablet")
CALCITRIOL = med("active_vitamin_d", name="calcitriol 0.00025 MG Oral Capsule")
CALCIPHYLAXIS = cond("calciphylaxis", "Calciphylaxis")
ESRD = cond("kidney_failure", "End-stage renal disease")
NORMAL_LABS = (lab("calcium", 9.0), lab("albumin", 4.0), lab("phosphate", 5.0), lab("pth", 250))


def only(findings):
    assert len(findings) == 1, [f.rule_id for f in findings]
    return findings[0]


# --- C1 calcium-based binders ---------------------------------------------------------------


def test_calcium_binder_in_calciphylaxis_is_critical_and_offers_sevelamer_then_lanthanum():
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], labs=NORMAL_LABS), draft(CALCIUM_ACETATE)))
    assert (f.rule_id, f.indicator) == ("C1-calcium-binder-calciphylaxis", "critical")
    assert [(s.key, s.recommended) for s in f.substitutions] == [("sevelamer", True), ("lanthanum", False)]
    assert f.conditions == (CALCIPHYLAXIS,)
    assert f.order is CALCIUM_ACETATE and not f.stop_only


def test_calcium_binder_in_calciphylaxis_with_sevelamer_already_active_only_removes_the_order():
    sevelamer = med(
        "non_calcium_binder", name="sevelamer carbonate 800 MG", rid="MedicationRequest/a1", status="active"
    )
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], medications=[sevelamer]), draft(CALCIUM_ACETATE)))
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
    assert any(g.key == "calcification_not_coded" for g in f.gaps)


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


def test_warfarin_in_calciphylaxis_with_atrial_fibrillation_offers_apixaban():
    af = cond("atrial_fibrillation", "Atrial fibrillation")
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, af]), draft(WARFARIN)))
    assert (f.rule_id, f.indicator) == ("C2-vka-calciphylaxis", "critical")
    assert [(s.key, s.recommended) for s in f.substitutions] == [("apixaban", True)]
    assert {c.key: c.passed for c in f.safety_checks} == {
        "af_recorded": True,
        "no_prosthetic_valve": True,
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
    f = only(check_order(record(conditions=[CALCIPHYLAXIS]), draft(WARFARIN)))
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


def test_calcitriol_in_calciphylaxis_is_critical_and_offers_cinacalcet_when_pth_and_calcium_allow():
    labs = (lab("calcium", 9.2), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], labs=labs), draft(CALCITRIOL)))
    assert (f.rule_id, f.indicator) == ("C3-active-vitamin-d-calciphylaxis", "critical")
    assert [s.key for s in f.substitutions] == ["cinacalcet"]
    assert "check_calcium_after_cinacalcet" in f.notes
    assert all(c.passed for c in f.safety_checks)


def test_no_cinacalcet_when_corrected_calcium_is_below_8_4():
    labs = (lab("calcium", 7.9), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == () and f.stop_only
    check = next(c for c in f.safety_checks if c.key == "corrected_calcium_not_low")
    assert not check.passed and "7.9 mg/dL" in check.detail


def test_corrected_calcium_of_exactly_8_4_still_allows_cinacalcet():
    labs = (lab("calcium", 8.4), lab("albumin", 4.0), lab("pth", 320))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], labs=labs), draft(CALCITRIOL)))
    assert [s.key for s in f.substitutions] == ["cinacalcet"]


def test_pth_above_500_suggests_parathyroidectomy_referral_instead_of_cinacalcet():
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 620))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == () and "parathyroidectomy_referral" in f.notes


def test_pth_below_100_warns_against_further_suppression():
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 80))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == () and "pth_below_avoid" in f.notes


def test_stale_pth_withholds_cinacalcet_and_says_so():
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 300, days_ago=120))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], labs=labs), draft(CALCITRIOL)))
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


def test_one_card_per_problem_for_a_drug_in_two_classes():
    combo = med("calcium_binder", "active_vitamin_d", name="calcium + calcitriol")
    findings = check_order(record(conditions=[CALCIPHYLAXIS], labs=NORMAL_LABS), draft(combo))
    assert sorted(f.rule_id for f in findings) == [
        "C1-calcium-binder-calciphylaxis",
        "C3-active-vitamin-d-calciphylaxis",
    ]


# --- missing conditions ---------------------------------------------------------------------


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


def test_without_the_medication_list_the_substitute_is_still_offered_and_the_card_says_duplicates_were_not_checked():
    rec = record(conditions=[CALCIPHYLAXIS], unavailable={"meds": "FHIR server not trusted"})
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert [s.key for s in f.substitutions] == ["sevelamer", "lanthanum"]
    assert not any(c.key == "no_active_non_calcium_binder" for c in f.safety_checks)
    assert [g.params for g in f.gaps if g.key == "prefetch_unavailable"] == [
        {"key": "meds", "why": "FHIR server not trusted"}
    ]


def test_labs_missing_because_their_prefetch_failed_are_reported_once_as_unavailable():
    rec = record(conditions=[ESRD], labs=[lab("calcium", 10.8)], unavailable={"pth": "timed out"})
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert not any(g.key == "lab_missing" and g.params["analyte"] == "pth" for g in f.gaps)
    assert any(g.key == "prefetch_unavailable" and g.params["key"] == "pth" for g in f.gaps)


def test_partly_read_data_is_used_and_the_card_says_it_was_partial():
    from cds_service.checks import review_chart

    rec = record(conditions=[CALCIPHYLAXIS], incomplete={"calcium": "page 2 not read (timed out)"})
    f = only(review_chart(rec))
    assert f.rule_id == "M1-mineral-status-calciphylaxis"
    assert [g.params for g in f.gaps if g.key == "prefetch_incomplete"] == [
        {"key": "calcium", "why": "page 2 not read (timed out)"}
    ]


def test_a_partly_read_condition_list_never_silences_a_monitored_drug():
    rec = record(incomplete={"conditions": "page 2 not read (FHIR server answered 500)"})
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert f.rule_id == "X1-calciphylaxis-check-incomplete" and f.indicator == "info"
    assert f.gaps[0].key == "prefetch_incomplete" and f.gaps[0].params["key"] == "conditions"


def test_partial_data_is_named_in_the_rendered_card():
    from cds_service.checks import review_chart
    from cds_service.render.cards import render_cards

    rec = record(conditions=[CALCIPHYLAXIS], incomplete={"calcium": "page 2 not read (timed out)"})
    (card,) = render_cards(review_chart(rec), "p1")
    assert "calcium results: only partly available (page 2 not read (timed out))" in card.detail
