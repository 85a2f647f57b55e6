"""C6 calcimimetics with low calcium: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

import pytest

from cds_service.checks import check_order
from cds_service.checks.c6_calcimimetic_hypocalcaemia import cinacalcet_dose_mg, is_etelcalcetide
from tests.checks.builders import CALCIPHYLAXIS, ESRD, active, cond, draft, lab, med, only, record


def cinacalcet(dose: dict | None = None, *, name: str = "cinacalcet 30 MG Oral Tablet", **kw) -> object:
    raw = {"resourceType": "MedicationRequest", "id": "d1", "status": kw.get("status", "draft")}
    if dose is not None:
        raw["dosageInstruction"] = [{"doseAndRate": [{"doseQuantity": dose}]}]
    return med("calcimimetic", name=name, raw=raw, **kw)


ETELCALCETIDE = med("calcimimetic", name="0.5 ML etelcalcetide 5 MG/ML Injection")


def calcium(total: float, days_ago: float = 3) -> tuple:
    return (lab("calcium", total, days_ago), lab("albumin", 4.0, days_ago))


def test_calcium_below_7_5_withholds_cinacalcet_critically_and_names_the_next_lower_dose():
    order = cinacalcet({"value": 90, "unit": "mg"}, name="cinacalcet 90 MG Oral Tablet")
    f = only(check_order(record(conditions=[ESRD], labs=calcium(7.2)), draft(order)))
    assert (f.rule_id, f.indicator, f.withhold) == ("C6-calcimimetic-calcium-below-7-5", "critical", True)
    assert f.reasons == ("corrected_calcium_below_hold",) and "calcimimetic_restart" in f.notes
    assert [(x.key, x.params["dose"], x.params["next_dose"]) for x in f.facts] == [("calcimimetic_dose", "90", "60")]


def test_exactly_7_5_is_not_below_7_5():
    running = cinacalcet(rid="MedicationRequest/a1", status="active")
    f = only(check_order(record(conditions=[ESRD], labs=calcium(7.5)), active(running)))
    assert (f.rule_id, f.indicator) == ("C6-calcimimetic-low-calcium-dialysis", "info")


def test_a_new_calcimimetic_below_the_lower_limit_of_normal_is_not_started():
    # F07 (variant F): a new 60 mg draft at corrected calcium 8.1: the labels say do not start.
    new = cinacalcet({"value": 60, "unit": "mg"}, name="cinacalcet 60 MG Oral Tablet")
    f = only(check_order(record(conditions=[ESRD], labs=calcium(8.1)), draft(new)))
    assert (f.rule_id, f.indicator, f.variant, f.withhold) == (
        "C6-calcimimetic-low-calcium-dialysis",
        "warning",
        "new_order",
        True,
    )
    assert "calcimimetic_no_start" in f.notes


def test_a_dose_increase_is_a_new_order_and_a_renewal_at_the_same_dose_is_not():
    running = cinacalcet({"value": 30, "unit": "mg"}, rid="MedicationRequest/a1", status="active")
    increase = cinacalcet({"value": 60, "unit": "mg"}, name="cinacalcet 60 MG Oral Tablet")
    same = cinacalcet({"value": 30, "unit": "mg"})
    rec = record(conditions=[ESRD], labs=calcium(8.1), medications=[running])
    assert only(check_order(rec, draft(increase))).variant == "new_order"
    renewal = only(check_order(rec, draft(same)))
    assert (renewal.variant, renewal.indicator, renewal.withhold) == ("", "info", False)


@pytest.mark.parametrize(
    ("dose", "name", "expected"),
    [
        ({"value": 60, "unit": "mg"}, "cinacalcet 60 MG Oral Tablet", 60.0),
        ({"value": 2, "unit": "tablet"}, "cinacalcet 30 MG Oral Tablet", 60.0),
        ({"value": 1, "code": "{tbl}"}, "Sensipar 90 mg", None),  # strength not in a cinacalcet name
        (None, "cinacalcet 30 MG Oral Tablet", None),
    ],
)
def test_the_dose_is_read_from_the_order_when_it_can_be(dose, name, expected):
    found = cinacalcet_dose_mg(cinacalcet(dose, name=name))
    assert (found[0] if found else None) == expected


def test_at_the_lowest_step_or_with_an_unreadable_dose_the_card_says_so():
    at_30 = only(
        check_order(record(conditions=[ESRD], labs=calcium(7.0)), draft(cinacalcet({"value": 30, "unit": "mg"})))
    )
    assert [x.key for x in at_30.facts] == ["calcimimetic_lowest_dose"]
    unknown = only(check_order(record(conditions=[ESRD], labs=calcium(7.0)), draft(cinacalcet())))
    assert [x.key for x in unknown.facts] == ["calcimimetic_dose_unknown"]


def test_etelcalcetide_follows_its_own_label_and_is_critical_like_cinacalcet():
    # F12: the Parsabiv label gives its own stop and restart rules (5 mg lower, at or above LLN).
    assert is_etelcalcetide(ETELCALCETIDE)
    f = only(check_order(record(conditions=[ESRD], labs=calcium(7.0)), draft(ETELCALCETIDE)))
    assert (f.indicator, f.withhold, f.facts, f.variant) == ("critical", True, (), "etelcalcetide")
    assert "etelcalcetide_restart" in f.notes and "calcimimetic_restart" not in f.notes


def test_between_7_5_and_8_4_in_calciphylaxis_a_warning_states_the_conflict():
    running = cinacalcet(rid="MedicationRequest/a1", status="active")
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=calcium(8.0)), active(running)))
    assert (f.rule_id, f.indicator, f.withhold) == ("C6-calcimimetic-low-calcium-calciphylaxis", "warning", False)
    assert {"hypocalcaemia_in_calciphylaxis", "dialysate_calcium_lever"} <= set(f.notes)
    assert f.substitutions == () and not f.stop_only


def test_calcium_of_8_4_or_more_and_no_calcium_result_are_silent():
    assert check_order(record(conditions=[ESRD], labs=calcium(8.4)), draft(cinacalcet())) == []
    assert check_order(record(conditions=[ESRD]), draft(cinacalcet())) == []


def test_ionized_calcium_stands_in_with_its_derived_cut_offs():
    severe = only(check_order(record(conditions=[ESRD], labs=(lab("ionized_calcium", 1.02),)), draft(cinacalcet())))
    assert severe.reasons == ("ionized_calcium_below_hold",)
    assert {"ionized_calcium_used", "calcimimetic_ionized_cutoffs"} <= set(severe.notes)
    mild = only(check_order(record(conditions=[ESRD], labs=(lab("ionized_calcium", 1.10),)), draft(cinacalcet())))
    assert mild.reasons == ("ionized_calcium_low",)


def test_an_out_of_date_low_calcium_asks_for_a_recheck():
    f = only(check_order(record(conditions=[ESRD], labs=calcium(7.0, days_ago=60)), draft(cinacalcet())))
    assert (f.rule_id, f.indicator, f.withhold) == ("C6-calcimimetic-low-calcium-stale-data", "info", False)


def test_an_active_order_on_patient_view_is_put_on_hold_and_out_of_scope_is_silent():
    order = cinacalcet(rid="MedicationRequest/a1", status="active")
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], labs=calcium(7.0)), active(order)))
    assert f.withhold and not f.review.is_draft
    assert check_order(record(conditions=[cond("primary_hyperparathyroidism")], labs=calcium(7.0)), draft(order)) == []


def test_a_low_calcium_drawn_before_the_calcimimetic_change_asks_for_a_recheck_within_a_week():
    # F25: calcium within 1 week of a calcimimetic start or change.
    from dataclasses import replace
    from datetime import timedelta

    from tests.checks.builders import NOW

    running = replace(cinacalcet(rid="MedicationRequest/a1", status="active"), authored=NOW - timedelta(days=12))
    rec = record(conditions=[ESRD], labs=calcium(8.0, days_ago=15), medications=[running])
    f = only(check_order(rec, active(running)))
    assert (f.rule_id, f.indicator) == ("C6-calcimimetic-low-calcium-stale-data", "info")
    gap = next(g for g in f.gaps if g.key == "lab_before_calcimimetic")
    assert gap.params["since"] == (NOW - timedelta(days=12)).date().isoformat()
    from cds_service.render.cards import render_card

    detail = render_card(f, patient_id="p1").detail or ""
    assert "drawn before the calcimimetic order of" in detail and "within 1 week" in detail


def test_a_same_draw_ionized_calcium_is_preferred_to_the_corrected_calcium():
    # F15: corrected 8.6 mg/dL hides an ionized 1.02 mmol/L drawn the same day: withhold.
    labs = (lab("calcium", 8.6), lab("albumin", 4.0), lab("ionized_calcium", 1.02))
    f = only(check_order(record(conditions=[ESRD], labs=labs), draft(cinacalcet())))
    assert (f.rule_id, f.indicator) == ("C6-calcimimetic-calcium-below-7-5", "critical")
    assert [v.analyte for v in f.labs[:2]] == ["ionized_calcium", "corrected_calcium"]
    assert "ionized_calcium_preferred" in f.notes
    # An older ionized calcium does not override a newer total calcium.
    older = (lab("calcium", 8.6), lab("albumin", 4.0), lab("ionized_calcium", 1.02, days_ago=10))
    assert check_order(record(conditions=[ESRD], labs=older), draft(cinacalcet())) == []


def test_a_calcimimetic_is_not_started_at_a_pth_at_target_and_a_running_one_is_reduced_below_100():
    # F06 for the order itself: a PTH-lowering drug where PTH is not above target.
    labs = (lab("calcium", 9.3), lab("albumin", 4.0), lab("pth", 210))
    f = only(check_order(record(conditions=[ESRD], labs=labs), draft(cinacalcet())))
    assert (f.rule_id, f.indicator, f.withhold, f.variant) == (
        "C6-calcimimetic-pth-not-above-target",
        "warning",
        True,
        "",
    )
    running = cinacalcet(rid="MedicationRequest/a1", status="active")
    at_target = record(conditions=[ESRD], labs=labs)
    assert check_order(at_target, active(running)) == []  # running at target: the prescriber's titration
    low = (lab("calcium", 9.3), lab("albumin", 4.0), lab("pth", 80))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=low), active(running)))
    assert (f.reasons, f.withhold, f.variant) == (("pth_below_avoid",), False, "running")
    above = (lab("calcium", 9.3), lab("albumin", 4.0), lab("pth", 420))
    assert check_order(record(conditions=[ESRD], labs=above), draft(cinacalcet())) == []
