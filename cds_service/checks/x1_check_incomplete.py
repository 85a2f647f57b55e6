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
from cds_service.patient.model import OrderUnderReview, PatientRecord

RULE_ID = "X1-calciphylaxis-check-incomplete"


def conditions_gap(record: PatientRecord) -> Gap | None:
    """Why the patient's calciphylaxis status may be unknown: conditions missing, or read in part."""
    if sources.CONDITIONS in record.unavailable:
        return Gap("conditions_unavailable", {"why": record.unavailable[sources.CONDITIONS]})
    if sources.CONDITIONS in record.incomplete:
        return Gap("prefetch_incomplete", {"key": sources.CONDITIONS, "why": record.incomplete[sources.CONDITIONS]})
    return None


def complete(record: PatientRecord, review: OrderUnderReview, findings: list[Finding]) -> list[Finding]:
    """The findings of a monitored order, with the unknown calciphylaxis status said on each, or
    one X1 info finding when no rule fired."""
    gap = conditions_gap(record)
    if gap is None:
        return findings
    if findings:
        return [replace(f, gaps=(gap,) + f.gaps) for f in findings]
    return [
        Finding(
            rule_id=RULE_ID,
            indicator="info",
            review=review,
            gaps=unavailable_gaps(record, (sources.CONDITIONS, sources.EGFR)),
        )
    ]
