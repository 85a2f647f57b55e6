"""What the companion page shows, read from the EHR's FHIR server with the session's token.

One resolver call (``PrefetchResolver``: trusted server only, deadline, size caps, pages, the
patient screening that drops any resource about another patient) fetches two sets of keys:

* the patient-view service's own prefetch keys, unchanged (``services.SERVICES``): the engine
  runs on exactly these, as on a patient-view hook call, so the page's rule conclusions are the
  cards the service would send, with the same evidence, conflicts and "not checked" lines;
* the history the charts need: every calcium, albumin, phosphate, PTH and CRP result of the last
  12 months, every medication order and home-list entry (any status), and the doses given in
  the last 12 months.

Nothing here decides anything clinical. Results are read and normalised by the record builder's
own reader (``chart.read_lab``); corrected calcium and Ca x P at each point in time are the
engine's ``corrected_calcium`` and ``ca_x_p`` applied to the results known at that time; in or
out of target is M1's ``position``; drugs are classified by ``classify_medication``; order
spans by ``order_span``; the dialysis modality by ``dialysis_modality``.

The FHIR resource types read, and so the scopes the app asks for, follow from these keys
(``RESOURCE_TYPES``, ``SCOPE``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cds_service import engine
from cds_service.checks import CHART_RULES, ORDER_RULES, RULE_INCOMPLETE
from cds_service.checks.findings import LabValue
from cds_service.checks.labs import ca_x_p, corrected_calcium, shown
from cds_service.checks.m1_mineral_status import DIALYSIS_TARGETS, position
from cds_service.checks.modality import DialysisModality, dialysis_modality
from cds_service.checks.order_timing import order_span
from cds_service.fhir.prefetch import ResolvedPrefetch
from cds_service.fhir.reading import ResourceIndex, iter_resources
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.fhir.templates import PrefetchKey, shape_of
from cds_service.knowledge.content import content
from cds_service.patient import chart as chart_reading
from cds_service.patient.analytes import ANALYTES
from cds_service.patient.build import build_record, patient_view_exposures
from cds_service.patient.classify import classify_medication
from cds_service.patient.model import LabResult, MedicationOrder, PatientRecord
from cds_service.patient.terminology import LOINC
from cds_service.protocol import Card, CDSRequest, FhirAuthorization
from cds_service.services import SERVICES

SERVICE = SERVICES["calciphylaxis-patient-view"]
WINDOW = timedelta(days=365)
# Results charted (read over WINDOW), in the order the page shows them.
HISTORY_ANALYTES = ("calcium", "corrected_calcium", "ionized_calcium", "albumin", "phosphate", "pth", "crp")

HISTORY_LABS = "history_labs"
HISTORY_ORDERS = "history_orders"
HISTORY_STATEMENTS = "history_statements"
HISTORY_GIVEN = "history_given"

# The drugs the rules watch, and the substitutes they offer: the rows of the medication timeline.
TRIGGER_CLASSES = ("calcium_binder", "vka", "active_vitamin_d", "iron", "aluminium_binder", "calcimimetic")
SUBSTITUTE_CLASSES = ("non_calcium_binder", "doac", "sodium_thiosulfate")
TIMELINE_CLASSES = TRIGGER_CLASSES + SUBSTITUTE_CLASSES
CLOSED_STATUSES = frozenset({"stopped", "completed", "cancelled", "entered-in-error", "not-taken"})


def history_keys(since: date) -> dict[str, PrefetchKey]:
    """The history the charts and the timeline need, from ``since`` (a date: one set of keys a day)."""
    codes = sorted(code for key in HISTORY_ANALYTES for code in ANALYTES[key].loinc | ANALYTES[key].extra_loinc)
    code_param = ",".join(f"{LOINC}|{code}" for code in codes)
    patient = "{{context.patientId}}"
    return {
        HISTORY_LABS: PrefetchKey(
            f"Observation?patient={patient}&code={code_param}&date=ge{since.isoformat()}&_sort=-date&_count=200",
            "calcium, albumin, phosphate, PTH and CRP results of the last 12 months",
        ),
        HISTORY_ORDERS: PrefetchKey(f"MedicationRequest?patient={patient}&_count=100", "medication orders, any status"),
        HISTORY_STATEMENTS: PrefetchKey(
            f"MedicationStatement?patient={patient}&_count=100", "the home medication list, any status"
        ),
        HISTORY_GIVEN: PrefetchKey(
            f"MedicationAdministration?patient={patient}&effective-time=ge{since.isoformat()}"
            "&_sort=-effective-time&_count=200",
            "doses given in the last 12 months",
        ),
    }


def _resource_types() -> tuple[str, ...]:
    keys = {**SERVICE.prefetch, **history_keys(date(2000, 1, 1))}
    types = {shape_of(spec).resource_type for spec in keys.values()}
    # Medications that orders name by reference are read too (the resolver's follow-up reads).
    return tuple(sorted(types | {"Medication"}))


RESOURCE_TYPES = _resource_types()
# SMART 2.0 scopes: the EHR launch context and read + search of exactly these types.
SCOPE = " ".join(("launch", *(f"patient/{rtype}.rs" for rtype in RESOURCE_TYPES)))


# --------------------------------------------------------------------------------------------
# What the page shows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One charted value: the value as the cards show it (rounded), and where it came from."""

    when: datetime
    value: float
    unit: str
    comparator: str | None
    status: str  # "low" | "high" | "in_range" | "" (no target applied)
    method: str  # measured | corrected | reported-corrected | computed
    sources: tuple[str, ...]
    note: str = ""  # e.g. "albumin-corrected from total calcium 9.4 mg/dL, albumin 3.6 g/dL"


@dataclass(frozen=True)
class Series:
    analyte: str
    points: tuple[Point, ...]  # oldest first


@dataclass(frozen=True)
class TimelineItem:
    """One order or home-list entry (a bar), or one dose given (a mark), of a watched drug."""

    kind: str  # "request" | "statement" | "administration"
    drug: str
    drug_class: str
    status: str
    start: datetime | None
    end: datetime | None  # None: ongoing (open) or not recorded (see ``ongoing``)
    ongoing: bool
    resource_id: str
    dose: str = ""
    end_field: str = ""  # the element the end was read from


@dataclass(frozen=True)
class RuleConclusion:
    """What one rule concluded on today's data: its cards, or why it had nothing to say."""

    name: str  # artifact name (c1_calcium_binders ...)
    topic: str  # the rule's topic id (cards/common.toml [topics])
    cards: tuple[Card, ...]
    checked: tuple[str, ...] = ()  # drugs of its class on the chart today (order rules)
    quiet_reason: str = ""  # "no_drug" | "nothing_to_flag" | "no_calciphylaxis" | "complete"


@dataclass(frozen=True)
class PatientBanner:
    name: str
    birth_date: str
    gender: str


@dataclass(frozen=True)
class ChartView:
    now: datetime
    since: datetime
    patient: PatientBanner | None
    record: PatientRecord
    cards: tuple[Card, ...]
    conclusions: tuple[RuleConclusion, ...]
    series: Mapping[str, Series]
    unusable: Mapping[str, int]  # analyte -> results that could not be read
    timeline: tuple[TimelineItem, ...]
    modality: DialysisModality
    unavailable: Mapping[str, str]  # what could not be read (key -> reason), history keys included
    incomplete: Mapping[str, str]
    descriptions: Mapping[str, str] = field(default_factory=dict)  # key -> what it is, for the page

    @property
    def thiosulfate(self) -> tuple[TimelineItem, ...]:
        return tuple(i for i in self.timeline if i.drug_class == "sodium_thiosulfate")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_chart(
    resolver: PrefetchResolver,
    *,
    iss: str,
    access_token: str,
    scope: str,
    client_id: str,
    patient: str,
    now: datetime,
    evaluate: Callable[[engine.HookCall], list[Card]] = engine.evaluate,
) -> ChartView:
    """Fetch the patient's data with the session's token and build what the page shows."""
    since_day = (now - WINDOW).date()
    keys: dict[str, PrefetchKey] = {key: replace(spec, required=False) for key, spec in SERVICE.prefetch.items()}
    history = history_keys(since_day)
    keys.update(history)
    request = CDSRequest(
        hook=SERVICE.hook,
        hookInstance=str(uuid.uuid4()),
        fhirServer=iss,
        fhirAuthorization=FhirAuthorization(
            access_token=access_token,
            token_type="Bearer",
            expires_in=300,
            scope=scope,
            subject=client_id,
            patient=patient,
        ),
        context={"patientId": patient},
    )
    resolved = resolver.resolve(request, keys)
    chart = chart_reading.read_chart(_only(resolved, SERVICE.prefetch), patient)  # screened as a hook call is
    resolved = chart_reading.screened(resolved, patient)  # the history keys, read below resource by resource
    context = {"patientId": patient}
    cards = tuple(
        evaluate(
            engine.HookCall(
                service_id=SERVICE.id,
                hook=SERVICE.hook,
                hook_instance=request.hookInstance,
                context=context,
                chart=chart,
                now=now,
            )
        )
    )
    record = build_record(context, chart, now)
    since = datetime.combine(since_day, datetime.min.time(), tzinfo=UTC)
    labs, unusable = _history_labs(resolved.data.get(HISTORY_LABS), since, now)
    if HISTORY_LABS in resolved.unavailable:  # the service's own (shorter) series, at least
        labs = {
            k: tuple(r for r in v if r.effective is not None and r.effective >= since) for k, v in record.labs.items()
        }
    timeline = _timeline(resolved, now, since)
    return ChartView(
        now=now,
        since=since,
        patient=_banner(resolved.data.get("patient"), patient),
        record=record,
        cards=cards,
        conclusions=_conclusions(record, cards),
        series=_series(record, labs),
        unusable=unusable,
        timeline=timeline,
        modality=dialysis_modality(record),
        unavailable=dict(resolved.unavailable),
        incomplete=dict(resolved.incomplete),
        descriptions={key: spec.description for key, spec in keys.items()},
    )


def _only(resolved: ResolvedPrefetch, keys: Iterable[str]) -> ResolvedPrefetch:
    """The part of ``resolved`` the service's own keys hold (what a hook call would have had)."""
    wanted = set(keys)
    return replace(
        resolved,
        data={k: v for k, v in resolved.data.items() if k in wanted},
        unavailable={k: v for k, v in resolved.unavailable.items() if k in wanted},
        incomplete={k: v for k, v in resolved.incomplete.items() if k in wanted},
        fetched=frozenset(k for k in resolved.fetched if k in wanted),
    )


def _history_labs(
    value: Any, since: datetime, now: datetime
) -> tuple[dict[str, tuple[LabResult, ...]], dict[str, int]]:
    """Usable results per analyte in the window, newest first; and unusable ones counted."""
    found: dict[str, dict[str, LabResult]] = {}
    unusable: dict[str, int] = {}
    latest = now + timedelta(days=1)
    for _, resource in iter_resources(value):
        if resource.get("resourceType") != "Observation":
            continue
        result = chart_reading.read_lab(resource)
        if result is None or result.analyte not in HISTORY_ANALYTES:
            continue
        if not isinstance(result, LabResult):
            unusable[result.analyte] = unusable.get(result.analyte, 0) + 1
            continue
        if result.effective is None or not since <= result.effective <= latest:
            continue
        found.setdefault(result.analyte, {})[result.resource_id] = result
    labs = {
        analyte: tuple(sorted(results.values(), key=lambda r: r.effective or since, reverse=True))
        for analyte, results in found.items()
    }
    return labs, unusable


def _status(analyte: str, value: LabValue, targets_applied: bool) -> str:
    if ANALYTES[analyte].target is None or (analyte in DIALYSIS_TARGETS and not targets_applied):
        return ""
    return position(value)


def _point(analyte: str, lab: LabResult, targets_applied: bool) -> Point:
    value = LabValue(
        analyte=analyte,
        value=shown(analyte, lab.value),
        unit=lab.unit,
        effective=lab.effective,
        method="measured",
        stale=False,
        comparator=lab.comparator,
    )
    note = ""
    if lab.original_unit and lab.original_unit != lab.unit:
        note = f"reported as {lab.comparator or ''}{lab.original_value:g} {lab.original_unit}"
    assert lab.effective is not None
    return Point(
        when=lab.effective,
        value=value.value,
        unit=lab.unit,
        comparator=lab.comparator,
        status=_status(analyte, value, targets_applied),
        method="reported-corrected" if analyte == "corrected_calcium" else "measured",
        sources=(lab.resource_id,),
        note=note,
    )


def _at(record: PatientRecord, labs: Mapping[str, tuple[LabResult, ...]], when: datetime) -> PatientRecord:
    """The record as it stood at ``when``: calcium, corrected calcium and phosphate drawn by
    then (albumins at any time: the engine pairs the nearest within its window either side)."""
    upto = {
        analyte: tuple(r for r in series if r.effective is not None and r.effective <= when)
        if analyte in ("calcium", "corrected_calcium", "phosphate")
        else series
        for analyte, series in labs.items()
    }
    return replace(record, labs=upto, unusable_labs=())


def _series(record: PatientRecord, labs: Mapping[str, tuple[LabResult, ...]]) -> dict[str, Series]:
    applied = record.on_dialysis  # M1: the stage 5 / dialysis targets apply in kidney failure only
    out: dict[str, Series] = {}
    for analyte in ("calcium", "ionized_calcium", "albumin", "phosphate", "pth", "crp"):
        points = [_point(analyte, lab, applied) for lab in labs.get(analyte, ())]
        out[analyte] = Series(analyte, tuple(sorted(points, key=lambda p: p.when)))

    # Corrected calcium and Ca x P as the engine computes them, at each draw.
    corrected: dict[str, Point] = {}
    products: dict[tuple[str, str], Point] = {}
    moments = sorted(
        {r.effective for a in ("calcium", "corrected_calcium", "phosphate") for r in labs.get(a, ()) if r.effective}
    )
    for when in moments:
        then = _at(record, labs, when)
        cc = corrected_calcium(then)
        if cc is not None and cc.calcium.effective == when and cc.calcium.resource_id not in corrected:
            value = LabValue("corrected_calcium", shown("corrected_calcium", cc.value), "mg/dL", when, cc.method, False)
            note = ""
            if cc.albumin is not None:
                note = (
                    f"albumin-corrected from total calcium {shown('calcium', cc.calcium.value):g} mg/dL, "
                    f"albumin {shown('albumin', cc.albumin.value):g} g/dL"
                )
            elif cc.method == "measured":
                note = "total calcium: no albumin drawn with it, so not corrected"
            sources = (cc.calcium.resource_id,) + ((cc.albumin.resource_id,) if cc.albumin else ())
            corrected[cc.calcium.resource_id] = Point(
                when, value.value, "mg/dL", None, _status("corrected_calcium", value, applied), cc.method, sources, note
            )
        product = ca_x_p(then, cc) if cc is not None else None
        if product is not None:
            key = (product.calcium.calcium.resource_id, product.phosphate.resource_id)
            drawn = [d for d in (product.calcium.calcium.effective, product.phosphate.effective) if d is not None]
            if key not in products and drawn:
                value = LabValue(
                    "ca_x_p", shown("ca_x_p", product.value), ANALYTES["ca_x_p"].unit, max(drawn), "computed", False
                )
                products[key] = Point(
                    max(drawn),
                    value.value,
                    value.unit,
                    None,
                    _status("ca_x_p", value, applied),
                    "computed",
                    key,
                    f"corrected calcium {shown('corrected_calcium', product.calcium.value):g} mg/dL x phosphate "
                    f"{shown('phosphate', product.phosphate.value):g} mg/dL",
                )
    out["corrected_calcium"] = Series("corrected_calcium", tuple(sorted(corrected.values(), key=lambda p: p.when)))
    out["ca_x_p"] = Series("ca_x_p", tuple(sorted(products.values(), key=lambda p: p.when)))
    return out


# --------------------------------------------------------------------------------------------
# Medications
# --------------------------------------------------------------------------------------------


def _medication_resources(resolved: ResolvedPrefetch, history: str, current: str) -> tuple[str, list[Any]]:
    """The history key's resources, or the service key's (current only) when it was not read."""
    key = history if history in resolved.data and history not in resolved.unavailable else current
    return key, list(iter_resources(resolved.data.get(key)))


def _dose(resource: Mapping[str, Any]) -> str:
    dosage = resource.get("dosage")
    dose = dosage.get("dose") if isinstance(dosage, dict) else None
    if isinstance(dose, dict) and isinstance(dose.get("value"), (int, float)):
        unit = dose.get("unit") or dose.get("code") or ""
        return f"{dose['value']:g} {unit}".strip() if isinstance(unit, str) else f"{dose['value']:g}"
    return ""


def _timeline(resolved: ResolvedPrefetch, now: datetime, since: datetime) -> tuple[TimelineItem, ...]:
    catalog = ResourceIndex()
    sources = [
        _medication_resources(resolved, HISTORY_ORDERS, "meds"),
        _medication_resources(resolved, HISTORY_STATEMENTS, "medstatements"),
        _medication_resources(resolved, HISTORY_GIVEN, "medadmins"),
    ]
    for _, entries in sources:
        for full_url, resource in entries:
            if resource.get("resourceType") == "Medication":
                catalog.add(resource, full_url)
    items: list[TimelineItem] = []
    seen: set[str] = set()
    for _, entries in sources:
        for _, resource in entries:
            order = classify_medication(resource, catalog)
            if order is None or order.resource_id in seen:
                continue
            watched = [c for c in TIMELINE_CLASSES if c in order.drug_classes]
            if not watched or order.status == "entered-in-error":
                continue
            seen.add(order.resource_id)
            item = _item(order, watched[0], resource, now)
            if item is None:
                continue
            # Shown when it overlaps the window: ongoing, ended within it, or started within it.
            last = item.end or (now if item.ongoing else item.start)
            if last is not None and last < since:
                continue
            items.append(item)
    rank = {cls: n for n, cls in enumerate(TIMELINE_CLASSES)}
    items.sort(key=lambda i: (rank[i.drug_class], i.drug.lower(), i.start or since))
    return tuple(items)


def _item(order: MedicationOrder, drug_class: str, resource: Mapping[str, Any], now: datetime) -> TimelineItem | None:
    status = order.status or "unknown"
    if order.kind == "administration":
        when = order.authored
        if when is None:
            return None
        return TimelineItem(
            "administration", order.drug_name, drug_class, status, when, when, False, order.resource_id, _dose(resource)
        )
    span = order_span(order, now, is_draft=False)
    start = span.start.when if span.start is not None else order.authored
    end = span.latest_end
    closed = status in CLOSED_STATUSES
    if not closed and (end is None or end.when >= now):
        return TimelineItem(order.kind, order.drug_name, drug_class, status, start, None, True, order.resource_id)
    if end is not None:
        return TimelineItem(
            order.kind,
            order.drug_name,
            drug_class,
            status,
            start,
            min(end.when, now),
            False,
            order.resource_id,
            "",
            end.field,
        )
    # Stopped (or completed) with no date saying when: its start is known, its end is not.
    return TimelineItem(order.kind, order.drug_name, drug_class, status, start, None, False, order.resource_id)


# --------------------------------------------------------------------------------------------
# Rules, patient
# --------------------------------------------------------------------------------------------


def _conclusions(record: PatientRecord, cards: tuple[Card, ...]) -> tuple[RuleConclusion, ...]:
    c = content()
    exposures = patient_view_exposures(record)
    out: list[RuleConclusion] = []
    for chart_rule in CHART_RULES:
        mine = tuple(card for card in cards if card.rule_id in chart_rule.finding_ids)
        reason = "" if mine else ("nothing_to_flag" if record.has_calciphylaxis else "no_calciphylaxis")
        out.append(RuleConclusion(chart_rule.name, c.rule(chart_rule.finding_ids[0]).topic, mine, (), reason))
    for order_rule in ORDER_RULES:
        mine = tuple(card for card in cards if card.rule_id in order_rule.finding_ids)
        drugs = tuple(dict.fromkeys(m.drug_name for m in exposures if order_rule.drug_class in m.drug_classes))
        reason = "" if mine else ("nothing_to_flag" if drugs else "no_drug")
        out.append(RuleConclusion(order_rule.name, c.rule(order_rule.finding_ids[0]).topic, mine, drugs, reason))
    incomplete = tuple(card for card in cards if card.rule_id == RULE_INCOMPLETE)
    out.append(
        RuleConclusion(
            "x1_check_incomplete", c.rule(RULE_INCOMPLETE).topic, incomplete, (), "" if incomplete else "complete"
        )
    )
    return tuple(out)


def _banner(resource: Any, patient: str) -> PatientBanner | None:
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient" or resource.get("id") != patient:
        return None
    name = ""
    names = resource.get("name")
    if isinstance(names, list):
        for entry in names:
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("text"), str) and entry["text"].strip():
                name = entry["text"].strip()
            else:
                given = [g for g in entry.get("given") or [] if isinstance(g, str)]
                family = entry.get("family")
                name = " ".join([*given, family if isinstance(family, str) else ""]).strip()
            if name:
                break
    birth = resource.get("birthDate")
    gender = resource.get("gender")
    return PatientBanner(
        name=name[:120],
        birth_date=birth if isinstance(birth, str) and len(birth) <= 10 else "",
        gender=gender if isinstance(gender, str) and len(gender) <= 20 else "",
    )
