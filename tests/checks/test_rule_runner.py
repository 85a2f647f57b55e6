"""the rule runner: one card per problem per order, partial and missing data: the rule as a pure function, on hand-built PatientRecords."""

from __future__ import annotations

from cds_service.checks import check_order, review_chart
from tests.checks.builders import (
    CALCIPHYLAXIS,
    CALCIUM_ACETATE,
    ESRD,
    NORMAL_LABS,
    draft,
    lab,
    med,
    only,
    record,
)


def test_one_card_per_problem_for_a_drug_in_two_classes():
    combo = med("calcium_binder", "active_vitamin_d", name="calcium + calcitriol")
    findings = check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), draft(combo))
    assert sorted(f.rule_id for f in findings) == [
        "C1-calcium-binder-calciphylaxis",
        "C3-active-vitamin-d-calciphylaxis",
    ]


# --- missing conditions ---------------------------------------------------------------------


def test_without_the_medication_list_no_substitute_is_offered_and_duplicates_are_said_not_checked():
    # A one-click order needs every check made on complete data: duplicates could not be checked.
    labs = [lab("calcium", 9.0), lab("albumin", 4.0), lab("phosphate", 6.4)]
    rec = record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs, unavailable={"meds": "FHIR server not trusted"})
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert f.substitutions == () and f.stop_only
    check = next(c for c in f.safety_checks if c.key == "no_active_non_calcium_binder")
    assert check.passed is None and "FHIR server not trusted" in check.detail
    assert [g.params for g in f.gaps if g.key == "prefetch_unavailable"] == [
        {"key": "meds", "why": "FHIR server not trusted"}
    ]


def test_labs_missing_because_their_prefetch_failed_are_reported_once_as_unavailable():
    rec = record(conditions=[ESRD], labs=[lab("calcium", 10.8)], unavailable={"pth": "timed out"})
    f = only(check_order(rec, draft(CALCIUM_ACETATE)))
    assert not any(g.key == "lab_missing" and g.params["analyte"] == "pth" for g in f.gaps)
    assert any(g.key == "prefetch_unavailable" and g.params["key"] == "pth" for g in f.gaps)


def test_partly_read_data_is_used_and_the_card_says_it_was_partial():

    rec = record(conditions=[CALCIPHYLAXIS, ESRD], incomplete={"calcium": "page 2 not read (timed out)"})
    f = only(review_chart(rec))
    assert f.rule_id == "M1-mineral-status-calciphylaxis"
    assert [g.params for g in f.gaps if g.key == "prefetch_incomplete"] == [
        {"key": "calcium", "why": "page 2 not read (timed out)"}
    ]


def test_partial_data_is_named_in_the_rendered_card():
    from cds_service.render.cards import render_cards

    rec = record(conditions=[CALCIPHYLAXIS, ESRD], incomplete={"calcium": "page 2 not read (timed out)"})
    (card,) = render_cards(review_chart(rec), "p1")
    assert "calcium results: only partly available (page 2 not read (timed out))" in card.detail
