"""The patient as the checks see it: one immutable record per hook call.

``build_record`` (below the types) reads the raw JSON of ``context`` and the resolved prefetch,
selects the resources that matter by type and code *before* any model validation, normalises
lab units, classifies medications and conditions, and returns a ``PatientRecord``. The checks
are pure functions of this record and the orders under review.

Canonical units (every ``LabResult.value`` is in these):
calcium mg/dL, corrected_calcium mg/dL, ionized_calcium mmol/L, albumin g/dL, phosphate mg/dL,
pth pg/mL, crp mg/L, egfr mL/min/{1.73_m2}.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

CANONICAL_UNITS: dict[str, str] = {
    "calcium": "mg/dL",
    "corrected_calcium": "mg/dL",
    "ionized_calcium": "mmol/L",
    "albumin": "g/dL",
    "phosphate": "mg/dL",
    "pth": "pg/mL",
    "crp": "mg/L",
    "egfr": "mL/min/{1.73_m2}",
}


@dataclass(frozen=True)
class LabResult:
    """One final/amended/corrected Observation, normalised to the analyte's canonical unit."""

    analyte: str  # key of terminology.LAB_LOINC / CANONICAL_UNITS
    value: float  # in CANONICAL_UNITS[analyte]
    unit: str  # == CANONICAL_UNITS[analyte]
    original_value: float
    original_unit: str
    effective: datetime | None  # effectiveDateTime / effectivePeriod.start / issued
    resource_id: str  # "Observation/<id>"
    loinc: str
    status: str
    comparator: str | None = None  # "<", "<=", ">=", ">" when the lab reported one (eGFR ">60")


@dataclass(frozen=True)
class CorrectedCalcium:
    """The calcium value a rule uses, and how it was obtained (cards must say which)."""

    value: float  # mg/dL
    method: Literal["corrected", "measured", "reported-corrected"]
    calcium: LabResult  # the total (or lab-reported corrected) calcium it came from
    albumin: LabResult | None = None  # the albumin used for the Payne correction, if any


@dataclass(frozen=True)
class ConditionFact:
    """A Condition (or Procedure) that puts the patient in or out of scope."""

    kind: Literal["calciphylaxis", "kidney_failure", "dialysis", "atrial_fibrillation", "prosthetic_valve"]
    resource_id: str  # "Condition/<id>" or "Procedure/<id>"
    display: str  # what to show a clinician (coding display or text)
    matched_by: Literal["code", "text"]
    code: str | None = None
    system: str | None = None
    clinical_status: str | None = None
    verification_status: str | None = None
    recorded: datetime | None = None  # onset / recordedDate / performed, when known


@dataclass(frozen=True)
class MedicationOrder:
    """A MedicationRequest (R4/R5) or MedicationOrder (DSTU2), classified by drug class."""

    resource_id: str  # "MedicationRequest/<id>"
    resource_type: str  # "MedicationRequest" | "MedicationOrder"
    status: str | None
    drug_name: str  # best human name (coding display, text, or Medication.code)
    drug_classes: frozenset[str]  # e.g. {"calcium_binder"}; empty when nothing matched
    matched_by: Literal["code", "text", "none"]
    matched_code: str | None = None  # "system|code" that matched, when by code
    authored: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# Drug classes the classifier assigns (terminology.py maps codes and names to these).
DRUG_CLASSES = (
    "calcium_binder",  # calcium-based phosphate binders and other calcium salts (a calcium load)
    "vka",  # warfarin, acenocoumarol, phenprocoumon, phenindione
    "active_vitamin_d",  # calcitriol, alfacalcidol, paricalcitol, doxercalciferol, calcifediol
    "nutritional_vitamin_d",  # cholecalciferol, ergocalciferol: NOT active sterols
    "non_calcium_binder",  # sevelamer, lanthanum, ferric citrate, sucroferric oxyhydroxide
    "aluminium_binder",
    "doac",  # apixaban, rivaroxaban
    "calcimimetic",  # cinacalcet, etelcalcetide
    "sodium_thiosulfate",
    "iron",
    "magnesium",
)


@dataclass(frozen=True)
class UnusableLab:
    """A lab Observation of a known analyte that could not be used, and why (cards may say so)."""

    analyte: str
    resource_id: str
    reason: str  # e.g. "unit 'mEq/L' cannot be converted to mg/dL"


@dataclass(frozen=True)
class CalciumPhosphateProduct:
    """Ca x P in mg2/dL2 and the two results it multiplies."""

    value: float  # mg2/dL2
    calcium: CorrectedCalcium  # the calcium value used (corrected when possible; says which)
    phosphate: LabResult


# A result older than this is stale: the checks say so rather than act on it silently. From the
# monitoring intervals in clinical-rules.md (seeds 000, 001, 004): calcium and phosphate monthly
# once stable -> 35 days (a month plus a few days for scheduling); PTH every 3 months -> 93 days.
# Albumin is only used beside a calcium, so it ages like calcium. CRP and eGFR have no interval in
# the seeds, so they are never flagged (absent from the mapping).
STALE_AFTER: dict[str, timedelta] = {
    "calcium": timedelta(days=35),
    "corrected_calcium": timedelta(days=35),
    "ionized_calcium": timedelta(days=35),
    "albumin": timedelta(days=35),
    "phosphate": timedelta(days=35),
    "pth": timedelta(days=93),
}


@dataclass(frozen=True)
class PatientRecord:
    patient_id: str
    now: datetime
    conditions: tuple[ConditionFact, ...] = ()
    # Active / on-hold medications already on the chart (prefetch), not the drafts under review.
    medications: tuple[MedicationOrder, ...] = ()
    # Newest first, final/amended/corrected only, per analyte key.
    labs: dict[str, tuple[LabResult, ...]] = field(default_factory=dict)
    # Prefetch keys whose data could not be obtained: cards say what could not be checked.
    unavailable: dict[str, str] = field(default_factory=dict)
    # Prefetch keys whose data was read only in part (a later page or a referenced Medication
    # could not be read): the checks use what was read and the cards say it is partial.
    incomplete: dict[str, str] = field(default_factory=dict)
    # Final lab results of a known analyte that could not be used (unknown unit, no value ...).
    unusable_labs: tuple[UnusableLab, ...] = ()
    # Medication resources found in the prefetch (by "Medication/id", fullUrl, urn:uuid), so that
    # draft orders referring to them can be classified.
    medication_catalog: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def conditions_of(self, kind: str) -> tuple[ConditionFact, ...]:
        return tuple(c for c in self.conditions if c.kind == kind)

    @property
    def has_calciphylaxis(self) -> bool:
        return bool(self.conditions_of("calciphylaxis"))

    @property
    def on_dialysis(self) -> bool:
        """Kidney failure / dialysis by condition or procedure, or latest eGFR < 15."""
        if self.conditions_of("kidney_failure") or self.conditions_of("dialysis"):
            return True
        egfr = self.latest("egfr")
        return egfr is not None and egfr.value < 15

    def latest(self, analyte: str) -> LabResult | None:
        series = self.labs.get(analyte) or ()
        return series[0] if series else None

    # --- staleness -------------------------------------------------------------------------

    @staticmethod
    def stale_after(analyte: str) -> timedelta | None:
        """The monitoring interval after which a result of ``analyte`` is stale (None: never)."""
        return STALE_AFTER.get(analyte)

    def age(self, lab: LabResult) -> timedelta | None:
        return None if lab.effective is None else self.now - lab.effective

    def is_stale(self, lab: LabResult | str | None) -> bool:
        """Whether a result (or the latest of an analyte) is older than its monitoring interval.

        A result with no date is stale (its age cannot be shown); a missing result is not stale
        (it is missing: check ``latest`` for ``None``).
        """
        if isinstance(lab, str):
            lab = self.latest(lab)
        if lab is None:
            return False
        limit = STALE_AFTER.get(lab.analyte)
        if limit is None:
            return False
        age = self.age(lab)
        return age is None or age > limit

    # --- derived values --------------------------------------------------------------------

    def corrected_calcium(self) -> CorrectedCalcium | None:
        """The calcium value the rules use, in mg/dL, and how it was obtained.

        A lab-reported albumin-corrected calcium (LOINC 29265-6) when it is at least as recent as
        the latest total calcium; else Payne from the latest total calcium and the albumin drawn
        nearest to it within ``units.ALBUMIN_PAIRING_WINDOW``; else the measured total calcium.
        """
        return _corrected_calcium(self)

    def ca_x_p(self) -> CalciumPhosphateProduct | None:
        """Ca x P (mg2/dL2) from the corrected calcium and the latest phosphate, when both were
        drawn within ``units.CA_X_P_PAIRING_WINDOW`` of each other; else ``None``."""
        return _ca_x_p(self)


@dataclass(frozen=True)
class OrderUnderReview:
    """A medication order the hook asks about: a draft (order hooks) or an active one (patient-view)."""

    order: MedicationOrder
    is_draft: bool  # True: suggestions delete it; False: suggestions stop it (update status)


# ============================================================================================
# Building the record (below the types, so classify.py can import them)
# ============================================================================================

from cds_service import classify as _classify  # noqa: E402  (needs the types above)
from cds_service import terminology as _term  # noqa: E402
from cds_service import units as _units  # noqa: E402

# Observation statuses whose values may be acted on.
USABLE_OBSERVATION_STATUSES = frozenset({"final", "amended", "corrected"})
# Medication statuses that make an order count (patient-view: on the chart; order hooks: drafts).
ACTIVE_MEDICATION_STATUSES = frozenset({"active", "on-hold"})
# Never under review, whatever the hook.
CLOSED_MEDICATION_STATUSES = frozenset({"stopped", "completed", "cancelled", "entered-in-error"})


def _iter_resources(value: Any):
    """(fullUrl, resource) for a prefetch value: a resource, a Bundle of them, or nothing."""
    if not isinstance(value, dict):
        return
    rtype = value.get("resourceType")
    if rtype == "Bundle":
        for entry in _classify.as_list(value.get("entry")):
            if not isinstance(entry, dict):
                continue
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                continue
            search = entry.get("search")
            if isinstance(search, dict) and search.get("mode") == "outcome":
                continue
            if resource.get("resourceType") == "Bundle":  # e.g. a batch-response
                yield from _iter_resources(resource)
            else:
                full_url = entry.get("fullUrl")
                yield (full_url if isinstance(full_url, str) else None), resource
    elif isinstance(rtype, str) and rtype != "OperationOutcome":
        yield None, value


def _observation_effective(resource: dict[str, Any]) -> datetime | None:
    period = resource.get("effectivePeriod")
    return (
        _classify.parse_fhir_datetime(resource.get("effectiveDateTime"))
        or (_classify.parse_fhir_datetime(period.get("start")) if isinstance(period, dict) else None)
        or _classify.parse_fhir_datetime(resource.get("effectiveInstant"))
        or _classify.parse_fhir_datetime(resource.get("issued"))
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
        analyte = _term.LOINC_TO_ANALYTE.get(value) if isinstance(value, str) else None
        if analyte is not None and _term.canonical_system(coding.get("system")) == _term.LOINC:
            return analyte, value
    return None


def _lab_result(
    resource: dict[str, Any], analyte: str, loinc: str, status: str, effective: datetime | None
) -> LabResult | UnusableLab:
    rid = _classify.resource_key(resource) or "Observation"
    quantity = resource.get("valueQuantity")
    canonical = CANONICAL_UNITS[analyte]
    if not isinstance(quantity, dict) or not _units.is_number(quantity.get("value")):
        return UnusableLab(analyte, rid, "no numeric valueQuantity")
    normalised = _units.to_canonical(quantity, analyte)
    if normalised is None:
        unit = _units.quantity_unit(quantity) or "(none)"
        return UnusableLab(analyte, rid, f"unit '{unit}' cannot be converted to {canonical}")
    return LabResult(
        analyte=analyte,
        value=normalised.value,
        unit=canonical,
        original_value=normalised.original_value,
        original_unit=normalised.original_unit,
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


# Every rule reads only recent results (the latest value, two consecutive PTH results, an albumin
# drawn near the calcium), so each analyte keeps its newest usable results only. Units are
# normalised for those alone: a chart with 10,000 Observations then costs little more to read
# than one with 50.
SERIES_LIMIT = 12


def _newest_series(
    candidates: list[tuple[datetime | None, dict[str, Any], str, str]], analyte: str
) -> tuple[tuple[LabResult, ...], list[UnusableLab]]:
    """Normalise ``analyte``'s candidates newest first until SERIES_LIMIT are usable."""
    candidates.sort(key=lambda c: _newest_first(c[0]))
    series: list[LabResult] = []
    unusable: list[UnusableLab] = []
    for effective, resource, loinc, status in candidates:
        result = _lab_result(resource, analyte, loinc, status, effective)
        if isinstance(result, LabResult):
            series.append(result)
            if len(series) == SERIES_LIMIT:
                break
        else:
            unusable.append(result)
    return tuple(series), unusable


def build_record(context: dict, prefetch: Any, now: datetime) -> PatientRecord:
    """One immutable ``PatientRecord`` from a hook's ``context`` and resolved prefetch.

    Resources are selected by type (and Observations by LOINC code) from the raw JSON before
    anything else is read, so a large prefetch costs little more than decoding it. Nothing here
    raises on malformed FHIR: what cannot be read is skipped (labs: noted in ``unusable_labs``).
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

    seen: set[str] = set()
    # analyte -> (effective, Observation, LOINC, status): selected by code and status only.
    lab_candidates: dict[str, list[tuple[datetime | None, dict[str, Any], str, str]]] = {}
    unusable: list[UnusableLab] = []
    conditions: list[ConditionFact] = []
    order_resources: list[dict[str, Any]] = []
    catalog = _classify.ResourceIndex()

    for value in data.values():
        for full_url, resource in _iter_resources(value):
            rtype = resource.get("resourceType")
            if not isinstance(rtype, str) or rtype not in _RELEVANT_TYPES:
                continue
            key = _classify.resource_key(resource)
            if key is not None:
                if key in seen:  # the same resource under two prefetch keys
                    continue
                seen.add(key)
            if rtype == "Observation":
                status = resource.get("status")
                if not isinstance(status, str) or status not in USABLE_OBSERVATION_STATUSES:
                    continue
                selected = _observation_analyte(resource)
                if selected is None:
                    continue
                analyte, loinc = selected
                lab_candidates.setdefault(analyte, []).append(
                    (_observation_effective(resource), resource, loinc, status)
                )
            elif rtype == "Condition":
                conditions.extend(_classify.classify_condition(resource))
            elif rtype == "Procedure":
                fact = _classify.classify_procedure(resource, now)
                if fact is not None:
                    conditions.append(fact)
            elif rtype == "Medication":
                catalog.add(resource, full_url)
            else:  # MedicationRequest / MedicationOrder
                order_resources.append(resource)

    labs: dict[str, tuple[LabResult, ...]] = {}
    for analyte, candidates in lab_candidates.items():
        series, skipped = _newest_series(candidates, analyte)
        if series:
            labs[analyte] = series
        unusable.extend(skipped)

    medications: list[MedicationOrder] = []
    for resource in order_resources:
        status = _classify.status_code(resource.get("status"))
        if status not in ACTIVE_MEDICATION_STATUSES:
            continue
        order = _classify.classify_medication(resource, catalog)
        if order is not None:
            medications.append(order)

    patient_id = context.get("patientId")
    return PatientRecord(
        patient_id=patient_id if isinstance(patient_id, str) else "",
        now=now,
        conditions=tuple(conditions),
        medications=tuple(medications),
        labs=labs,
        unavailable=unavailable,
        incomplete=incomplete,
        unusable_labs=tuple(unusable),
        medication_catalog=catalog.as_mapping(),
    )


_RELEVANT_TYPES = frozenset(
    {"Observation", "Condition", "Procedure", "Medication", "MedicationRequest", "MedicationOrder"}
)


# --------------------------------------------------------------------------------------------
# Derived values
# --------------------------------------------------------------------------------------------


def _within(a: LabResult, b: LabResult, window: timedelta) -> bool:
    if a.effective is None or b.effective is None:
        return False
    return abs(a.effective - b.effective) <= window


def _corrected_calcium(record: PatientRecord) -> CorrectedCalcium | None:
    total = record.latest("calcium")
    reported = record.latest("corrected_calcium")
    if reported is not None and (
        total is None
        or (reported.effective is not None
            and (total.effective is None or reported.effective >= total.effective))
    ):
        return CorrectedCalcium(value=reported.value, method="reported-corrected", calcium=reported)
    if total is None:
        return None
    albumins = [a for a in record.labs.get("albumin", ()) if _within(a, total, _units.ALBUMIN_PAIRING_WINDOW)]
    if albumins:
        albumin = min(albumins, key=lambda a: abs(a.effective - total.effective))
        return CorrectedCalcium(
            value=_units.payne_corrected_calcium(total.value, albumin.value),
            method="corrected",
            calcium=total,
            albumin=albumin,
        )
    return CorrectedCalcium(value=total.value, method="measured", calcium=total)


def _ca_x_p(record: PatientRecord) -> CalciumPhosphateProduct | None:
    calcium = record.corrected_calcium()
    phosphate = record.latest("phosphate")
    if calcium is None or phosphate is None:
        return None
    if not _within(calcium.calcium, phosphate, _units.CA_X_P_PAIRING_WINDOW):
        return None
    return CalciumPhosphateProduct(
        value=_units.calcium_phosphate_product(calcium.value, phosphate.value),
        calcium=calcium,
        phosphate=phosphate,
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


def orders_under_review(hook: str, context: dict, record: PatientRecord) -> tuple[OrderUnderReview, ...]:
    """The medication orders a hook asks about.

    * order-select: the MedicationRequests / MedicationOrders of ``context.draftOrders`` named in
      ``context.selections`` ("MedicationRequest/id"; bare ids tolerated);
    * order-sign: every medication draft in ``context.draftOrders`` (any status that is not
      stopped / completed / cancelled / entered-in-error, e.g. a re-signed active order);
    * patient-view: the active / on-hold medications from the prefetch (``is_draft=False``).

    Non-medication drafts, drafts naming no medication and malformed entries are skipped.
    """
    if hook == "patient-view":
        return tuple(OrderUnderReview(order=m, is_draft=False) for m in record.medications)
    if hook not in ("order-select", "order-sign"):
        return ()
    context = context if isinstance(context, dict) else {}
    drafts = list(_iter_resources(context.get("draftOrders")))
    index = _classify.ResourceIndex()
    index.update(record.medication_catalog)
    for full_url, resource in drafts:
        if resource.get("resourceType") == "Medication":
            index.add(resource, full_url)

    typed, bare = _selected_ids(context.get("selections")) if hook == "order-select" else (set(), set())
    out: list[OrderUnderReview] = []
    for _full_url, resource in drafts:
        if not _classify.is_medication_order(resource):
            continue
        if hook == "order-select":
            key = _classify.resource_key(resource)
            rid = resource.get("id")
            if key not in typed and not (isinstance(rid, str) and rid in bare):
                continue
        status = _classify.status_code(resource.get("status"))
        if status in CLOSED_MEDICATION_STATUSES:
            continue
        order = _classify.classify_medication(resource, index)
        if order is not None:
            out.append(OrderUnderReview(order=order, is_draft=True))
    return tuple(out)

