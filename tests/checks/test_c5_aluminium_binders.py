"""C5 aluminium-based binders beyond 4 weeks: the rule, and how an order's dates are read."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cds_service.checks import check_order
from cds_service.checks.order_timing import duration_days, order_span
from tests.checks.builders import CALCIPHYLAXIS, ESRD, NOW, active, cond, draft, lab, med, only, record

UCUM = "http://unitsofmeasure.org"
TODAY = NOW.date().isoformat()


def _day(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).date().isoformat()


def aluminium(rid: str = "MedicationRequest/d1", status: str = "draft", **raw) -> object:
    resource = {"resourceType": "MedicationRequest", "id": rid.split("/")[1], "status": status, **raw}
    return med("aluminium_binder", name="aluminium hydroxide 475 mg capsule", rid=rid, status=status, raw=resource)


def supply(days: float, repeats: int = 0) -> dict:
    return {
        "expectedSupplyDuration": {"value": days, "unit": "days", "system": UCUM, "code": "d"},
        "numberOfRepeatsAllowed": repeats,
    }


DIALYSIS = [ESRD]
PHOSPHATE_HIGH = (lab("phosphate", 7.2),)


def test_a_supply_with_repeats_past_4_weeks_warns_and_offers_calcium_free_binders():
    order = aluminium(authoredOn=TODAY, dispenseRequest=supply(30, repeats=2))
    f = only(check_order(record(conditions=DIALYSIS, labs=PHOSPHATE_HIGH), draft(order)))
    assert (f.rule_id, f.indicator, f.reasons) == (
        "C5-aluminium-binder-beyond-4-weeks",
        "warning",
        ("aluminium_expected_beyond",),
    )
    assert [s.key for s in f.substitutions] == ["sevelamer", "lanthanum"] and f.substitutions[0].recommended
    end = next(fact for fact in f.facts if fact.key == "order_end_how")
    assert end.params["days"] == "90" and end.params["field"] == "dispenseRequest.expectedSupplyDuration"
    assert next(fact for fact in f.facts if fact.key == "order_start").params == {"date": TODAY, "field": "authoredOn"}


def test_a_course_of_exactly_4_weeks_or_less_is_silent():
    four_weeks = aluminium(authoredOn=TODAY, dispenseRequest=supply(28))
    assert check_order(record(conditions=DIALYSIS), draft(four_weeks)) == []
    repeat = {"frequency": 3, "period": 1, "periodUnit": "d", "boundsDuration": {"value": 2, "code": "wk"}}
    two_weeks = aluminium(authoredOn=TODAY, dosageInstruction=[{"timing": {"repeat": repeat}}])
    assert check_order(record(conditions=DIALYSIS), draft(two_weeks)) == []


def test_an_active_order_started_more_than_28_days_ago_has_run_past_4_weeks():
    order = aluminium("MedicationRequest/a1", "active", authoredOn=_day(40))
    f = only(check_order(record(conditions=[CALCIPHYLAXIS]), active(order)))
    assert f.reasons == ("aluminium_has_run_beyond",)
    assert next(x for x in f.facts if x.key == "order_taken_so_far").params == {"days": "40", "date": _day(40)}
    # Not on dialysis and no high phosphate: no binder is offered, the order is only stopped.
    assert f.substitutions == () and f.stop_only


def test_a_new_draft_continuing_an_earlier_active_course_counts_the_whole_course():
    earlier = aluminium("MedicationRequest/a1", "active", authoredOn=_day(35))
    renewal = aluminium(authoredOn=TODAY, dispenseRequest=supply(7))
    f = only(check_order(record(conditions=DIALYSIS, medications=[earlier]), draft(renewal)))
    assert f.reasons == ("aluminium_has_run_beyond",)
    assert any(x.key == "order_earlier" and x.params["date"] == _day(35) for x in f.facts)


def test_no_end_date_gives_an_info_card_saying_what_was_read():
    f = only(check_order(record(conditions=DIALYSIS), draft(aluminium(authoredOn=TODAY))))
    assert (f.rule_id, f.indicator, f.substitutions) == ("C5-aluminium-binder-no-end-date", "info", ())
    assert "dispenseRequest" in next(x for x in f.facts if x.key == "order_no_end").params["detail"]


def test_out_of_scope_is_silent_whatever_the_duration():
    order = aluminium(authoredOn=TODAY, dispenseRequest=supply(90))
    assert check_order(record(conditions=[cond("gerd")]), draft(order)) == []


# --- reading the dates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "days"),
    [
        ({"value": 14, "code": "d"}, 14),
        ({"value": 2, "unit": "weeks"}, 14),
        ({"value": 3, "code": "mo"}, 91.3125),
        ({"value": 1, "unit": "a"}, 365.25),
        ({"value": "x", "code": "d"}, None),
        ({"value": 5, "code": "furlong"}, None),
    ],
)
def test_durations_in_days(quantity, days):
    assert duration_days(quantity) == days


def test_every_end_is_read_and_the_latest_counts():
    raw = {
        "authoredOn": _day(2),
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d", "count": 30}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "capsule"}}],
            }
        ],
        "dispenseRequest": {
            "validityPeriod": {"start": _day(2), "end": (NOW + timedelta(days=100)).date().isoformat()},
            "numberOfRepeatsAllowed": 1,
            "quantity": {"value": 90, "unit": "capsule"},
        },
    }
    span = order_span(aluminium(**raw), NOW, is_draft=True)
    assert span.start is not None and span.start.field == "dispenseRequest.validityPeriod.start"
    by_field = {e.field: round(e.days) for e in span.ends}
    assert by_field == {
        "dosageInstruction[0].timing.repeat.count": 10,  # 30 doses at 3 a day
        "dispenseRequest.quantity": 60,  # 90 capsules at 3 a day, twice (1 repeat)
        "dispenseRequest.validityPeriod.end": 102,
    }
    assert span.latest_end is not None and span.latest_end.field == "dispenseRequest.validityPeriod.end"


def test_a_draft_without_dates_starts_today_and_dstu2_bounds_are_read():
    repeat = {"frequency": 1, "period": 1, "periodUnits": "d", "boundsQuantity": {"value": 6, "code": "wk"}}
    span = order_span(aluminium(dosageInstruction=[{"timing": {"repeat": repeat}}]), NOW, is_draft=True)
    assert span.start_assumed and span.start is not None and span.start.when == NOW
    assert [round(e.days) for e in span.ends] == [42]
    assert order_span(aluminium("MedicationRequest/a1", "active"), NOW, is_draft=False).start is None


def test_an_aluminium_antacid_taken_as_needed_is_not_replaced_by_a_phosphate_binder():
    # F22: antacids (as needed, for heartburn, or with magnesium) are not phosphate binders.
    from cds_service.checks.c5_aluminium_binders import is_antacid

    def aluminium(text: str, name: str = "aluminium hydroxide 500 mg") -> object:
        raw = {
            "resourceType": "MedicationRequest",
            "id": "a1",
            "status": "active",
            "dosageInstruction": [{"text": text}],
        }
        return med("aluminium_binder", name=name, rid="MedicationRequest/a1", status="active", raw=raw)

    assert is_antacid(aluminium("10 mL PRN for heartburn"))
    assert is_antacid(aluminium("1 tablet when required for indigestion"))
    assert is_antacid(aluminium("1 tablet with meals", name="Maalox (aluminium/magnesium hydroxide)"))
    assert not is_antacid(aluminium("1 capsule three times daily with meals"))
