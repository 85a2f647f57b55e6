"""Reading a chart: one pass over the resolved prefetch, a pure function of it and of whose chart it is.

``read_chart(prefetch, patient_id)`` walks every resource of every prefetch key once and, in the
same step, for each resource:

* **screens identity**: a resource about another patient is dropped alone and counted per key;
  a key left holding nothing about this patient is treated as unavailable (``OTHER_PATIENT``);
* **selects by type and code** before reading anything else: an Observation is kept as a
  candidate only when its status may be acted on and it carries the LOINC code of an analyte a
  check reads (its other members are not looked at); resource types no check reads cost one
  dictionary lookup;
* reads what depends on nothing but the resource: a Condition's and an AllergyIntolerance's
  facts, a Patient's birth date.

Then, per analyte, only the newest candidates are normalised (units, plausibility, text results)
until as many usable results as the checks read are found (``Analyte.series``: the latest alone
for most, two PTH results, a CRP and the one before it, the albumins near a calcium); medication
orders whose status lets them be current are classified once every ``Medication`` of the
prefetch is known. What depends on the time of the call (a procedure's recency, whether an
order is still taken) is left to ``build.build_record``.

The cost of a call therefore grows with what the rules read (a few results per analyte, the
problem and medication lists), not with the size of the chart: an Observation no check reads
costs a few dictionary lookups. A body too large to decode whole is sieved as it is decoded
(``EntrySieve``, at the end): it keeps exactly the entries this reading could use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import itemgetter
from typing import Any

from cds_service.fhir.prefetch import ResolvedPrefetch
from cds_service.fhir.reading import (
    ResourceIndex,
    as_list,
    is_about_patient,
    iter_resources,
    names_patient,
    parse_fhir_datetime,
    patient_references,
    resource_key,
)
from cds_service.patient import units
from cds_service.patient.analytes import ANALYTES, LOINC_TO_ANALYTE
from cds_service.patient.classify import (
    EXPOSURE_KINDS,
    classify_allergy,
    classify_condition,
    classify_medication,
    may_be_current,
)
from cds_service.patient.model import (
    CANONICAL_UNITS,
    AllergyFact,
    ConditionFact,
    LabResult,
    MedicationOrder,
    UnusableLab,
)
from cds_service.patient.terminology import LOINC, canonical_system, text_spent

# Observation statuses whose values may be acted on.
USABLE_OBSERVATION_STATUSES = frozenset({"final", "amended", "corrected"})

# The analytes in the order of their table: the reading lists them so, whatever order they came in.
_ANALYTE_ORDER = {key: position for position, key in enumerate(ANALYTES)}

# A key whose every resource was about another patient (the cards show this as the reason).
OTHER_PATIENT = "held data about another patient"

# The text work of one call is bounded: once the name matcher has read this many characters of
# the call's medication, allergy and problem-list texts (its caches answer texts seen before for
# free), the rest of the named resources are not read, and their prefetch keys are "only partly
# read" on the cards (the checks that need them are not checked, no one-click order). A real chart
# costs a few thousand characters; the bound is reached only by texts made to be expensive (about
# a second of matching at worst), never by a short list read in part.
CALL_TEXT_BUDGET = 150_000

# What each resource type is to the reading (types absent here are not read at all).
_OBSERVATION, _CONDITION, _PROCEDURE, _ALLERGY, _MEDICATION, _ORDER, _PATIENT = range(7)
_KIND = {
    "Observation": _OBSERVATION,
    "Condition": _CONDITION,
    "Procedure": _PROCEDURE,
    "AllergyIntolerance": _ALLERGY,
    "Medication": _MEDICATION,
    "Patient": _PATIENT,
    **dict.fromkeys(EXPOSURE_KINDS, _ORDER),  # orders, statements, administrations
}
# Kinds whose reading sends text to the name matcher (bounded by CALL_TEXT_BUDGET).
_NAMED = frozenset({_CONDITION, _ALLERGY, _MEDICATION, _ORDER})


# --------------------------------------------------------------------------------------------
# Observations
# --------------------------------------------------------------------------------------------


def observation_effective(resource: Mapping[str, Any]) -> datetime | None:
    period = resource.get("effectivePeriod")
    return (
        parse_fhir_datetime(resource.get("effectiveDateTime"))
        or (parse_fhir_datetime(period.get("start")) if isinstance(period, dict) else None)
        or parse_fhir_datetime(resource.get("effectiveInstant"))
        or parse_fhir_datetime(resource.get("issued"))
    )


def observation_analyte(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    """(analyte, loinc) when the Observation carries a LOINC code of an analyte a check reads."""
    code = resource.get("code")
    if type(code) is not dict:
        return None
    codings = code.get("coding")
    if type(codings) is not list:
        return None
    for coding in codings:
        value = coding.get("code") if type(coding) is dict else None
        if type(value) is not str:
            continue
        analyte = LOINC_TO_ANALYTE.get(value)
        if analyte is None:
            continue
        system = coding.get("system")
        if system == LOINC or canonical_system(system) == LOINC:
            return analyte, value
    return None


def lab_result(
    resource: Mapping[str, Any], analyte: str, loinc: str, effective: datetime | None
) -> LabResult | UnusableLab:
    """An Observation of ``analyte`` (usable status, LOINC ``loinc``) as a normalised result, or
    why it cannot be used."""
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
        status=str(resource.get("status")),
        comparator=normalised.comparator,
    )


def _plainly_about(resource: Mapping[str, Any], own: str) -> bool:
    """Whether a resource other than a Patient names the patient by its ``subject`` as ``own``
    (``Patient/<id>``): the usual case, decided without the Bundle's references. The identity
    screen (``_Identity.about``) and the sieve of a very large body (``EntrySieve``) both start
    here."""
    subject = resource.get("subject")
    return type(subject) is dict and subject.get("reference") == own and resource.get("resourceType") != "Patient"


def _newest_first(effective: datetime | None) -> tuple[int, float]:
    """The order ``newest_series`` reads results in: newest first, undated last."""
    return (1, 0.0) if effective is None else (0, -effective.timestamp())


def _usable_status(resource: Mapping[str, Any]) -> bool:
    status = resource.get("status")
    return type(status) is str and status in USABLE_OBSERVATION_STATUSES


def read_lab(resource: Mapping[str, Any]) -> LabResult | UnusableLab | None:
    """One Observation as a lab result (``None``: not a result any check reads: another code, or
    a status that may not be acted on). For readers of one Observation at a time."""
    if not _usable_status(resource):
        return None
    selected = observation_analyte(resource)
    if selected is None:
        return None
    return lab_result(resource, selected[0], selected[1], observation_effective(resource))


def newest_series(
    analyte: str, found: list[tuple[str, dict[str, Any]]]
) -> tuple[tuple[LabResult, ...], list[UnusableLab]]:
    """An analyte's Observations (``(loinc, resource)``, selected by status and code) normalised
    newest first until as many are usable as the checks read (``Analyte.series``); the unusable
    ones met on the way are returned too (a newer unreadable result is shown). Undated results
    come last; an Observation sent twice (two keys, overlapping pages) counts once."""
    depth = ANALYTES[analyte].series
    dated = []
    for loinc, resource in found:
        effective = observation_effective(resource)
        dated.append((_newest_first(effective), effective, loinc, resource))
    dated.sort(key=itemgetter(0))  # stable: equal times keep the order sent
    series: list[LabResult] = []
    unusable: list[UnusableLab] = []
    taken: set[str] = set()
    for _, effective, loinc, resource in dated:
        rid = resource_key(resource)
        if rid is not None:
            if rid in taken:
                continue
            taken.add(rid)
        result = lab_result(resource, analyte, loinc, effective)
        if isinstance(result, LabResult):
            series.append(result)
            if len(series) == depth:
                break
        else:
            unusable.append(result)
    return tuple(series), unusable


# --------------------------------------------------------------------------------------------
# The reading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartReading:
    """What the prefetch says about one patient, as far as it depends on nothing but the data
    and whose chart it is. ``build.build_record`` adds what depends on the time of the call."""

    patient_id: str
    labs: dict[str, tuple[LabResult, ...]] = field(default_factory=dict)
    unusable_labs: tuple[UnusableLab, ...] = ()
    # Conditions' facts and Procedure resources (read per call: their recency), in the order sent.
    conditions: tuple[ConditionFact | dict[str, Any], ...] = ()
    allergies: tuple[AllergyFact, ...] = ()
    # The orders of every kind whose status lets them count as taken now, classified.
    orders: tuple[MedicationOrder, ...] = ()
    medication_catalog: Mapping[str, Any] = field(default_factory=dict, repr=False)
    birth_date: date | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    incomplete: dict[str, str] = field(default_factory=dict)
    # key -> how many resources about another patient it held (dropped, never read).
    other_patient: dict[str, int] = field(default_factory=dict)


@dataclass
class _KeyReading:
    """What one prefetch key contributed, kept apart until the key is known to be this
    patient's (a key holding nothing about them contributes nothing)."""

    key: str
    candidates: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # analyte, LOINC, Observation
    # Conditions' facts and Procedures (read per call: their recency), in the order sent.
    conditions: list[ConditionFact | dict[str, Any]] = field(default_factory=list)
    allergies: list[AllergyFact] = field(default_factory=list)
    medications: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)  # classified once the catalog is known
    patients: list[dict[str, Any]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)  # "Type/id" of what it contributed
    foreign: int = 0  # resources about another patient
    names_patient: bool = False  # a resource that positively names this patient
    unread: int = 0  # named resources left unread: the text budget was spent


class _Identity:
    """Whose resource is it: ``Patient/<id>`` decided at once; any other reference form
    (``urn:uuid:`` of a transaction Bundle's Patient entry, an absolute URL) with every
    reference that names the patient, collected from the whole prefetch on first need."""

    def __init__(self, patient_id: str, data: Mapping[str, Any]):
        self.patient_id = patient_id
        self.own = "Patient/" + patient_id
        self._data = data
        self._refs: frozenset[str] | None = None

    def refs(self) -> frozenset[str]:
        if self._refs is None:
            self._refs = patient_references(self.patient_id, _all_resources(self._data))
        return self._refs

    def about(self, resource: dict[str, Any]) -> tuple[bool, bool]:
        """(about this patient, positively names them): the answers of ``reading.is_about_patient``
        and ``reading.names_patient``, the usual cases decided without the references."""
        if _plainly_about(resource, self.own):
            return True, True
        if resource.get("resourceType") == "Patient":
            rid = resource.get("id")
            return not isinstance(rid, str) or rid == self.patient_id, rid == self.patient_id
        if resource.get("subject") is None and resource.get("patient") is None:
            return True, False  # names nobody (a Medication)
        refs = self.refs()
        if not is_about_patient(resource, self.patient_id, refs):
            return False, False
        return True, names_patient(resource, self.patient_id, refs)


def _all_resources(data: Mapping[str, Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    for value in data.values():
        yield from iter_resources(value)


class _TextBudget:
    """One call's budget of matched characters (``CALL_TEXT_BUDGET``)."""

    def __init__(self) -> None:
        self.start = text_spent()

    def exhausted(self) -> bool:
        return text_spent() - self.start > CALL_TEXT_BUDGET


def _read_key(key: str, value: Any, identity: _Identity | None, seen: set[str], budget: _TextBudget) -> _KeyReading:
    """One pass over one key's resources: identity, selection, and the readings that need
    nothing but the resource. ``seen``: the ids earlier keys contributed (a resource sent twice,
    under two keys or twice in one, counts once: the first; Observations: ``newest_series``)."""
    out = _KeyReading(key)
    candidates = out.candidates
    for full_url, resource in iter_resources(value):
        rtype = resource.get("resourceType")
        if type(rtype) is not str:
            continue  # not a resource: never read, never counted
        if identity is not None:
            about, names = identity.about(resource)
            if not about:
                out.foreign += 1
                continue
            out.names_patient = out.names_patient or names
        kind = _KIND.get(rtype)
        if kind is None:
            continue
        if kind == _OBSERVATION:
            if not _usable_status(resource):
                continue
            selected = observation_analyte(resource)
            if selected is not None:
                candidates.append((selected[0], selected[1], resource))
            continue
        if _repeated(out, rtype, resource, seen):
            continue
        if kind in _NAMED and budget.exhausted():
            out.unread += 1
            continue
        if kind == _CONDITION:
            out.conditions.extend(classify_condition(resource))
        elif kind == _PROCEDURE:
            out.conditions.append(resource)
        elif kind == _ORDER:
            if may_be_current(resource):  # a stopped or completed order is not read further
                out.orders.append(resource)
        elif kind == _MEDICATION:
            out.medications.append((full_url, resource))
        elif kind == _ALLERGY:
            allergy = classify_allergy(resource)
            if allergy is not None:
                out.allergies.append(allergy)
        else:  # Patient
            out.patients.append(resource)
    return out


def _repeated(out: _KeyReading, rtype: Any, resource: dict[str, Any], seen: set[str]) -> bool:
    """Whether this resource was read already (by ``Type/id``; one without an id never is)."""
    rid = resource.get("id")
    if type(rid) is not str or not rid:
        return False
    ref = f"{rtype}/{rid}"
    if ref in out.ids or ref in seen:
        return True
    out.ids.add(ref)
    return False


def read_chart(prefetch: ResolvedPrefetch, patient_id: str) -> ChartReading:
    """The chart of ``patient_id`` as the prefetch holds it (see the module doc). Nothing here
    raises on malformed FHIR: what cannot be read is skipped (labs: noted as unusable).
    ``patient_id`` empty: no identity screen (there is no patient to screen for)."""
    data = prefetch.data
    identity = _Identity(patient_id, data) if patient_id else None
    budget = _TextBudget()
    unavailable = dict(prefetch.unavailable)
    other_patient: dict[str, int] = {}
    seen: set[str] = set()
    readings: list[_KeyReading] = []
    for key, value in data.items():
        reading = _read_key(key, value, identity, seen, budget)
        if reading.foreign:
            other_patient[key] = reading.foreign
            if not reading.names_patient:  # nothing in it is this patient's: none of it is used
                unavailable[key] = OTHER_PATIENT
                continue
        seen |= reading.ids
        readings.append(reading)
    return _combine(patient_id, readings, budget, prefetch.incomplete, unavailable, other_patient)


def _combine(
    patient_id: str,
    readings: list[_KeyReading],
    budget: _TextBudget,
    incomplete_as_resolved: Mapping[str, str],
    unavailable: dict[str, str],
    other_patient: dict[str, int],
) -> ChartReading:
    """The keys' readings as one chart: labs normalised newest first, orders classified with
    every Medication of the prefetch known."""
    candidates: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    conditions: list[ConditionFact | dict[str, Any]] = []
    allergies: list[AllergyFact] = []
    catalog = ResourceIndex()
    birth_date: date | None = None
    for reading in readings:
        for analyte, loinc, resource in reading.candidates:
            candidates.setdefault(analyte, []).append((loinc, resource))
        conditions.extend(reading.conditions)
        allergies.extend(reading.allergies)
        for full_url, medication in reading.medications:
            catalog.add(medication, full_url)
        for patient in reading.patients:
            birth_date = birth_date or _birth_date(patient, patient_id)
    orders: list[MedicationOrder] = []
    for reading in readings:
        for resource in reading.orders:
            if budget.exhausted():
                reading.unread += 1
                continue
            order = classify_medication(resource, catalog)
            if order is not None:
                orders.append(order)
    incomplete = dict(incomplete_as_resolved)
    for reading in readings:
        if reading.unread:
            incomplete.setdefault(
                reading.key, f"{reading.unread} entries not read: the text budget of one call was spent"
            )
    labs: dict[str, tuple[LabResult, ...]] = {}
    unusable: list[UnusableLab] = []
    for analyte in sorted(candidates, key=_ANALYTE_ORDER.__getitem__):  # whatever order they came in
        series, skipped = newest_series(analyte, candidates[analyte])
        if series:
            labs[analyte] = series
        unusable.extend(skipped)
    return ChartReading(
        patient_id=patient_id,
        labs=labs,
        unusable_labs=tuple(unusable),
        conditions=tuple(conditions),
        allergies=tuple(allergies),
        orders=tuple(orders),
        medication_catalog=catalog.as_mapping(),
        birth_date=birth_date,
        unavailable=unavailable,
        incomplete=incomplete,
        other_patient=other_patient,
    )


def _birth_date(resource: Mapping[str, Any], patient_id: str) -> date | None:
    """Patient.birthDate of this patient's record (a full date; a year or month alone is not
    precise enough to tell an age threshold)."""
    if not patient_id or resource.get("id") != patient_id:
        return None
    value = resource.get("birthDate")
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def screened(prefetch: ResolvedPrefetch, patient_id: str) -> ResolvedPrefetch:
    """``prefetch`` with every resource about another patient left out (a key left holding
    nothing about this patient: unavailable, ``OTHER_PATIENT``), for readers that walk the raw
    data themselves (the SMART page's history); the hook path screens in ``read_chart``."""
    if not patient_id:
        return prefetch
    identity = _Identity(patient_id, prefetch.data)
    data: dict[str, Any] = {}
    unavailable = dict(prefetch.unavailable)
    for key, value in prefetch.data.items():
        foreign: set[int] = set()
        names = False
        for _, resource in iter_resources(value):
            about, positively = identity.about(resource)
            if not about:
                foreign.add(id(resource))
            names = names or positively
        if not foreign:
            data[key] = value
        elif names:
            data[key] = _without(value, foreign)
        else:
            unavailable[key] = OTHER_PATIENT
    return ResolvedPrefetch(data, unavailable, dict(prefetch.incomplete), prefetch.fetched)


def _without(value: Any, dropped: set[int]) -> Any:
    """A copy of a Bundle (nested Bundles walked) without the resources whose ``id()`` is in
    ``dropped``; any other value as it is."""
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        return value
    entries = []
    for entry in as_list(value.get("entry")):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and id(resource) in dropped:
            continue
        if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            entry = {**entry, "resource": _without(resource, dropped)}
        entries.append(entry)
    return {**value, "entry": entries}


# --------------------------------------------------------------------------------------------
# A body too large to hold decoded: its entries sieved as they are decoded
# --------------------------------------------------------------------------------------------


class EntrySieve:
    """Keeps, of the entries of a prefetch Bundle offered one at a time as a very large body is
    decoded (``http.decoding``), every entry ``read_chart`` could use, so that the rest need never
    be held: memory then follows what the checks read, not the size of the chart.

    Kept: every entry that is not an Observation plainly about this patient (any other resource,
    and any Observation whose ``subject`` is not ``Patient/<id>``: ``read_chart`` screens those);
    per key, its first Observation of this patient when nothing else kept is plainly theirs (so
    that a key mixing this patient's data with another's is still read as theirs, as it would be
    whole); and, per analyte across the keys, exactly the Observations ``newest_series`` could
    reach: the newest usable ones, as many as the checks read (a resource sent twice counted
    once), and the unusable ones newer than the oldest of those. Dropped: this patient's
    Observations of codes or statuses no check reads, and the older results of each analyte.
    Reading the kept entries gives the reading of the whole Bundles
    (``tests/patient/test_chart_reading.py`` holds it to that, on generated charts)."""

    def __init__(self, patient_id: str):
        self.own = "Patient/" + patient_id
        self._kept: dict[str, list[tuple[int, Any]]] = {}
        self._series: dict[str, _SeriesSieve] = {}  # per analyte, across keys (as read_chart reads)
        self._witness: dict[str, tuple[int, Any]] = {}  # key -> its first Observation of this patient
        self._seq = 0

    @property
    def exact(self) -> bool:
        """False once something left out may have been needed after all (two versions of one
        Observation: ``_SeriesSieve.offer``); the body must then be read whole."""
        return all(series.exact for series in self._series.values())

    def offer(self, key: str, entry: Any) -> None:
        self._seq += 1
        kept = self._kept.setdefault(key, [])
        resource = entry.get("resource") if type(entry) is dict else None
        search = entry.get("search") if type(entry) is dict else None
        if (
            type(resource) is not dict
            or resource.get("resourceType") != "Observation"
            or (isinstance(search, dict) and search.get("mode") == "outcome")  # never read: kept as sent
        ):
            kept.append((self._seq, entry))
            return
        if not _plainly_about(resource, self.own):
            kept.append((self._seq, entry))  # another patient's, or named another way: screened when read
            return
        if key not in self._witness:  # says whose the key is, should nothing else kept say so
            self._witness[key] = (self._seq, entry)
        selected = observation_analyte(resource) if _usable_status(resource) else None
        if selected is None:  # no check reads it
            return
        series = self._series.get(selected[0])
        if series is None:
            series = self._series[selected[0]] = _SeriesSieve(selected[0])
        series.offer(key, self._seq, entry, resource, selected[1])

    def kept(self, key: str) -> list[Any]:
        """The entries of ``key`` kept, in the order they were offered (asked once its entries
        are all offered; a later key may still outrank some of them: they are then kept in vain,
        never missed)."""
        kept = list(self._kept.pop(key, []))
        for series in self._series.values():
            kept.extend(series.kept(key))
        witness = self._witness.pop(key, None)
        if witness is not None and not any(self._plainly_own(entry) for _, entry in kept):
            # A key of this patient's results left out and of someone else's data: the first of
            # them stays, so the key is still read as this patient's (never as a result: it is
            # behind every result the checks read, or of a code they do not read).
            kept.append(witness)
        kept.sort(key=itemgetter(0))
        return [entry for _, entry in kept]

    def _plainly_own(self, entry: Any) -> bool:
        resource = entry.get("resource") if type(entry) is dict else None
        return type(resource) is dict and _plainly_about(resource, self.own)


class _SeriesSieve:
    """One analyte's Observations across the keys, in ``newest_series``'s order (newest first,
    undated last, then the order sent): the ``depth`` first usable ones, and the unusable ones
    ahead of the last of them. A resource sent twice counts once, at its first place in that
    order (as ``newest_series`` takes it); its other copies are never kept."""

    def __init__(self, analyte: str):
        self.analyte = analyte
        self.depth = ANALYTES[analyte].series
        # place -> (key, entry); a place is (order, seq): comparable, unique per offer.
        self.usable: dict[tuple[tuple[int, float], int], tuple[str, Any]] = {}
        self.unusable: dict[tuple[tuple[int, float], int], tuple[str, Any]] = {}
        self.place_of: dict[str, tuple[tuple[int, float], int]] = {}  # resource id -> its place kept
        self.exact = True  # False: something it left out may have been needed (see offer)

    def _threshold(self) -> tuple[tuple[int, float], int] | None:
        """The place of the last usable result the checks could read (None: fewer than that yet)."""
        return max(self.usable) if len(self.usable) >= self.depth else None

    def offer(self, key: str, seq: int, entry: Any, resource: dict[str, Any], loinc: str) -> None:
        effective = observation_effective(resource)
        place = (_newest_first(effective), seq)
        threshold = self._threshold()
        if threshold is not None and place > threshold:
            return  # behind every result the checks could read
        rid = resource_key(resource)
        displaced_usable = False
        if rid is not None and rid in self.place_of:
            earlier = self.place_of[rid]
            if earlier < place:
                return  # a copy behind the one kept: never reached
            # This copy comes first: the one kept is never reached.
            displaced_usable = self.usable.pop(earlier, None) is not None
            self.unusable.pop(earlier, None)
        if rid is not None:
            self.place_of[rid] = place
        if isinstance(lab_result(resource, self.analyte, loinc, effective), UnusableLab):
            self.unusable[place] = (key, entry)
            if displaced_usable:
                # A usable result gave way to an unusable copy of itself (two versions of one
                # resource): the last place the checks could read moves back, past results
                # already left out. Rare; the sieve says so and the body is read whole.
                self.exact = False
            return
        self.usable[place] = (key, entry)
        if len(self.usable) > self.depth:
            del self.usable[max(self.usable)]

    def kept(self, key: str) -> list[tuple[int, Any]]:
        threshold = self._threshold()
        kept = [(place[1], entry) for place, (of, entry) in self.usable.items() if of == key]
        kept += [
            (place[1], entry)
            for place, (of, entry) in self.unusable.items()
            if of == key and (threshold is None or place < threshold)
        ]
        return kept
