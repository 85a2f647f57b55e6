"""Building the record: from a chart as read (``chart.read_chart``) to a ``PatientRecord`` at the
time of the call; ``orders_under_review`` picks the medication orders a hook asks about.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cds_service.fhir.prefetch import ResolvedPrefetch
from cds_service.fhir.reading import (
    ResourceIndex,
    is_about_patient,
    iter_resources,
    patient_references,
    resource_key,
    status_code,
)
from cds_service.patient.chart import ChartReading, read_chart
from cds_service.patient.classify import (
    classify_medication,
    classify_procedure,
    is_current_exposure,
    is_medication_order,
)
from cds_service.patient.model import ConditionFact, MedicationOrder, OrderUnderReview, PatientRecord

# Never under review, whatever the hook.
CLOSED_MEDICATION_STATUSES = frozenset({"stopped", "completed", "cancelled", "entered-in-error"})


def build_record(context: dict[str, Any], chart: ChartReading | ResolvedPrefetch, now: datetime) -> PatientRecord:
    """One immutable ``PatientRecord`` from a hook's ``context`` and its chart as read (or the
    resolved prefetch, read here: ``chart.read_chart``), at the time of the call ``now``: what
    depends on that time is decided here (a procedure's recency, whether an order or a dose
    given is still current). Nothing here raises on malformed FHIR."""
    context = context if isinstance(context, dict) else {}
    if isinstance(chart, ResolvedPrefetch):
        patient_id = context.get("patientId")
        chart = read_chart(chart, patient_id if isinstance(patient_id, str) else "")
    conditions: list[ConditionFact] = []
    for entry in chart.conditions:
        if isinstance(entry, ConditionFact):
            conditions.append(entry)
        else:  # a Procedure: counts while recent
            fact = classify_procedure(entry, now)
            if fact is not None:
                conditions.append(fact)
    return PatientRecord(
        patient_id=chart.patient_id,
        birth_date=chart.birth_date,
        now=now,
        conditions=tuple(conditions),
        # an order no longer taken costs nothing further
        medications=tuple(order for order in chart.orders if is_current_exposure(order, now)),
        labs=dict(chart.labs),
        unavailable=dict(chart.unavailable),
        incomplete=dict(chart.incomplete),
        unusable_labs=chart.unusable_labs,
        other_patient=dict(chart.other_patient),
        allergies=chart.allergies,
        medication_catalog=chart.medication_catalog,
    )


# --------------------------------------------------------------------------------------------
# Orders under review
# --------------------------------------------------------------------------------------------


def _selected_ids(selections: Any) -> tuple[set[str], set[str]]:
    """("Type/id" references, bare ids) named in ``context.selections``."""
    typed: set[str] = set()
    bare: set[str] = set()
    if isinstance(selections, str):
        selections = [selections]
    if not isinstance(selections, list):
        return typed, bare
    for item in selections:
        if not isinstance(item, str) or not item.strip():
            continue
        item = item.strip()
        parts = item.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) >= 2:
            typed.add(f"{parts[-2]}/{parts[-1]}")
        else:
            bare.add(item)
    return typed, bare


DraftEntries = list[tuple[dict[str, Any], MedicationOrder]]


def draft_entries(hook: str, context: dict[str, Any], record: PatientRecord) -> DraftEntries:
    """Every medication draft of an order hook's ``context.draftOrders`` about this patient that is
    not closed, with its classified order (drafts naming no medication, and malformed entries,
    skipped; patient-view: none). Read once per call: the orders under review are chosen from
    these, and a substitute must not duplicate any of them."""
    if hook not in ("order-select", "order-sign") or not isinstance(context, dict):
        return []
    drafts = list(iter_resources(context.get("draftOrders")))
    index = ResourceIndex()
    index.update(record.medication_catalog)
    for full_url, resource in drafts:
        if resource.get("resourceType") == "Medication":
            index.add(resource, full_url)
    patient_refs = patient_references(record.patient_id, drafts)
    out: list[tuple[dict[str, Any], MedicationOrder]] = []
    for _full_url, resource in drafts:
        if not is_medication_order(resource):
            continue
        if not is_about_patient(resource, record.patient_id, patient_refs):
            continue  # never reviewed, never touched by a suggestion
        if status_code(resource.get("status")) in CLOSED_MEDICATION_STATUSES:
            continue
        order = classify_medication(resource, index)
        if order is not None:
            out.append((resource, order))
    return out


def orders_under_review(
    hook: str, context: dict[str, Any], record: PatientRecord, drafts: DraftEntries | None = None
) -> tuple[OrderUnderReview, ...]:
    """The medication orders a hook asks about.

    * order-select: the MedicationRequests / MedicationOrders of ``context.draftOrders`` named in
      ``context.selections`` ("MedicationRequest/id"; bare ids tolerated);
    * order-sign: every medication draft in ``context.draftOrders`` (any status that is not
      stopped / completed / cancelled / entered-in-error, e.g. a re-signed active order);
    * patient-view: what the patient takes now (``is_draft=False``): the active / on-hold orders,
      then the home medication list and the doses given lately (``patient_view_exposures``).

    Non-medication drafts, drafts naming no medication, drafts about another patient (see
    ``foreign_drafts``) and malformed entries are skipped. ``drafts``: ``draft_entries`` when the
    caller has read them already.
    """
    if hook == "patient-view":
        return tuple(OrderUnderReview(order=m, is_draft=False) for m in patient_view_exposures(record))
    if hook not in ("order-select", "order-sign"):
        return ()
    context = context if isinstance(context, dict) else {}
    typed, bare = _selected_ids(context.get("selections")) if hook == "order-select" else (set(), set())
    out: list[OrderUnderReview] = []
    entries = drafts if drafts is not None else draft_entries(hook, context, record)
    for resource, order in entries:
        if hook == "order-select":
            key = resource_key(resource)
            rid = resource.get("id")
            if key not in typed and not (isinstance(rid, str) and rid in bare):
                continue
        out.append(OrderUnderReview(order=order, is_draft=True))
    return tuple(out)


_EXPOSURE_ORDER = {"request": 0, "statement": 1, "administration": 2}


def patient_view_exposures(record: PatientRecord) -> list[MedicationOrder]:
    """What patient-view reviews: every active order, then statements and administrations that
    show a drug no order already covers (one card per problem: a calcitriol order and the doses
    given under it are one exposure), newest administration first, one per drug."""
    chosen: list[MedicationOrder] = []
    covered: set[str] = set()
    names: set[str] = set()
    ordered = sorted(
        record.medications,
        key=lambda m: (_EXPOSURE_ORDER[m.kind], -(m.authored.timestamp() if m.authored else 0.0)),
    )
    for medication in ordered:
        if medication.kind != "request":
            if medication.drug_classes and medication.drug_classes <= covered:
                continue
            if medication.drug_name.lower() in names:
                continue
        chosen.append(medication)
        covered |= medication.drug_classes
        names.add(medication.drug_name.lower())
    return chosen


def foreign_drafts(context: dict[str, Any], patient_id: str) -> list[str]:
    """Resource ids of medication drafts that are about another patient than ``patient_id``."""
    drafts = list(iter_resources(context.get("draftOrders"))) if isinstance(context, dict) else []
    refs = patient_references(patient_id, drafts)
    return [
        resource_key(resource) or str(resource.get("resourceType"))
        for _, resource in drafts
        if is_medication_order(resource) and not is_about_patient(resource, patient_id, refs)
    ]
