"""The governance report (cds_service/governance): counting rules, the page, its charts, no patient data."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime

import pytest

from cds_service.governance import (
    ActiveSnooze,
    FeedbackRecord,
    GovernanceData,
    IsoWeek,
    Outcomes,
    RuleIndicatorStats,
    ServedCardRecord,
    WeekCounts,
    build_governance_data,
    render_report,
)
from cds_service.governance.build import COMMENT_ONLY, NO_REASON, UNKNOWN_SUGGESTION
from cds_service.governance.charts import integer_ticks
from cds_service.governance.model import week_range
from cds_service.pages import CSP
from tests.governance_support import GENERATED_AT, PATIENT_IDS, PROFILES, realistic_data, realistic_records
from tests.html_support import Node, event_handler_attributes, parse


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


# --- ISO weeks ------------------------------------------------------------------------------


def test_iso_weeks_cross_the_year_boundary():
    # 2026 has 53 ISO weeks (1 January 2026 is a Thursday); 1 January 2027 falls in 2026-W53.
    assert str(IsoWeek.of(date(2027, 1, 1))) == "2026-W53"
    assert [str(w) for w in week_range(IsoWeek(2026, 52), IsoWeek(2027, 2))] == [
        "2026-W52",
        "2026-W53",
        "2027-W01",
        "2027-W02",
    ]
    assert IsoWeek(2026, 47).monday == date(2026, 11, 16) and IsoWeek(2026, 47).sunday == date(2026, 11, 22)
    with pytest.raises(ValueError):
        IsoWeek(2027, 53)


def test_an_aware_time_is_placed_in_its_utc_week():
    from datetime import timedelta, timezone

    sunday_late_in_new_york = datetime(2026, 11, 22, 21, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert str(IsoWeek.of(sunday_late_in_new_york)) == "2026-W48"  # Monday 02:00 UTC


# --- counting -------------------------------------------------------------------------------


def test_cards_count_in_the_week_served_with_their_latest_feedback():
    served = [
        ServedCardRecord("a", "C1", "critical", at("2026-11-20"), {"s1": "Replace with sevelamer"}),
        ServedCardRecord("b", "C1", "critical", at("2026-11-21"), {"s2": "Replace with sevelamer"}),
        ServedCardRecord("c", "C1", "critical", at("2026-11-22")),
        ServedCardRecord("d", "C1", "warning", at("2026-11-23")),
        ServedCardRecord("e", "C1", "critical", at("2026-11-23"), {"s5": "Replace with lanthanum"}),
    ]
    feedback = [
        # a: accepted the week after it was served; still counts in the week it was served.
        FeedbackRecord("a", "accepted", at("2026-11-24"), accepted_suggestions=("s1",)),
        # b: overridden, then accepted later: the later decision counts.
        FeedbackRecord("b", "overridden", at("2026-11-21", 11), override_reason="Benefit outweighs the risk"),
        FeedbackRecord("b", "accepted", at("2026-11-21", 12), accepted_suggestions=("s2",)),
        # d: overridden with a comment only (the comment itself never reaches the model).
        FeedbackRecord("d", "overridden", at("2026-11-23", 12), has_comment=True),
        # e: overridden without any reason; an accepted suggestion id the log does not know.
        FeedbackRecord("e", "overridden", at("2026-11-24")),
        # feedback on cards never served.
        FeedbackRecord("zz", "overridden", at("2026-11-24"), override_reason="Benefit outweighs the risk"),
        FeedbackRecord("yy", "accepted", at("2026-11-24"), accepted_suggestions=("nope",)),
    ]
    data = build_governance_data(served, feedback)
    critical, warning = data.for_rule("C1")
    assert critical.indicator == "critical" and warning.indicator == "warning"
    assert critical.weeks == (
        WeekCounts(IsoWeek(2026, 47), served=3, accepted=2, overridden=0),
        WeekCounts(IsoWeek(2026, 48), served=1, accepted=0, overridden=1),
    )
    assert critical.outcomes == Outcomes(served=4, accepted=2, overridden=1)
    assert critical.outcomes.ignored == 1  # card c: no feedback
    assert critical.outcomes.acceptance_rate == 0.5 and critical.outcomes.override_rate == 0.25
    assert critical.override_reasons == {NO_REASON: 1}
    assert critical.suggestions_taken == {"Replace with sevelamer": 2}
    assert warning.outcomes == Outcomes(served=1, accepted=0, overridden=1)
    assert warning.override_reasons == {COMMENT_ONLY: 1}
    assert data.unserved_feedback.accepted == 1 and data.unserved_feedback.overridden == 1
    assert data.unserved_feedback.override_reasons == {"Benefit outweighs the risk": 1}


def test_a_suggestion_the_log_has_no_label_for_is_named_as_such():
    served = [ServedCardRecord("a", "C2", "info", at("2026-11-20"), {"s1": "Replace with apixaban"})]
    feedback = [FeedbackRecord("a", "accepted", at("2026-11-20", 11), accepted_suggestions=("other", "s1", "s1"))]
    (stats,) = build_governance_data(served, feedback).rules
    assert stats.suggestions_taken == {"Replace with apixaban": 1, UNKNOWN_SUGGESTION: 1}


def test_rates_are_none_without_cards_served():
    assert Outcomes().acceptance_rate is None and Outcomes().override_rate is None
    assert Outcomes(served=3, accepted=1, overridden=5).ignored == 0


@pytest.mark.parametrize(
    ("top", "ticks"),
    [(0, [0, 1]), (1, [0, 1]), (6, [0, 1, 2, 3, 4, 5, 6]), (7, [0, 2, 4, 6, 8]), (14, [0, 5, 10, 15])],
)
def test_chart_axes_have_whole_number_ticks(top, ticks):
    assert integer_ticks(top) == ticks


# --- the page, for a realistic mix ----------------------------------------------------------


@pytest.fixture(scope="module")
def realistic_page() -> str:
    return render_report(realistic_data(), generated_at=GENERATED_AT, site="St Example Renal Unit")


@pytest.fixture(scope="module")
def root(realistic_page) -> Node:
    return parse(realistic_page)


def expected_outcomes() -> dict[str, Outcomes]:
    """Counted here independently of the builder: per rule, each card by its latest feedback."""
    served, feedback = realistic_records()
    latest: dict[str, FeedbackRecord] = {}
    for item in sorted(feedback, key=lambda f: f.outcome_timestamp):
        latest[item.card_uuid] = item
    result: dict[str, Outcomes] = {}
    for card in served:
        outcome = latest[card.card_uuid].outcome if card.card_uuid in latest else None
        result[card.rule_id] = result.get(card.rule_id, Outcomes()) + Outcomes(
            served=1, accepted=int(outcome == "accepted"), overridden=int(outcome == "overridden")
        )
    return result


def summary_row(root: Node, rule_id: str) -> list[str]:
    body = root.find("table", cls="summary").find("tbody", data_rule=rule_id)
    return [cell.text() for cell in body.find_all("tr")[0].find_all("td")]


def test_every_rule_is_on_the_page_with_counts_and_rates_computed_right(root):
    expected = expected_outcomes()
    assert set(expected) == {rule_id for rule_id, *_ in PROFILES}
    for rule_id, outcomes in expected.items():
        cells = summary_row(root, rule_id)
        # indicator, served, accepted, overridden, ignored, acceptance rate, override rate
        assert cells[1:5] == [
            str(outcomes.served),
            str(outcomes.accepted),
            str(outcomes.overridden),
            str(outcomes.served - outcomes.accepted - outcomes.overridden),
        ], rule_id
        assert cells[5] == f"{round(100 * outcomes.accepted / outcomes.served)}%", rule_id
        assert cells[6] == f"{round(100 * outcomes.overridden / outcomes.served)}%", rule_id
        assert root.find("section", cls="rule", data_rule=rule_id)
    served = sum(o.served for o in expected.values())
    totals = [c.text() for c in root.find("tfoot").find_all("td")]
    assert totals[0] == str(served)
    assert totals[4] == f"{round(100 * sum(o.accepted for o in expected.values()) / served)}%"


def test_each_rule_has_a_weekly_chart_with_one_series_per_outcome(root, realistic_page):
    data = realistic_data()
    weeks = [str(w) for w in data.weeks()]
    assert weeks[0] == "2026-W41" and weeks[-1] == "2026-W49"  # stretched to the week generated
    for rule_id in data.rule_ids():
        section = root.find("section", cls="rule", data_rule=rule_id)
        svg = section.find("figure", data_chart="weekly").find("svg")
        assert svg.attrs["role"] == "img" and rule_id in svg.attrs["aria-label"]
        series = {c for n in svg.find_all("g", cls="series") for c in n.classes if re.fullmatch(r"serie-\d+", c)}
        assert series == {"serie-0", "serie-1", "serie-2"}
        legend = [t.text() for t in svg.find("g", cls="legends").find_all("text")]
        assert legend == ["accepted", "overridden", "ignored"]
        bars = svg.find("g", cls="plot").find_all("g", cls="bar")
        assert len(bars) == 3 * len(weeks)
        # The accessible table beside the chart has one row per week, adding up to the rule's total.
        rows = section.find("details").find("tbody").find_all("tr")
        assert [r.find("th").text() for r in rows] == weeks
        served = sum(int(r.find_all("td")[1].text()) for r in rows)
        assert served == sum(r.outcomes.served for r in data.for_rule(rule_id))
    assert "<script" not in realistic_page and "xlink:href" not in realistic_page


def test_override_reasons_are_drawn_as_bars_and_suggestions_listed(root):
    data = realistic_data()
    section = root.find("section", cls="rule", data_rule="C1-calcium-binder-dialysis")
    (stats,) = data.for_rule("C1-calcium-binder-dialysis")
    svg = section.find("figure", data_chart="reasons").find("svg")
    labels = {t.text() for t in svg.find_all("text")}
    assert set(stats.override_reasons) <= labels
    assert sum(stats.override_reasons.values()) == stats.outcomes.overridden
    table = section.find("table", cls="suggestions-taken")
    assert "Replace with sevelamer carbonate 800 mg three times daily with meals" in table.text()
    # A rule no one overrode says so instead of drawing an empty chart.
    quiet = render_report(
        GovernanceData(rules=(RuleIndicatorStats("R", "info", (WeekCounts(IsoWeek(2026, 1), served=2),)),)),
        generated_at=GENERATED_AT,
        site=None,
    )
    assert "No overrides recorded." in quiet and 'data-chart="reasons"' not in quiet


def test_snoozes_and_feedback_on_unserved_cards_are_reported(root):
    snoozes = root.find("table", cls="snoozes")
    rows = [[c.text() for c in tr.find_all("td")] for tr in snoozes.find("tbody").find_all("tr")]
    assert rows == [
        ["C1-calcium-binder-dialysis", "calcium acetate", "4", "14 Dec 2026", "20 Feb 2027"],
        ["C2-vka-dialysis", "warfarin", "2", "28 Dec 2026", "9 Jan 2027"],
    ]
    unserved = root.find("section", aria_labelledby="unserved-h").text()
    assert "2 feedback items (1 accepted, 1 overridden)" in unserved


def test_the_page_holds_no_patient_data(realistic_page):
    served, feedback = realistic_records()
    identifiers = {c.card_uuid for c in served} | {f.card_uuid for f in feedback}
    identifiers |= {s for c in served for s in c.suggestion_labels}
    for identifier in [*identifiers, *PATIENT_IDS]:
        assert identifier not in realistic_page
    assert "Patient/" not in realistic_page
    assert not re.search(r"\b[0-9a-f]{32,}\b", realistic_page), "no hashes (the log's patient hashes are 64 hex)"
    assert not re.search(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", realistic_page), (
        "no uuids"
    )
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\dT", realistic_page), "no timestamps of single events"


def test_the_page_is_self_contained(root, realistic_page):
    assert root.find("html").attrs["lang"] == "en"
    assert root.find("meta", http_equiv="Content-Security-Policy").attrs["content"] == CSP
    assert root.find_all("script") == [] and root.find_all("link") == [] and root.find_all("img") == []
    assert event_handler_attributes(root) == []
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", realistic_page), "nothing fetched"
    headings = [h.tag for h in root.iter() if h.tag in {"h1", "h2"}]
    assert headings[0] == "h1" and headings.count("h1") == 1
    assert "How to read this report" in root.find("footer").text()
    assert "St Example Renal Unit" in root.find("header").text()
    assert "2026-11-30 09:30 UTC" in root.find("header").text()


def test_text_from_the_data_is_escaped_in_tables_and_charts():
    hostile = '<script>alert("x")</script>'
    data = build_governance_data(
        [ServedCardRecord("a", f"R{hostile}", "warning", at("2026-11-20"), {"s": f"S{hostile}"})],
        [
            FeedbackRecord("a", "overridden", at("2026-11-20", 11), override_reason=f"Reason {hostile}"),
            FeedbackRecord("b", "overridden", at("2026-11-20", 11), override_reason=f"Other {hostile}"),
        ],
        snoozes=[ActiveSnooze(f"R{hostile}", f"I{hostile}", 1, at("2026-12-01"), at("2026-12-01"))],
        rule_titles={f"R{hostile}": f"T{hostile}"},
    )
    page = render_report(data, generated_at=GENERATED_AT, site=f"Site {hostile}")
    root = parse(page)
    assert root.find_all("script") == [] and "<script" not in page
    assert event_handler_attributes(root) == []
    assert f"Reason {hostile}" in {t.text() for t in root.find("figure", data_chart="reasons").find_all("text")}
    assert f"Site {hostile}" in root.find("header").text()


# --- nothing yet ----------------------------------------------------------------------------


def test_a_report_with_no_data_renders():
    page = render_report(GovernanceData(), generated_at=GENERATED_AT, site=None)
    root = parse(page)
    assert root.find("h1").text() == "CDS governance report"
    assert "No cards served and no feedback recorded yet." in page
    assert root.find_all("svg") == []
    assert [c.text() for c in root.find("table", cls="summary").find_all("td")] == ["No cards served yet."]
    assert "No snooze in force." in page
    assert "no cards served yet" in root.find("header").text()


def test_snoozing_turned_off_is_said():
    page = render_report(GovernanceData(snoozing_enabled=False), generated_at=GENERATED_AT, site=None)
    assert "Snoozing is turned off for this site" in page


def test_reasons_add_up_to_the_overrides_in_the_realistic_mix():
    data = realistic_data()
    for stats in data.rules:
        assert sum(stats.override_reasons.values()) == stats.outcomes.overridden
        assert sum(Counter(stats.suggestions_taken).values()) >= stats.outcomes.accepted
