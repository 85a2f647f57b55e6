"""Who is in scope, and what a check could not verify (missing, stale or unreadable data)."""

from __future__ import annotations

from datetime import timedelta

from cds_service.checks.findings import Finding, Gap, LabValue
from cds_service.checks.labs import LabFacts, below, calcium_for_rules
from cds_service.knowledge import thresholds as T
from cds_service.patient.analytes import ANALYTES, CALCIUM_ANALYTES
from cds_service.patient.model import KIDNEY_FAILURE_EGFR, ConditionFact, OrderUnderReview, PatientRecord, UnusableLab


def calciphylaxis_conditions(record: PatientRecord) -> tuple[ConditionFact, ...]:
    return record.conditions_of("calciphylaxis")


def dialysis_conditions(record: PatientRecord) -> tuple[ConditionFact, ...]:
    return record.conditions_of("kidney_failure") + record.conditions_of("dialysis")


def dialysis_evidence(record: PatientRecord, labs: LabFacts) -> tuple[tuple[ConditionFact, ...], tuple[LabValue, ...]]:
    """The conditions (or, failing those, the eGFR) that show kidney failure / dialysis."""
    conditions = dialysis_conditions(record)
    if conditions:
        return conditions, ()
    if labs.egfr is not None and below(labs.egfr, KIDNEY_FAILURE_EGFR):
        return (), (labs.egfr,)
    return (), ()


def unavailable_gaps(record: PatientRecord, keys: tuple[str, ...]) -> tuple[Gap, ...]:
    """Prefetch keys among ``keys`` whose data could not be obtained, or only in part."""
    missing = tuple(
        Gap("prefetch_unavailable", {"key": key, "why": record.unavailable[key]})
        for key in keys
        if key in record.unavailable
    )
    partial = tuple(
        Gap("prefetch_incomplete", {"key": key, "why": record.incomplete[key]})
        for key in keys
        if key in record.incomplete and key not in record.unavailable
    )
    return missing + partial


def lab_gaps(record: PatientRecord, wanted: dict[str, LabValue | None]) -> tuple[Gap, ...]:
    """For each analyte a check needed: missing, stale, or present only as unusable results.

    Analytes whose prefetch key was unavailable are left to ``unavailable_gaps``."""
    gaps: list[Gap] = []
    for analyte, lab in wanted.items():
        if ANALYTES[analyte].source in record.unavailable:
            continue  # reported once as an unavailable prefetch key
        unusable = [u for u in record.unusable_labs if u.analyte == analyte]
        if lab is None:
            if unusable:
                gaps.append(Gap("lab_unusable", {"analyte": analyte, "why": unusable[0].reason}))
            else:
                gaps.append(Gap("lab_missing", {"analyte": analyte}))
        elif lab.stale and (newer := _newer_unusable(record, lab)) is not None:
            when = newer.effective.date().isoformat() if newer.effective is not None else "date unknown"
            gaps.append(Gap("lab_newer_unusable", {"analyte": analyte, "why": newer.reason, "date": when}))
        elif lab.stale:
            limit = record.stale_after(lab.analyte) or record.stale_after("calcium")
            change = record.calcimimetic_change() if analyte in CALCIUM_ANALYTES else None
            recent = limit is not None and lab.effective is not None and record.now - lab.effective <= limit
            if change is not None and recent and lab.effective is not None and lab.effective < change:
                # Within its interval, but drawn before a calcimimetic start or change.
                since = change.date().isoformat()
                gaps.append(Gap("lab_before_calcimimetic", {"analyte": analyte, "lab": lab, "since": since}))
                continue
            days = str(limit.days) if limit is not None else ""
            gaps.append(Gap("lab_stale", {"analyte": analyte, "lab": lab, "days": days}))
    return tuple(gaps)


def _newer_unusable(record: PatientRecord, lab: LabValue) -> UnusableLab | None:
    """The unreadable result drawn after the one a check used (by the result it came from)."""
    return record.unusable_after((lab.analyte, *_SOURCE_ANALYTES.get(lab.analyte, ())), lab.effective)


# A computed value stands on the results of these analytes (a corrected calcium on a calcium).
_SOURCE_ANALYTES: dict[str, tuple[str, ...]] = {"corrected_calcium": ("calcium",)}


def calcium_wanted(calcium: LabValue | None) -> dict[str, LabValue | None]:
    """The calcium a check asks ``lab_gaps`` about: the corrected calcium, unless the ionized
    calcium stood in for it (then a missing total calcium is not worth a line)."""
    if calcium is not None and calcium.analyte == "ionized_calcium":
        return {}
    return {"corrected_calcium": calcium}


def recent_parathyroidectomy(record: PatientRecord) -> tuple[ConditionFact, ...]:
    """Parathyroidectomy entries (a Procedure, a history entry, hungry bone syndrome) from the
    last ``PARATHYROIDECTOMY_RECENT_DAYS``, or undated (the safe reading: it may be recent)."""
    limit = timedelta(days=T.PARATHYROIDECTOMY_RECENT_DAYS)
    return tuple(
        fact
        for fact in record.conditions_of("parathyroidectomy")
        if fact.recorded is None or record.now - fact.recorded <= limit
    )


def hypocalcaemia_review(
    rule_id: str,
    review: OrderUnderReview,
    record: PatientRecord,
    guard: tuple[ConditionFact, ...],
    labs: tuple[LabValue, ...],
    *,
    reasons: tuple[str, ...],
    notes: tuple[str, ...] = (),
    gaps: tuple[Gap, ...] = (),
    conditions: tuple[ConditionFact, ...] = (),
) -> Finding:
    """The card a calcium-raising drug gets when ``hypocalcaemia_guard`` holds: a warning to
    review the dose, with the calcium in its summary and no one-click stop (the rule's
    "hypocalcaemia" variant words it)."""
    return Finding(
        rule_id=rule_id,
        indicator="warning",
        review=review,
        conditions=(conditions or calciphylaxis_conditions(record)) + guard,
        labs=labs,
        reasons=reasons,
        notes=("hypocalcaemia_guard", *notes),
        gaps=gaps,
        variant="hypocalcaemia",
    )


def hypocalcaemia_guard(record: PatientRecord, labs: LabFacts) -> tuple[ConditionFact, ...] | None:
    """Why stopping a calcium source or active vitamin D in one click could harm now: a recent
    calcium below the lower limit of normal (``()``), or a recent parathyroidectomy (its entries);
    ``None`` when neither holds (clinical review F08: hungry bone after parathyroidectomy)."""
    surgery = recent_parathyroidectomy(record)
    if surgery:
        return surgery
    calcium = calcium_for_rules(labs)
    if calcium is not None and calcium.low and not calcium.value.stale:
        return ()
    return None
