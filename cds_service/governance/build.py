"""Build ``GovernanceData`` from the served-card log and the feedback, as plain records.

The store reads its rows into ``ServedCardRecord`` and ``FeedbackRecord`` (no patient id in
either) and hands them here, so the counting rules live in one place and are tested without a
database:

* a card is counted in the ISO week it was served, with the outcome of its latest feedback
  (``latest_feedback``: by ``outcome_timestamp``, the later-stored item on a tie; a resent or
  corrected decision replaces the earlier one);
* the override reason and the suggestions taken come from that same latest feedback, so the
  reasons of a rule add up to its overridden cards;
* feedback on a card the log does not hold, or that the log holds as served to another caller or
  by another service (``FeedbackRecord.attributed`` False), goes to ``UnservedFeedback``, never to
  a rule;
* a clinician's free-text comment is never carried over: only whether there was one; an override
  reason is shown by the service's own wording of its code (``reason_label``), never by text the
  EHR sent.

This is the one counting rule: the committee's page and ``feedback-report`` (the store's
``report``, which builds its lines from ``build_governance_data``) both count with it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from cds_service.governance.model import (
    ActiveSnooze,
    GovernanceData,
    Indicator,
    IsoWeek,
    RuleIndicatorStats,
    UnservedFeedback,
    WeekCounts,
)

# The labels both reports use for overrides without a coded reason the service can vouch for.
COMMENT_ONLY = "Free-text comment only"
NO_REASON = "No reason given"
NOT_OFFERED = "A reason the card did not offer"
UNVERIFIED = "A coded reason on a card not served to the sender"
# A suggestion id the served-card log has no label for.
UNKNOWN_SUGGESTION = "(suggestion not in served log)"

_Key: TypeAlias = tuple[str, Indicator]


@dataclass(frozen=True)
class ServedCardRecord:
    """One card served: ``suggestion_labels`` maps each of its suggestions' uuid to its label."""

    card_uuid: str
    rule_id: str
    indicator: Indicator
    served_at: datetime
    suggestion_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedbackRecord:
    """One stored feedback item. ``override_reason``: the label of its coded reason
    (``reason_label``). ``attributed``: False when the card is not in the served-card log as
    served to the same caller by the same service (the item then counts for no rule)."""

    card_uuid: str
    outcome: Literal["accepted", "overridden"]
    outcome_timestamp: datetime
    override_reason: str | None = None
    has_comment: bool = False
    accepted_suggestions: tuple[str, ...] = ()
    attributed: bool = True


def reason_label(code: str | None, check: str = "") -> str | None:
    """How both reports name an override's coded reason: the service's own display of a code it
    offers (never the display the EHR sent back); ``None`` when no coded reason was given.

    ``check`` is what the store found when the item arrived: ``recorded`` (a reason the card
    offered), ``not-offered``, ``card-unknown``, or ``""`` (no coded reason, or stored before the
    store checked: then the code is named if it is one of the service's, else ``NOT_OFFERED``)."""
    from cds_service.knowledge.content import content

    if check == "not-offered":
        return NOT_OFFERED
    if check == "card-unknown":
        return UNVERIFIED
    if not code:
        return None
    display = content().override_codes.get(code)
    return display if display is not None else NOT_OFFERED


def latest_feedback(feedback: Iterable[FeedbackRecord]) -> dict[tuple[str, bool], FeedbackRecord]:
    """The decision that counts for each card: its latest feedback item by ``outcome_timestamp``
    (on a tie, the one given later in ``feedback``, i.e. stored later). Attributed and unattributed
    items of one card uuid are kept apart (key: card uuid, attributed)."""
    latest: dict[tuple[str, bool], FeedbackRecord] = {}
    for item in feedback:
        key = (item.card_uuid, item.attributed)
        current = latest.get(key)
        if current is None or item.outcome_timestamp >= current.outcome_timestamp:
            latest[key] = item
    return latest


def build_governance_data(
    served: Iterable[ServedCardRecord],
    feedback: Iterable[FeedbackRecord],
    *,
    snoozes: Iterable[ActiveSnooze] = (),
    snoozing_enabled: bool = True,
    rule_titles: Mapping[str, str] | None = None,
    last_week: IsoWeek | None = None,
) -> GovernanceData:
    cards = {card.card_uuid: card for card in served}
    latest = latest_feedback(feedback)

    weekly: dict[_Key, dict[IsoWeek, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    reasons: dict[_Key, Counter[str]] = defaultdict(Counter)
    taken: dict[_Key, Counter[str]] = defaultdict(Counter)
    for card in cards.values():
        key = (card.rule_id, card.indicator)
        counts = weekly[key][IsoWeek.of(card.served_at)]
        counts[0] += 1
        decision = latest.get((card.card_uuid, True))
        if decision is None:
            continue
        if decision.outcome == "accepted":
            counts[1] += 1
            for suggestion in dict.fromkeys(decision.accepted_suggestions):
                taken[key][card.suggestion_labels.get(suggestion, UNKNOWN_SUGGESTION)] += 1
        else:
            counts[2] += 1
            reasons[key][_reason_label(decision)] += 1

    unserved = [item for (uuid, attributed), item in latest.items() if not attributed or uuid not in cards]
    unserved_reasons = Counter(_reason_label(i) for i in unserved if i.outcome == "overridden")
    rules = tuple(
        RuleIndicatorStats(
            rule_id=rule_id,
            indicator=indicator,
            weeks=tuple(WeekCounts(week, *counts) for week, counts in sorted(weeks.items())),
            override_reasons=dict(reasons[(rule_id, indicator)]),
            suggestions_taken=dict(taken[(rule_id, indicator)]),
        )
        for (rule_id, indicator), weeks in sorted(weekly.items())
    )
    return GovernanceData(
        rules=rules,
        snoozes=tuple(snoozes),
        unserved_feedback=UnservedFeedback(
            accepted=sum(1 for i in unserved if i.outcome == "accepted"),
            overridden=sum(1 for i in unserved if i.outcome == "overridden"),
            override_reasons=dict(unserved_reasons),
        ),
        snoozing_enabled=snoozing_enabled,
        last_week=last_week,
        rule_titles=dict(rule_titles or {}),
    )


def _reason_label(item: FeedbackRecord) -> str:
    return item.override_reason or (COMMENT_ONLY if item.has_comment else NO_REASON)


def governance_data_from_records(
    served: Iterable[tuple[str, str, str, datetime, Mapping[str, str]]],
    feedback: Iterable[tuple[str, str, datetime, str | None, bool, tuple[str, ...], bool]],
    snoozes: Iterable[tuple[str, str, int, datetime, datetime]],
    *,
    snoozing_enabled: bool,
    rule_titles: Mapping[str, str] | None = None,
) -> GovernanceData:
    """The report's data from the feedback store's plain rows (``FeedbackStore.governance_records``)."""
    return build_governance_data(
        [
            ServedCardRecord(uuid, rule, indicator, at, labels)  # type: ignore[arg-type]
            for uuid, rule, indicator, at, labels in served
        ],
        [
            FeedbackRecord(uuid, outcome, at, reason, comment, taken, attributed)  # type: ignore[arg-type]
            for uuid, outcome, at, reason, comment, taken, attributed in feedback
            if outcome in ("accepted", "overridden")
        ],
        snoozes=[
            ActiveSnooze(rule, drug or "(chart review)", count, first, last)
            for rule, drug, count, first, last in snoozes
        ],
        snoozing_enabled=snoozing_enabled,
        rule_titles=rule_titles,
    )


def governance_page(records: Any, *, snoozing: bool, now: datetime | None = None) -> str:
    """The committee's page from the feedback store's ``governance_records`` (rule titles from the
    card content). Used by ``feedback-report --html`` and the service's ``/governance/report``."""
    from cds_service.governance.report import render_report
    from cds_service.knowledge.content import content, fill

    def title(text: str) -> str:
        # Thresholds filled in; a rule's per-card words named generically.
        try:
            return fill(text, {"drug_class": "monitored drug", "drug": "the drug"})
        except (KeyError, ValueError):
            return text

    titles = {rule_id: title(rule.rule) for rule_id, rule in content().rules.items()}
    data = governance_data_from_records(
        records.served, records.feedback, records.snoozes, snoozing_enabled=snoozing, rule_titles=titles
    )
    return render_report(data, generated_at=now or datetime.now(UTC))
