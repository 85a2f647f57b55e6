"""What a check returns: a Finding that carries its own evidence, so the card explains itself.

A Finding holds structured facts only (rule id, the order, the conditions and lab values used,
what was checked before offering a substitute, what could not be checked). All wording lives in
``cards/`` and is applied by ``cds_service.render.cards``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from cds_service.patient.model import ConditionFact, MedicationOrder, OrderUnderReview

Indicator = Literal["info", "warning", "critical"]
LabMethod = Literal["measured", "corrected", "reported-corrected", "computed"]


@dataclass(frozen=True)
class LabValue:
    """One laboratory value as a card must show it: value, unit, date, how obtained, stale or not."""

    analyte: str  # "calcium", "corrected_calcium", "phosphate", "pth", "ca_x_p", "albumin", ...
    value: float
    unit: str
    effective: datetime | None
    method: LabMethod
    stale: bool
    sources: tuple[str, ...] = ()  # "Observation/<id>" it was read or computed from
    original: str | None = None  # the value as reported, when it was converted ("2.6 mmol/L")
    inputs: tuple[LabValue, ...] = ()  # what a corrected or computed value was derived from
    comparator: str | None = None  # "<", "<=", ">=", ">" as the lab reported it ("<3.0")
    previous: LabValue | None = None  # the result before this one, when a card shows the trend


@dataclass(frozen=True)
class SafetyCheck:
    """One thing verified before a substitute was offered (or the reason it was withheld)."""

    key: str  # e.g. "no_prosthetic_valve", "pth_above_target"; worded in cards/common.toml
    # True: met; False: not met; None: not checked (its data unavailable, partial or not recent),
    # which withholds the substitute like a check that failed, and is never shown as met.
    passed: bool | None
    detail: str = ""  # the data behind the result, e.g. "PTH 320 pg/mL on 2026-11-02"


@dataclass(frozen=True)
class Gap:
    """Something the check could not verify, and why (cards list these under 'not checked')."""

    key: str  # e.g. "prefetch_unavailable", "lab_missing", "lab_stale", "calcification_not_coded"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fact:
    """A piece of data a card lists that is not a lab value or a condition (the dates an order
    runs between, the dose it gives): worded in cards/common.toml ``[facts.<key>]``."""

    key: str  # e.g. "order_start", "order_end"
    params: dict[str, str] = field(default_factory=dict)  # e.g. {"date": "2026-11-21", "field": "authoredOn"}


@dataclass(frozen=True)
class Substitution:
    """A substitute order to offer: ``key`` names an entry of cards/substitutes.toml."""

    key: str
    recommended: bool = False
    dose_basis: str = ""  # what chose the dose ("age 84: 80 or older"), written into the order
    # The Condition resources the order names as its reason (reasonReference), about this patient.
    indications: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snooze:
    """An earlier override that snoozes a card for this patient (see checks/snooze.py)."""

    rule_id: str
    subject: str  # the drug ingredient the card was about ("" for a chart-level card)
    indicator: str  # the indicator of the card that was overridden
    until: datetime
    # The override reason's display in the service's own words (cards/common.toml), never the text
    # an EHR sent back with its feedback.
    reason: str
    # The override-reason code the card offered and the clinician picked (render words it from the
    # card content); "" only where a Snooze is made without one (tests of the pure logic).
    reason_code: str = ""


@dataclass(frozen=True)
class Finding:
    rule_id: str  # stable, e.g. "C1-calcium-binder-calciphylaxis" (feedback is counted per rule)
    indicator: Indicator
    review: OrderUnderReview | None  # None for chart-level findings (mineral status)
    conditions: tuple[ConditionFact, ...] = ()  # the conditions that put the patient in scope
    labs: tuple[LabValue, ...] = ()  # lab values the rule used or the card should show
    reasons: tuple[str, ...] = ()  # what fired, e.g. ("corrected_calcium_high",)
    # Chart reviews: (analyte, "low" | "high") for each recent value outside its target.
    positions: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()  # extra statements to make, e.g. ("parathyroidectomy_conflict",)
    facts: tuple[Fact, ...] = ()  # other data the rule used (order dates, dose), listed with the labs
    # Substitute orders to offer. On a chart review (review None) they are offered to create
    # only: there is no order to replace (sodium thiosulfate in the mineral review).
    substitutions: tuple[Substitution, ...] = ()
    stop_only: bool = False  # no safe substitute, but removing/stopping the order is advised
    # Withhold rather than stop: the suggestion puts an active order on hold (a draft is removed),
    # to be restarted later (a calcimimetic while calcium is too low).
    withhold: bool = False
    safety_checks: tuple[SafetyCheck, ...] = ()
    gaps: tuple[Gap, ...] = ()
    # Order hooks: an earlier override of this card, for this patient and drug, still holds.
    earlier_override: Snooze | None = None
    # The branch of the rule this finding is (cards/rules: [rules."<id>".variants.<name>]), when
    # it reads differently from the rule's main text: "" for the main text.
    variant: str = ""

    @property
    def order(self) -> MedicationOrder | None:
        return self.review.order if self.review else None

    @property
    def matched_by_text(self) -> bool:
        return self.order is not None and self.order.matched_by == "text"
