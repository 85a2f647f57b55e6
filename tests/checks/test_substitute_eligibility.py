"""Who may get a substitute: the states each declares in cards/substitutes.toml, checked."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from cds_service.checks import check_order
from cds_service.checks.eligibility import allergy_touches, evaluate
from cds_service.checks.labs import lab_facts
from cds_service.knowledge.content import content
from cds_service.patient.model import AllergyFact
from tests.checks.builders import (
    CALCIPHYLAXIS,
    CALCITRIOL,
    CALCIUM_ACETATE,
    ESRD,
    HIGH_PHOSPHATE_LABS,
    NORMAL_LABS,
    NOW,
    WARFARIN,
    cond,
    draft,
    lab,
    only,
    record,
)

AF = cond("atrial_fibrillation", "Atrial fibrillation")


def allergy(*classes: str, ingredients: tuple[str, ...] = (), rid: str = "AllergyIntolerance/a1") -> AllergyFact:
    return AllergyFact(rid, "recorded allergy", frozenset(classes), ingredients, "code")


def test_reduced_dose_apixaban_needs_dialysis_and_the_card_says_the_label_dose_applies():
    rec = record(conditions=[CALCIPHYLAXIS, AF], labs=(lab("egfr", 48),))
    f = only(check_order(rec, draft(WARFARIN)))
    assert f.substitutions == () and f.stop_only  # stop warfarin; the DOAC is prescribed by hand
    assert "apixaban_label_dose" in f.notes and "anticoagulation_team" not in f.notes
    assert not next(c for c in f.safety_checks if c.key == "on_dialysis").passed


def test_cinacalcet_is_not_offered_outside_dialysis():
    labs = (lab("calcium", 9.2), lab("albumin", 4.0), lab("pth", 320), lab("egfr", 40))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], labs=labs), draft(CALCITRIOL)))
    assert f.substitutions == () and "cinacalcet_outside_dialysis" in f.notes


def test_a_phosphate_binder_is_offered_outside_dialysis_when_phosphate_is_high():
    labs = (lab("phosphate", 6.4), lab("egfr", 35))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS], labs=labs), draft(CALCIUM_ACETATE)))
    assert [s.key for s in f.substitutions] == ["sevelamer", "lanthanum"]
    check = next(c for c in f.safety_checks if c.key == "phosphate_control_needed")
    assert check.passed and "6.4 mg/dL" in check.detail


def test_a_class_level_allergy_with_no_ingredient_blocks_every_substitute_of_that_class():
    rec = record(conditions=[CALCIPHYLAXIS, ESRD, AF], labs=NORMAL_LABS)
    rec = replace(rec, allergies=(allergy("doac"),))
    f = only(check_order(rec, draft(WARFARIN)))
    assert f.substitutions == () and "anticoagulation_team" in f.notes
    failed = next(c for c in f.safety_checks if c.key == "no_allergy")
    assert not failed.passed and "AllergyIntolerance/a1" in failed.detail


def test_an_allergy_to_one_binder_leaves_the_other_offered_and_recommended():
    rec = replace(
        record(conditions=[CALCIPHYLAXIS, ESRD], labs=HIGH_PHOSPHATE_LABS),
        allergies=(allergy("non_calcium_binder", ingredients=("sevelamer carbonate",)),),
    )
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert [(s.key, s.recommended) for s in f.substitutions] == [("lanthanum", True)]


def test_allergy_matching_is_by_ingredient_and_never_across_ingredients_of_a_class():
    spec = content().substitutes["apixaban"]
    assert allergy_touches(allergy("doac", ingredients=("apixaban",)), spec)
    assert not allergy_touches(allergy("doac", ingredients=("rivaroxaban",)), spec)
    assert not allergy_touches(allergy("vka", ingredients=("warfarin",)), spec)


def test_an_unavailable_allergy_list_is_not_checked_and_withholds_the_substitute():
    rec = record(
        conditions=[CALCIPHYLAXIS, ESRD], labs=HIGH_PHOSPHATE_LABS, unavailable={"allergies": "no FHIR server given"}
    )
    result = evaluate(content().substitutes["sevelamer"], rec, lab_facts(rec))
    assert not result.offered
    assert [g.params["key"] for g in result.gaps] == ["allergies"]
    check = next(c for c in result.checks if c.key == "no_allergy")
    assert check.passed is None and "no FHIR server given" in check.detail


def test_every_not_checked_state_withholds_and_is_never_a_tick():
    # The engineering standard: data unavailable or only partly read is "not checked", never met.
    partial = {"conditions": "later pages not read (no FHIR server given)"}
    rec = record(conditions=[CALCIPHYLAXIS, ESRD], labs=HIGH_PHOSPHATE_LABS, incomplete=partial)
    for key in ("sevelamer", "lanthanum"):
        result = evaluate(content().substitutes[key], rec, lab_facts(rec))
        assert not result.offered, key
        assert next(c for c in result.checks if c.key == "no_bowel_obstruction").passed is None


def test_every_substitute_declares_its_label_source_route_and_indication():
    for key, spec in content().substitutes.items():
        assert spec.references and spec.route_code and spec.indication, key
        assert any(r.endswith("_label") or r.endswith("_label_us") for r in spec.references), key


def test_a_transplant_with_a_working_graft_is_not_on_dialysis_unless_dialysis_came_after_it():
    transplant = replace(cond("kidney_transplant", "Kidney transplant status"), recorded=NOW - timedelta(days=900))
    working = record(conditions=[ESRD, transplant], labs=(lab("egfr", 52),))
    assert not working.on_dialysis and working.functioning_transplant == transplant
    failing = record(conditions=[ESRD, transplant], labs=(lab("egfr", 9),))
    assert failing.on_dialysis
    restarted = replace(cond("dialysis", "Haemodialysis"), recorded=NOW - timedelta(days=30))
    assert record(conditions=[ESRD, transplant, restarted], labs=(lab("egfr", 20),)).on_dialysis
    rejected = cond("kidney_transplant_failed", "Kidney transplant failure")
    assert record(conditions=[ESRD, transplant, rejected], labs=(lab("egfr", 22),)).on_dialysis
