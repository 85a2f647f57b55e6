"""The clinical checks: pure functions from a PatientRecord (and an order under review) to Findings.

No Flask, no JSON, no wording: a Finding carries rule id, evidence and what could not be
checked; ``cds_service.cards_render`` turns it into a card using the text in ``cards/``.

* ``check_order(record, review)``: C1 calcium-based binders, C2 vitamin K antagonists, C3 active
  vitamin D sterols for one medication order (one finding per problem per order);
* ``run_checks(record, orders)``: ``check_order`` over every order under review;
* ``review_chart(record)``: chart-level findings for patient-view (M1 mineral status).
"""

from __future__ import annotations

from dataclasses import replace

from cds_service.checks.active_vitamin_d import check_active_vitamin_d
from cds_service.checks.calcium_binders import check_calcium_binder
from cds_service.checks.findings import Finding, Gap, LabValue, SafetyCheck, Substitution
from cds_service.checks.labs import LabFacts, lab_facts
from cds_service.checks.mineral_status import mineral_status
from cds_service.checks.scope import unavailable_gaps
from cds_service.checks.vitamin_k_antagonists import check_vka
from cds_service.prefetch import CONDITIONS_KEY
from cds_service.record import OrderUnderReview, PatientRecord

__all__ = [
    "Finding", "Gap", "LabValue", "SafetyCheck", "Substitution", "LabFacts", "lab_facts",
    "MONITORED_CLASSES", "ORDER_CHECKS", "RULE_INCOMPLETE",
    "check_order", "run_checks", "review_chart",
    "check_calcium_binder", "check_vka", "check_active_vitamin_d", "mineral_status",
]

# Drug classes the service monitors; an order of any other class never produces a card.
MONITORED_CLASSES = frozenset({"calcium_binder", "vka", "active_vitamin_d"})
ORDER_CHECKS = (check_calcium_binder, check_vka, check_active_vitamin_d)
RULE_INCOMPLETE = "X1-calciphylaxis-check-incomplete"


def check_order(record: PatientRecord, review: OrderUnderReview, labs: LabFacts | None = None) -> list[Finding]:
    """Every finding for one order. When the conditions could not be read (order hooks treat
    them as optional), the patient's calciphylaxis status is unknown: findings that still fire
    (e.g. dialysis known from eGFR) say so, and a monitored drug with no finding gets one info
    finding saying the check could not be completed: never silence, never an error."""
    labs = labs or lab_facts(record)
    findings = [finding for check in ORDER_CHECKS for finding in check(record, review, labs)]
    gap = _conditions_gap(record)
    if gap is None or not (review.order.drug_classes & MONITORED_CLASSES):
        return findings
    if findings:
        return [replace(f, gaps=(gap,) + f.gaps) for f in findings]
    return [
        Finding(
            rule_id=RULE_INCOMPLETE,
            indicator="info",
            review=review,
            gaps=unavailable_gaps(record, (CONDITIONS_KEY, "egfr")),
        )
    ]


def _conditions_gap(record: PatientRecord) -> Gap | None:
    """Why the patient's calciphylaxis status may be unknown: conditions missing, or read in part."""
    if CONDITIONS_KEY in record.unavailable:
        return Gap("conditions_unavailable", {"why": record.unavailable[CONDITIONS_KEY]})
    if CONDITIONS_KEY in record.incomplete:
        return Gap("prefetch_incomplete", {"key": CONDITIONS_KEY, "why": record.incomplete[CONDITIONS_KEY]})
    return None


def run_checks(
    record: PatientRecord,
    orders: tuple[OrderUnderReview, ...] | list[OrderUnderReview],
    labs: LabFacts | None = None,
) -> list[Finding]:
    labs = labs or lab_facts(record)
    return [finding for review in orders for finding in check_order(record, review, labs)]


def review_chart(record: PatientRecord, labs: LabFacts | None = None) -> list[Finding]:
    return mineral_status(record, labs)
