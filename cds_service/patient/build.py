"""Building the record: from a hook's raw ``context`` and resolved prefetch to a ``PatientRecord``.

``build_record`` selects the resources that matter by type and code *before* any model
validation, normalises lab units, classifies medications and conditions, and returns one
immutable record; ``orders_under_review`` picks the medication orders a hook asks about.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Final, NamedTuple

from cds_service.fhir.reading import (
    ResourceIndex,
    is_about_patient,
    iter_resources,
    parse_fhir_datetime,
    patient_references,
    resource_key,
    status_code,
)
from cds_service.patient import sources, units
from cds_service.patient.analytes import LOINC_TO_ANALYTE
from cds_service.patient.classify import (
    classify_allergy,
    classify_condition,
    classify_medication,
    classify_procedure,
    is_current_exposure,
    is_medication_order,
)
from cds_service.patient.memo import ReadingMemo, resource_json
from cds_service.patient.model import (
    CANONICAL_UNITS,
    AllergyFact,
    ConditionFact,
    LabResult,
    MedicationOrder,
    OrderUnderReview,
    PatientRecord,
    UnusableLab,
)
from cds_service.patient.terminology import LOINC, canonical_system, text_spent

# Observation statuses whose values may be acted on.
USABLE_OBSERVATION_STATUSES = frozenset({"final", "amended", "corrected"})
# Never under review, whatever the hook.
CLOSED_MEDICATION_STATUSES = frozenset({"stopped", "completed", "cancelled", "entered-in-error"})


def _observation_effective(resource: dict[str, Any]) -> datetime | None:
    period = resource.get("effectivePeriod")
    return (
        parse_fhir_datetime(resource.get("effectiveDateTime"))
        or (parse_fhir_datetime(period.get("start")) if isinstance(period, dict) else None)
        or parse_fhir_datetime(resource.get("effectiveInstant"))
        or parse_fhir_datetime(resource.get("issued"))
    )


def _observation_analyte(resource: dict[str, Any]) -> tuple[str, str] | None:
    """(analyte, loinc) when the Observation carries a LOINC code the record reads."""
    code = resource.get("code")
    if not isinstance(code, dict):
        return None
    codings = code.get("coding")
    if not isinstance(codings, list):
        return None
    for coding in codings:
        if not isinstance(coding, dict):
            continue
        value = coding.get("code")
        if not isinstance(value, str):
            continue
        analyte = LOINC_TO_ANALYTE.get(value)
        if analyte is not None and canonical_system(coding.get("system")) == LOINC:
            return analyte, value
    return None


def _lab_result(
    resource: dict[str, Any], analyte: str, loinc: str, status: str, effective: datetime | None
) -> LabResult | UnusableLab:
    rid = resource_key(resource) or "Observation"
    quantity = resource.get("valueQuantity")
    canonical = CANONICAL_UNITS[analyte]
    assumed_unit = False
    if not isinstance(quantity, dict) and "valueString" in resource:
        # Results sent as text ("<3.0", ">1000 pg/mL") are read with their comparator kept.
        parsed = units.quantity_from_string(resource.get("valueString"), analyte)
        if parsed is None:
            return UnusableLab(analyte, rid, "a text result that is not a number", effective)
        quantity, assumed_unit = parsed
    if not isinstance(quantity, dict) or not units.is_number(quantity.get("value")):
        return UnusableLab(analyte, rid, "no numeric valueQuantity", effective)
    normalised = units.to_canonical(quantity, analyte)
    if normalised is None:
        unit = units.quantity_unit(quantity) or "(none)"
        return UnusableLab(analyte, rid, f"unit '{unit[:40]}' cannot be converted to {canonical}", effective)
    if not units.is_plausible(analyte, normalised.value):
        shown = f"{normalised.original_value:.4g} {normalised.original_unit[:40]}"
        return UnusableLab(analyte, rid, f"implausible value {shown} ignored (a unit or typing error?)", effective)
    return LabResult(
        analyte=analyte,
        value=normalised.value,
        unit=canonical,
        original_value=normalised.original_value,
        original_unit=f"{canonical}, unit not stated" if assumed_unit else normalised.original_unit,
        effective=effective,
        resource_id=rid,
        loinc=loinc,
        status=status,
        comparator=normalised.comparator,
    )


def _newest_first(effective: datetime | None) -> tuple[int, float]:
    # Undated results sort last; among dated ones, newest first.
    if effective is None:
        return (1, 0.0)
    return (0, -effective.timestamp())


@dataclass(slots=True)
class ObservationReading:
    """What an Observation is to the record: its analyte, code, status and time, and (once a
    call has needed it) its normalised result. Remembered per exact JSON (``memo.py``)."""

    analyte: str
    loinc: str
    status: str
    effective: datetime | None
    sort_key: tuple[int, float]
    result: LabResult | UnusableLab | None = None

    def lab_result(self, resource: dict[str, Any]) -> LabResult | UnusableLab:
        if self.result is None:  # a race between two calls at worst reads it twice
            self.result = _lab_result(resource, self.analyte, self.loinc, self.status, self.effective)
        return self.result


# An Observation the record does not read (status not usable, or no LOINC code of an analyte).
NOT_READ: Final = ObservationReading("", "", "", None, (1, 0.0))


def _read_observation(resource: dict[str, Any]) -> ObservationReading:
    status = resource.get("status")
    if not isinstance(status, str) or status not in USABLE_OBSERVATION_STATUSES:
        return NOT_READ
    selected = _observation_analyte(resource)
    if selected is None:
        return NOT_READ
    effective = _observation_effective(resource)
    return ObservationReading(selected[0], selected[1], status, effective, _newest_first(effective))


# Sizes: a few hundred patients' charts in flight, in entries and in JSON bytes (see memo.py).
# A chart with more resources than MEMO_CHART_LIMIT is read without the memos: it would only push
# every other patient's readings out (and a call that large is dominated by decoding its JSON).
MEMO_CHART_LIMIT = 2000
OBSERVATIONS: ReadingMemo[ObservationReading] = ReadingMemo("observation", 8192, max_bytes=8 << 20)
CONDITIONS: ReadingMemo[tuple[ConditionFact, ...]] = ReadingMemo("condition", 4096, max_bytes=4 << 20)
ALLERGIES: ReadingMemo[tuple[AllergyFact, ...]] = ReadingMemo("allergy", 2048, max_bytes=2 << 20)
MEDICATIONS: ReadingMemo[tuple[MedicationOrder, ...]] = ReadingMemo("medication", 4096, max_bytes=4 << 20)


def observation_reading(resource: dict[str, Any]) -> ObservationReading:
    return OBSERVATIONS.remembered(resource, _read_observation)


def condition_facts(resource: dict[str, Any]) -> tuple[ConditionFact, ...]:
    return CONDITIONS.remembered(resource, classify_condition)


def _allergy_facts(resource: dict[str, Any]) -> tuple[AllergyFact, ...]:
    allergy = classify_allergy(resource)
    return (allergy,) if allergy is not None else ()


def allergy_fact(resource: dict[str, Any]) -> AllergyFact | None:
    found = ALLERGIES.remembered(resource, _allergy_facts)
    return found[0] if found else None


def _names_other_resource(resource: dict[str, Any]) -> bool:
    """Whether a medication resource names its drug by reference (R4/DSTU2 ``medicationReference``,
    R5 ``medication.reference``): its reading then depends on that Medication too."""
    medication = resource.get("medication")
    return "medicationReference" in resource or (isinstance(medication, dict) and "reference" in medication)


def _inline_order(resource: dict[str, Any]) -> tuple[MedicationOrder, ...]:
    order = classify_medication(resource, None)
    return (replace(order, raw={}),) if order is not None else ()


def _medication_reading(resource: dict[str, Any], remember: bool = True) -> tuple[MedicationOrder, ...]:
    """An order that names its drug inline, classified without its resource (``()``: it names
    no medication at all); the caller attaches its own resource (``with_raw``)."""
    return MEDICATIONS.remembered(resource, _inline_order) if remember else _inline_order(resource)


def medication_order(resource: dict[str, Any], catalog: ResourceIndex) -> MedicationOrder | None:
    """``classify_medication``, remembered for orders that carry their drug inline. The order
    returned always carries this call's resource as ``raw``."""
    if _names_other_resource(resource):
        return classify_medication(resource, catalog)
    found = _medication_reading(resource)
    return found[0].with_raw(resource) if found else None


class _Item(NamedTuple):  # a tuple: made for every resource of every chart not yet remembered
    """What one resource of the prefetch is to the record: its type, its ``Type/id`` and the
    part of its reading that depends on nothing but its JSON:
    Observation: ``ObservationReading``; Condition: ``tuple[ConditionFact, ...]``;
    AllergyIntolerance: ``AllergyFact | None``; an order naming its drug inline:
    ``tuple[MedicationOrder, ...]`` (classified without its resource); None for what must be read
    per call (a Procedure: its recency; a Medication: the catalog; an order naming its drug by
    reference: the Medication it names)."""

    rtype: str
    key: str | None
    reading: Any


def _item(resource: dict[str, Any], remember: bool) -> _Item | None:
    """``None`` for a resource the record does not read."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in _RELEVANT_TYPES:
        return None
    reading: Any = None
    if rtype == "Observation":
        reading = observation_reading(resource) if remember else _read_observation(resource)
    elif rtype == "Condition":
        reading = condition_facts(resource) if remember else classify_condition(resource)
    elif rtype == "AllergyIntolerance":
        reading = allergy_fact(resource) if remember else classify_allergy(resource)
    elif rtype in _ORDER_TYPES and not _names_other_resource(resource):
        reading = _medication_reading(resource, remember)
    return _Item(rtype, resource_key(resource), reading)


# A prefetch value (a Bundle, or one resource) -> the items of its resources, in order. A chart
# sent again is then read with one encoding per prefetch key; a Bundle that changed is read
# resource by resource, each resource still from its own memo when it has not changed.
PREFETCH_VALUES: ReadingMemo[tuple[_Item | None, ...]] = ReadingMemo(
    "prefetch value", 1024, max_bytes=8 << 20, compact=False
)


# The text work of one call is bounded: once the name matcher has read this many characters of
# the call's medication, allergy and problem-list texts (its caches answer texts seen before for
# free), the rest of the named resources are not read, and their prefetch keys are "only partly
# read" on the cards (the checks that need them are not checked, no one-click order). A real chart
# costs a few thousand characters; the bound is reached only by texts made to be expensive (about
# a second of matching at worst), never by a short list read in part.
CALL_TEXT_BUDGET = 150_000
_NAMED_TYPES = frozenset(
    {
        "Condition",
        "AllergyIntolerance",
        "Medication",
        "MedicationRequest",
        "MedicationOrder",
        "MedicationStatement",
        "MedicationAdministration",
    }
)


@dataclass
class _TextBudget:
    """One call's budget of matched characters, and what it left unread (key -> resources)."""

    start: int = field(default_factory=text_spent)
    unread: dict[str, int] = field(default_factory=dict)

    def exhausted(self) -> bool:
        return text_spent() - self.start > CALL_TEXT_BUDGET


def _items(
    key: str,
    value: Any,
    entries: list[tuple[str | None, dict[str, Any]]],
    remember: bool,
    encoded: bytes | None,
    budget: _TextBudget,
) -> Sequence[_Item | None]:
    """``encoded``: the value's JSON when the resolver has it already. Once ``budget`` is spent,
    the named resources left are not read (``None``), and such a reading is not remembered."""
    if remember and isinstance(value, dict):
        raw = encoded if encoded is not None else resource_json(value, compact=True)
        if raw is not None:
            plan = PREFETCH_VALUES.get(raw)
            if plan is None:
                plan = tuple(_budgeted_items(key, entries, True, budget))
                if key not in budget.unread:
                    PREFETCH_VALUES.put(raw, plan)
            return plan
    return list(_budgeted_items(key, entries, remember, budget))


def _budgeted_items(
    key: str, entries: list[tuple[str | None, dict[str, Any]]], remember: bool, budget: _TextBudget
) -> Iterator[_Item | None]:
    for _, resource in entries:
        rtype = resource.get("resourceType")
        if isinstance(rtype, str) and rtype in _NAMED_TYPES and budget.exhausted():
            budget.unread[key] = budget.unread.get(key, 0) + 1
            yield None
            continue
        yield _item(resource, remember)


# Every rule reads only recent results (the latest value, two consecutive PTH results, an albumin
# drawn near the calcium), so each analyte keeps its newest usable results only. Units are
# normalised for those alone: a chart with 10,000 Observations then costs little more to read
# than one with 50.
SERIES_LIMIT = 12


def _newest_series(
    candidates: list[tuple[ObservationReading, dict[str, Any]]],
) -> tuple[tuple[LabResult, ...], list[UnusableLab]]:
    """Normalise an analyte's candidates newest first until SERIES_LIMIT are usable."""
    candidates.sort(key=lambda c: c[0].sort_key)
    series: list[LabResult] = []
    unusable: list[UnusableLab] = []
    for reading, resource in candidates:
        result = reading.lab_result(resource)
        if isinstance(result, LabResult):
            series.append(result)
            if len(series) == SERIES_LIMIT:
                break
        else:
            unusable.append(result)
    return tuple(series), unusable


class _At(NamedTuple):
    """A resource of this call's prefetch, by position: its key and its place among the key's
    resources (``iter_resources`` order)."""

    key: str
    position: int


@dataclass(frozen=True)
class _ChartReading:
    """What a record holds that depends on nothing but the chart's JSON and whose chart it is:
    a chart sent again is read from this. What must be read on every call is named by position:
    Procedures (their recency), Medications (the catalog holds this call's resources) and orders
    (each carries this call's resource)."""

    labs: dict[str, tuple[LabResult, ...]]
    unusable: tuple[UnusableLab, ...]
    conditions: tuple[ConditionFact | _At, ...]  # facts in order; a Procedure by position
    allergies: tuple[AllergyFact, ...]
    medications: tuple[tuple[_At, str | None], ...]  # Medication resources, with their fullUrl
    orders: tuple[tuple[_At, Any], ...]  # orders and their readings (see ``_Item``)


# (patient id, then each prefetch key and its encoding) -> the chart's reading.
CHARTS: ReadingMemo[_ChartReading] = ReadingMemo("chart", 512, max_bytes=8 << 20, compact=False)


def _read_chart(
    values: list[tuple[str, Any, list[tuple[str | None, dict[str, Any]]]]],
    encodings: Mapping[str, bytes],
    patient_id: str,
    screened: bool,
    remember: bool,
    budget: _TextBudget,
) -> _ChartReading:
    seen: set[str] = set()
    # analyte -> (reading, Observation): selected by code and status only.
    lab_candidates: dict[str, list[tuple[ObservationReading, dict[str, Any]]]] = {}
    conditions: list[ConditionFact | _At] = []
    allergies: list[AllergyFact] = []
    medications: list[tuple[_At, str | None]] = []
    orders: list[tuple[_At, Any]] = []
    patient_refs = (
        frozenset() if screened else patient_references(patient_id, [e for _, _, entries in values for e in entries])
    )
    for key, value, entries in values:
        items = _items(key, value, entries, remember, encodings.get(key), budget)
        for index, ((_, resource), item) in enumerate(zip(entries, items, strict=True)):
            if item is None:
                continue
            # Another patient's data is never used. The resolver refuses a whole key holding
            # any, and says so (``screened``); data that did not come through it is screened here.
            if not screened and not is_about_patient(resource, patient_id, patient_refs):
                continue
            if item.key is not None:
                if item.key in seen:  # the same resource under two prefetch keys
                    continue
                seen.add(item.key)
            rtype = item.rtype
            if rtype == "Observation":
                if item.reading is not NOT_READ:
                    lab_candidates.setdefault(item.reading.analyte, []).append((item.reading, resource))
            elif rtype == "Condition":
                conditions.extend(item.reading)
            elif rtype == "Procedure":
                conditions.append(_At(key, index))
            elif rtype == "AllergyIntolerance":
                if item.reading is not None:
                    allergies.append(item.reading)
            elif rtype == "Medication":
                medications.append((_At(key, index), entries[index][0]))
            else:  # MedicationRequest / MedicationOrder / MedicationStatement / MedicationAdministration
                orders.append((_At(key, index), item.reading))

    labs: dict[str, tuple[LabResult, ...]] = {}
    unusable: list[UnusableLab] = []
    for analyte, candidates in lab_candidates.items():
        series, skipped = _newest_series(candidates)
        if series:
            labs[analyte] = series
        unusable.extend(skipped)
    return _ChartReading(
        labs=labs,
        unusable=tuple(unusable),
        conditions=tuple(conditions),
        allergies=tuple(allergies),
        medications=tuple(medications),
        orders=tuple(orders),
    )


def build_record(context: dict[str, Any], prefetch: Any, now: datetime) -> PatientRecord:
    """One immutable ``PatientRecord`` from a hook's ``context`` and resolved prefetch.

    Resources are selected by type (and Observations by LOINC code) from the raw JSON before
    anything else is read, so a large prefetch costs little more than decoding it. Nothing here
    raises on malformed FHIR: what cannot be read is skipped (labs: noted in ``unusable_labs``).
    A chart the resolver has seen before (same patient, same JSON under every key) is read from
    memory; only what depends on the time of the call or on this call's resources is read again.
    """
    context = context if isinstance(context, dict) else {}
    data = getattr(prefetch, "data", None)
    if data is None and isinstance(prefetch, dict):
        data = prefetch
    if not isinstance(data, dict):
        data = {}
    unavailable = getattr(prefetch, "unavailable", None)
    unavailable = dict(unavailable) if isinstance(unavailable, Mapping) else {}
    incomplete = getattr(prefetch, "incomplete", None)
    incomplete = dict(incomplete) if isinstance(incomplete, Mapping) else {}
    other_patient = getattr(prefetch, "other_patient", None)
    other_patient = dict(other_patient) if isinstance(other_patient, Mapping) else {}
    patient_id = context.get("patientId")
    patient_id = patient_id if isinstance(patient_id, str) else ""
    encodings = getattr(prefetch, "encoded", None)
    encodings = encodings if isinstance(encodings, Mapping) else {}
    screened = bool(patient_id) and getattr(prefetch, "screened_for", None) == patient_id

    # The chart as a key: only for data the resolver screened and encoded in full.
    chart_key: tuple[Any, ...] | None = None
    if screened and all(value is None or key in encodings for key, value in data.items()):
        chart_key = (patient_id, *(part for key in data for part in (key, encodings.get(key))))
    chart = CHARTS.get(chart_key) if chart_key is not None else None
    entries_of: dict[str, list[tuple[str | None, dict[str, Any]]]] = {}
    if chart is None:
        values = [(key, value, list(iter_resources(value))) for key, value in data.items()]
        entries_of = {key: entries for key, _, entries in values}
        remember = sum(len(entries) for _, _, entries in values) <= MEMO_CHART_LIMIT
        budget = _TextBudget()
        chart = _read_chart(values, encodings, patient_id, screened, remember, budget)
        if chart_key is not None and remember and not budget.unread:
            CHARTS.put(chart_key, chart)
        for key, unread in budget.unread.items():
            incomplete.setdefault(key, f"{unread} entries not read: the text budget of one call was spent")

    def resource_at(at: _At) -> tuple[str | None, dict[str, Any]]:
        if at.key not in entries_of:
            entries_of[at.key] = list(iter_resources(data.get(at.key)))
        return entries_of[at.key][at.position]

    conditions: list[ConditionFact] = []
    for slot in chart.conditions:
        if isinstance(slot, _At):
            fact = classify_procedure(resource_at(slot)[1], now)
            if fact is not None:
                conditions.append(fact)
        else:
            conditions.append(slot)
    catalog = ResourceIndex()
    for at, full_url in chart.medications:
        catalog.add(resource_at(at)[1], full_url)
    medications: list[MedicationOrder] = []
    for at, reading in chart.orders:
        if reading is None:  # names its drug by reference: read with the Medications found
            order = classify_medication(resource_at(at)[1], catalog)
            if order is not None and is_current_exposure(order, now):
                medications.append(order)
        elif reading and is_current_exposure(reading[0], now):  # an order no longer taken costs nothing
            medications.append(reading[0].with_raw(resource_at(at)[1]))

    return PatientRecord(
        patient_id=patient_id,
        birth_date=_birth_date(data.get(sources.PATIENT), patient_id),
        now=now,
        conditions=tuple(conditions),
        medications=tuple(medications),
        labs=dict(chart.labs),
        unavailable=unavailable,
        incomplete=incomplete,
        unusable_labs=chart.unusable,
        other_patient=other_patient,
        allergies=chart.allergies,
        medication_catalog=catalog.as_mapping(),
    )


def _birth_date(resource: Any, patient_id: str) -> date | None:
    """Patient.birthDate of this patient's record (a full date; a year or month alone is not
    precise enough to tell an age threshold)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        return None
    if not patient_id or resource.get("id") != patient_id:
        return None
    value = resource.get("birthDate")
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


_ORDER_TYPES = frozenset({"MedicationRequest", "MedicationOrder", "MedicationStatement", "MedicationAdministration"})
_RELEVANT_TYPES = frozenset(
    {
        "Observation",
        "Condition",
        "Procedure",
        "AllergyIntolerance",
        "Medication",
        "MedicationRequest",
        "MedicationOrder",
        "MedicationStatement",
        "MedicationAdministration",
    }
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
        order = medication_order(resource, index)
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
