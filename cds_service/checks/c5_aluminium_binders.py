"""C5: aluminium-based phosphate binders beyond 4 weeks (clinical-rules.md "Other triggers"; seed 000).

Seed 000 (K/DOQI): no aluminium-based binder for more than 4 weeks, because aluminium
accumulates (toxicity), even when hyperphosphataemia is severe. Who is in scope: a patient with
calciphylaxis or on dialysis / in kidney failure (where aluminium accumulates); anyone else is
silent.

* warning when the order is expected to run past 4 weeks (the latest end its dates, duration or
  supply imply; ``order_timing``), or has run past 4 weeks (an active order, statement, or an
  earlier active order of the class, started more than 28 days ago). Substitute: a calcium-free,
  aluminium-free binder (sevelamer recommended, lanthanum), through the eligibility the
  substitutes declare; when neither may be offered, the suggestion removes the order alone. An
  antacid (ATC A02A, with magnesium or simethicone, or taken as needed) is not replaced by a
  binder: the card says to use an aluminium- and magnesium-free antacid or acid suppression;
* info when no end can be read from the order (no end date, duration or supply): the card says
  which elements were read and that the course should be limited to 4 weeks. Not for doses
  given (administrations): there is no order there to bound;
* silent for a course that ends within 4 weeks.
"""

from __future__ import annotations

import re
from datetime import datetime

from cds_service.checks.findings import Fact, Finding, LabValue
from cds_service.checks.labs import LabFacts
from cds_service.checks.order_timing import OrderSpan, order_span
from cds_service.checks.rule import OrderRule
from cds_service.checks.scope import calciphylaxis_conditions, dialysis_evidence, lab_gaps, unavailable_gaps
from cds_service.checks.substitution import SubstitutionPlan, plan_for, with_notes
from cds_service.fhir.reading import as_list
from cds_service.knowledge import thresholds as T
from cds_service.patient import sources
from cds_service.patient import terminology as term
from cds_service.patient.model import MedicationOrder, OrderUnderReview, PatientRecord

RULE_BEYOND = "C5-aluminium-binder-beyond-4-weeks"
RULE_NO_END = "C5-aluminium-binder-no-end-date"
DRUG_CLASS = "aluminium_binder"


def _day(when: datetime) -> str:
    return when.date().isoformat()


def _days(value: float) -> str:
    return str(round(value))


def _earlier_exposure(record: PatientRecord, review: OrderUnderReview) -> tuple[MedicationOrder, datetime] | None:
    """The earliest-started other active order or statement of the class: the course the order
    under review continues (a renewal), with its start."""
    found: tuple[MedicationOrder, datetime] | None = None
    for med in record.medications:
        if DRUG_CLASS not in med.drug_classes or med.kind == "administration":
            continue
        if med.resource_id == review.order.resource_id:
            continue
        span = order_span(med, record.now, is_draft=False)
        if span.start is not None and (found is None or span.start.when < found[1]):
            found = (med, span.start.when)
    return found


# Antacids: the ATC A02A combinations (A02AD aluminium, calcium and magnesium combinations; A02AF
# with antiflatulents; A02AG, A02AH, A02AX other combinations; A02AB10 aluminium compound
# combinations; docs/clinical/codes.md) and the words and brands that name one. Aluminium
# hydroxide alone (A02AB01, the only ATC code it has, used as a phosphate binder as often as an
# antacid) is told apart by how it is taken: as needed is an antacid, with meals a binder.
_ANTACID_ATC = ("A02AD", "A02AF", "A02AG", "A02AH", "A02AX", "A02AB10")
_ANTACID_WORDS = re.compile(
    r"antacid|magnesium|simethicone|simeticone|maalox|mylanta|gaviscon|gelusil|di-?gene|magaldrate|almagate|hydrotalcite",
    re.IGNORECASE,
)


# Dosage text that says the drug is taken for symptoms, as needed (a binder is taken with meals).
_AS_NEEDED_WORDS = re.compile(
    r"\bPRN\b|as needed|as required|when required|if needed|for (?:indigestion|heartburn|reflux|dyspepsia)",
    re.IGNORECASE,
)


def is_antacid(order: MedicationOrder) -> bool:
    """An aluminium antacid rather than a phosphate binder: coded in ATC A02A, combined with
    magnesium or simethicone, named as an antacid, or taken as needed."""
    code = order.matched_code or ""
    if any(code.startswith(f"{term.ATC}|{prefix}") for prefix in _ANTACID_ATC):
        return True
    if any(_ANTACID_WORDS.search(name) for name in (order.drug_name, *order.ingredients)):
        return True
    raw = order.raw if isinstance(order.raw, dict) else {}
    for dosage in as_list(raw.get("dosageInstruction") or raw.get("dosage")):
        if isinstance(dosage, dict) and (
            dosage.get("asNeededBoolean") is True
            or dosage.get("asNeeded") is True
            or isinstance(dosage.get("asNeededCodeableConcept"), dict)
            or (isinstance(dosage.get("text"), str) and _AS_NEEDED_WORDS.search(dosage["text"]))
        ):
            return True
    return False


def _span_facts(span: OrderSpan) -> list[Fact]:
    facts: list[Fact] = []
    if span.start is not None:
        key = "order_start_assumed" if span.start_assumed else "order_start"
        facts.append(Fact(key, {"date": _day(span.start.when), "field": span.start.field}))
    for end in sorted(span.ends, key=lambda e: e.days, reverse=True):
        params = {"date": _day(end.when), "days": _days(end.days), "field": end.field, "detail": end.how}
        facts.append(Fact("order_end_how" if end.how else "order_end", params))
    return facts


def check_aluminium_binder(record: PatientRecord, review: OrderUnderReview, labs: LabFacts) -> list[Finding]:
    if not record.has_calciphylaxis and not record.on_dialysis:
        return []
    order = review.order
    now = record.now
    span = order_span(order, now, is_draft=review.is_draft)
    facts = _span_facts(span)
    end = span.latest_end
    # Since when the drug has been taken: the start of this order (a draft has not been taken
    # yet), or of an earlier active order of the class that it continues (a renewal).
    taken_since = span.start.when if span.start is not None and not review.is_draft else None
    taken_until = min(now, end.when) if end is not None and taken_since is not None else now
    earlier = _earlier_exposure(record, review)
    if earlier is not None and (taken_since is None or earlier[1] < taken_since):
        med, since = earlier
        taken_since, taken_until = since, now
        facts.append(Fact("order_earlier", {"date": _day(since), "what": f"{med.drug_name}, {med.resource_id}"}))
    reasons: list[str] = []
    if taken_since is not None and (taken_until - taken_since).days > T.ALUMINIUM_BINDER_MAX_DAYS:
        so_far = {"days": str((taken_until - taken_since).days), "date": _day(taken_since)}
        facts.append(Fact("order_taken_so_far", so_far))
        reasons.append("aluminium_has_run_beyond")
    # The whole course the order allows, from when the drug was first taken.
    starts = [d for d in (taken_since, span.start.when if span.start else None) if d is not None]
    if not reasons and end is not None and starts and (end.when - min(starts)).days > T.ALUMINIUM_BINDER_MAX_DAYS:
        reasons.append("aluminium_expected_beyond")

    scope_labs: tuple[LabValue, ...] = ()
    if record.has_calciphylaxis:
        conditions = calciphylaxis_conditions(record)
    else:
        conditions, scope_labs = dialysis_evidence(record, labs)
    shown = tuple(v for v in (labs.phosphate,) if v is not None) + scope_labs

    if reasons:
        antacid = is_antacid(order)
        # An antacid is not replaced by a phosphate binder (clinical review F22): stop it, and
        # the card says what to use instead.
        plan = (
            with_notes(SubstitutionPlan(), "antacid_not_a_binder")
            if antacid
            else plan_for(RULE_BEYOND, record, labs, order)
        )
        return [
            Finding(
                rule_id=RULE_BEYOND,
                indicator="warning",
                review=review,
                conditions=conditions,
                labs=shown,
                reasons=tuple(reasons),
                facts=tuple(facts),
                **plan.finding_fields(),
                gaps=lab_gaps(record, {"phosphate": labs.phosphate})
                + unavailable_gaps(record, (sources.PHOSPHATE,))
                + plan.gaps,
                variant="antacid" if antacid else "",
            )
        ]
    if end is None and order.kind != "administration":
        facts.append(Fact("order_no_end", {"detail": "; ".join(span.looked_at)}))
        return [
            Finding(
                rule_id=RULE_NO_END,
                indicator="info",
                review=review,
                conditions=conditions,
                labs=scope_labs,
                reasons=("aluminium_no_end",),
                facts=tuple(facts),
            )
        ]
    return []


RULE = OrderRule(
    name="c5_aluminium_binders",
    drug_class=DRUG_CLASS,
    finding_ids=(RULE_BEYOND, RULE_NO_END),
    check=check_aluminium_binder,
)
