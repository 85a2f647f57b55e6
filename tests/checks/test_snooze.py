"""Snoozes: an informed override stops a card repeating on patient-view, never a worse one."""

from __future__ import annotations

from datetime import timedelta

from cds_service.checks import check_order, review_chart
from cds_service.checks.snooze import Snooze, apply_snoozes, subject_of
from cds_service.render.cards import render_cards
from tests.checks.builders import (
    CALCIPHYLAXIS,
    CALCIUM_ACETATE,
    ESRD,
    NORMAL_LABS,
    NOW,
    active,
    draft,
    lab,
    only,
    record,
)

REASON = "Addressed with nephrology: do not show again for 3 months"
REASON_CODE = "addressed-with-nephrology-3-months"  # a card shows the service's wording of the code


def _snooze(rule_id, subject, indicator="critical", days=30):
    return Snooze(rule_id, subject, indicator, NOW + timedelta(days=days), REASON, reason_code=REASON_CODE)


def test_patient_view_does_not_repeat_a_snoozed_card():
    findings = check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), active(CALCIUM_ACETATE))
    f = only(findings)
    snooze = _snooze(f.rule_id, subject_of(f))
    assert apply_snoozes(findings, [snooze], "patient-view", NOW) == []


def test_order_hooks_still_warn_and_say_the_earlier_override_holds_until_when():
    findings = check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), draft(CALCIUM_ACETATE))
    f = only(findings)
    (shown,) = apply_snoozes(findings, [_snooze(f.rule_id, subject_of(f))], "order-select", NOW)
    assert shown.earlier_override is not None
    (card,) = render_cards([shown], "p1")
    assert REASON in card.detail and (NOW + timedelta(days=30)).date().isoformat() in card.detail


def test_an_expired_snooze_no_longer_hides_the_card():
    findings = check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), active(CALCIUM_ACETATE))
    f = only(findings)
    assert apply_snoozes(findings, [_snooze(f.rule_id, subject_of(f), days=-1)], "patient-view", NOW) == findings


def test_a_worse_state_fires_again_despite_a_dialysis_level_snooze():
    # Overridden as a dialysis-level warning; calciphylaxis is now recorded: another rule, critical.
    findings = check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), active(CALCIUM_ACETATE))
    f = only(findings)
    dialysis_level = _snooze("C1-calcium-binder-dialysis", subject_of(f), indicator="warning")
    assert apply_snoozes(findings, [dialysis_level], "patient-view", NOW) == findings
    # ... and a more severe card of the same rule is not hidden by a snooze of a milder one.
    milder = _snooze(f.rule_id, subject_of(f), indicator="warning")
    assert apply_snoozes(findings, [milder], "patient-view", NOW) == findings


def test_a_snooze_is_per_drug_and_chart_reviews_are_snoozed_as_a_whole():
    findings = check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), active(CALCIUM_ACETATE))
    f = only(findings)
    assert apply_snoozes(findings, [_snooze(f.rule_id, "calcium carbonate")], "patient-view", NOW) == findings
    chart = review_chart(record(conditions=[CALCIPHYLAXIS], labs=(lab("calcium", 9.0),)))
    m1 = only(chart)
    assert subject_of(m1) == ""
    assert apply_snoozes(chart, [_snooze(m1.rule_id, "", indicator="info")], "patient-view", NOW) == []
