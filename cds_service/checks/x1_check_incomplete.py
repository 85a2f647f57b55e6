"""X1: a monitored drug whose check could not be completed because the conditions are unknown.

Order hooks treat the conditions as optional. When they could not be read (or only in part), the
patient's calciphylaxis status is unknown: findings that still fire (e.g. dialysis known from
eGFR) say so, and a monitored drug with no finding gets one info finding saying the check could
not be completed: never silence, never an error.
"""

from __future__ import annotations

from dataclasses import replace

from cds_service.checks.findings import Finding, Gap
from cds_service.checks.scope import unavailable_gaps
from cds_service.patient import sources
from cds_service.patient.model import KIDNEY_FAILURE_EGFR, OrderUnderReview, PatientRecord

RULE_ID = "X1-calciphylaxis-check-incomplete"


def conditions_gap(record: PatientRecord) -> Gap | None:
    """Why the patient's calciphylaxis status may be unknown: conditions missing, or read in part."""
    if sources.CONDITIONS in record.unavailable:
        return Gap("conditions_unavailable", {"why": record.unavailable[sources.CONDITIONS]})
    if sources.CONDITIONS in record.incomplete:
        return Gap("prefetch_incomplete", {"key": sources.CONDITIONS, "why": record.incomplete[sources.CONDITIONS]})
    return None


# The drug classes whose card matters when calciphylaxis cannot be ruled out (the triggers the
# service exists for); iron, aluminium and calcimimetic orders get no X1 card (clinical review F23).
TRIGGER_CLASSES = frozenset({"calcium_binder", "vka", "active_vitamin_d"})


def _could_be_in_scope(record: PatientRecord) -> bool:
    """Kidney failure is possible: no eGFR, or a latest eGFR below the kidney-failure cut-off. A
    patient with working kidneys is rarely at risk of calciphylaxis: an unread conditions list
    alone does not earn them a card."""
    egfr = record.latest("egfr")
    return egfr is None or (egfr.value < KIDNEY_FAILURE_EGFR and egfr.comparator not in (">", ">="))


def complete(record: PatientRecord, review: OrderUnderReview, findings: list[Finding]) -> list[Finding]:
    """The findings of a monitored order, with the unknown calciphylaxis status said on each, or
    one X1 info finding when no rule fired, for a trigger drug in a patient whose kidneys may
    have failed."""
    gap = conditions_gap(record)
    if gap is None:
        return findings
    if findings:
        return [replace(f, gaps=(gap,) + f.gaps) for f in findings]
    if not review.order.drug_classes & TRIGGER_CLASSES or not _could_be_in_scope(record):
        return []
    return [
        Finding(
            rule_id=RULE_ID,
            indicator="info",
            review=review,
            gaps=unavailable_gaps(record, (sources.CONDITIONS, sources.EGFR)),
        )
    ]
