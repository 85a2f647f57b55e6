"""What the governance report shows, as plain data: counts per rule, indicator and ISO week.

Nothing here identifies a patient. The model holds counts, override-reason and suggestion labels
(the coded reason's display text, never a clinician's free-text comment), drug ingredients and
snooze end dates: a report built from it can be handed to a committee as it is.

Counting conventions (the report's footer states them for its readers):

* a card is counted once, in the ISO week (Monday to Sunday, UTC) it was **served**, whatever
  week its feedback arrived in; so the outcomes of a week always add up to the cards served in it;
* ``accepted`` / ``overridden``: cards whose (latest) feedback had that outcome;
* ``ignored``: cards served with no feedback at all (``served - accepted - overridden``);
* rates are over the cards served.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

Indicator = Literal["info", "warning", "critical"]

# Most urgent first: the order rows and legends use.
INDICATORS: tuple[Indicator, ...] = ("critical", "warning", "info")


@dataclass(frozen=True, order=True)
class IsoWeek:
    """An ISO 8601 week, e.g. ``IsoWeek(2026, 47)``, shown as ``2026-W47``."""

    year: int
    week: int

    def __post_init__(self) -> None:
        # date.fromisocalendar rejects week 53 of a 52-week year, and anything out of range.
        date.fromisocalendar(self.year, self.week, 1)

    @classmethod
    def of(cls, moment: date | datetime) -> IsoWeek:
        """The week a date or time falls in; an aware time is taken in UTC, a naive one as UTC."""
        if isinstance(moment, datetime):
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC)
            moment = moment.date()
        year, week, _ = moment.isocalendar()
        return cls(year, week)

    @property
    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.week, 1)

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    def next(self) -> IsoWeek:
        return IsoWeek.of(self.monday + timedelta(days=7))

    def __str__(self) -> str:
        return f"{self.year}-W{self.week:02d}"


def week_range(first: IsoWeek, last: IsoWeek) -> list[IsoWeek]:
    """Every week from ``first`` to ``last``, both included (empty when ``last`` is earlier)."""
    weeks: list[IsoWeek] = []
    week = first
    while week <= last:
        weeks.append(week)
        week = week.next()
    return weeks


@dataclass(frozen=True)
class Outcomes:
    """Cards served and what became of them."""

    served: int = 0
    accepted: int = 0
    overridden: int = 0

    @property
    def ignored(self) -> int:
        """Cards served with no feedback (never below zero)."""
        return max(self.served - self.accepted - self.overridden, 0)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted cards over cards served; ``None`` when none were served."""
        return self.accepted / self.served if self.served else None

    @property
    def override_rate(self) -> float | None:
        """Overridden cards over cards served; ``None`` when none were served."""
        return self.overridden / self.served if self.served else None

    def __add__(self, other: Outcomes) -> Outcomes:
        return Outcomes(
            self.served + other.served,
            self.accepted + other.accepted,
            self.overridden + other.overridden,
        )


def total(outcomes: Iterable[Outcomes]) -> Outcomes:
    result = Outcomes()
    for item in outcomes:
        result = result + item
    return result


@dataclass(frozen=True)
class WeekCounts:
    """The cards of one rule and indicator served in one week, by outcome."""

    week: IsoWeek
    served: int = 0
    accepted: int = 0
    overridden: int = 0

    @property
    def outcomes(self) -> Outcomes:
        return Outcomes(self.served, self.accepted, self.overridden)


@dataclass(frozen=True)
class RuleIndicatorStats:
    """One rule at one indicator: its weeks, the override reasons given and suggestions taken.

    ``override_reasons`` maps a reason's label (the coded reason's display, else its code, else
    "free-text comment only" or "no reason given") to the overridden cards that gave it.
    ``suggestions_taken`` maps a suggestion's label (e.g. the substitute it orders) to the
    accepted cards that took it; a card accepting two suggestions counts for both.
    """

    rule_id: str
    indicator: Indicator
    weeks: tuple[WeekCounts, ...] = ()
    override_reasons: Mapping[str, int] = field(default_factory=dict)
    suggestions_taken: Mapping[str, int] = field(default_factory=dict)

    @property
    def outcomes(self) -> Outcomes:
        return total(w.outcomes for w in self.weeks)


@dataclass(frozen=True)
class ActiveSnooze:
    """Suppressions in force for one rule and drug ingredient, aggregated over patients."""

    rule_id: str
    ingredient: str
    count: int
    earliest_end: datetime
    latest_end: datetime


@dataclass(frozen=True)
class UnservedFeedback:
    """Feedback on cards the served-card log has no record of (never served by this service,
    served by another instance, or before the log began): attributed to no rule."""

    accepted: int = 0
    overridden: int = 0
    override_reasons: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.accepted + self.overridden


@dataclass(frozen=True)
class GovernanceData:
    """Everything the governance report shows.

    ``rules``: one entry per rule and indicator (a rule may fire at several indicators).
    ``first_week`` / ``last_week``: stretch the weekly charts' time axis to cover these weeks
    even where no card was served (e.g. up to the current week); the axis always covers the data.
    ``rule_titles``: an optional human-readable title per rule id.
    ``snoozing_enabled``: whether this site turns overrides into snoozes at all.
    """

    rules: tuple[RuleIndicatorStats, ...] = ()
    snoozes: tuple[ActiveSnooze, ...] = ()
    unserved_feedback: UnservedFeedback = field(default_factory=UnservedFeedback)
    snoozing_enabled: bool = True
    first_week: IsoWeek | None = None
    last_week: IsoWeek | None = None
    rule_titles: Mapping[str, str] = field(default_factory=dict)

    def rule_ids(self) -> list[str]:
        return sorted({r.rule_id for r in self.rules})

    def for_rule(self, rule_id: str) -> list[RuleIndicatorStats]:
        """The rule's entries, most urgent indicator first."""
        return sorted((r for r in self.rules if r.rule_id == rule_id), key=lambda r: INDICATORS.index(r.indicator))

    def weeks(self) -> list[IsoWeek]:
        """The time axis: every week from the first to the last with data (or as stretched)."""
        seen = [w.week for r in self.rules for w in r.weeks]
        bounds = [*seen, *(w for w in (self.first_week, self.last_week) if w is not None)]
        if not bounds:
            return []
        return week_range(min(bounds), max(bounds))

    def outcomes(self) -> Outcomes:
        return total(r.outcomes for r in self.rules)
