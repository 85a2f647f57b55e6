"""How long a medication order runs: when it starts, and every end its dates, duration or supply
imply, each with the element it was read from (a card must say which dates it used).

Read from the raw JSON of an R4 / R5 MedicationRequest, a DSTU2 MedicationOrder or a
MedicationStatement, defensively (a malformed member is skipped, never an error):

start, the first found of
  dosageInstruction[].timing.repeat.boundsPeriod.start, effectiveDosePeriod.start (R5),
  dispenseRequest.validityPeriod.start, authoredOn / dateWritten (DSTU2),
  effectivePeriod.start / effectiveDateTime / dateAsserted (statements);
  a draft with none of these starts when signed: today.
ends (each from the start)
  boundsPeriod.end; boundsDuration (DSTU2 boundsQuantity); repeat.count at the ordered
  frequency; effectiveDosePeriod.end (R5); effectivePeriod.end (statements);
  dispenseRequest.expectedSupplyDuration x (1 + numberOfRepeatsAllowed);
  dispenseRequest.quantity / (dose x doses a day) x (1 + numberOfRepeatsAllowed), when the
  quantity and the dose are in the same unit;
  dispenseRequest.validityPeriod.end (the last day a supply may be dispensed), when refills
  are allowed or nothing else bounds the order.

The latest end is how long the order lets the patient take the drug: a 14-day course with five
30-day refills can run for months, whatever its first supply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cds_service.fhir.reading import as_list, parse_fhir_datetime
from cds_service.patient.model import MedicationOrder

# Duration and Timing units (UCUM codes and the words EHRs write) in days; UCUM's month and year
# are 30.4375 and 365.25 days.
_DAYS_PER_UNIT: dict[str, float] = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1 / 86400),
    **dict.fromkeys(("min", "minute", "minutes"), 1 / 1440),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 1 / 24),
    **dict.fromkeys(("d", "day", "days"), 1.0),
    **dict.fromkeys(("wk", "week", "weeks"), 7.0),
    **dict.fromkeys(("mo", "month", "months"), 30.4375),
    **dict.fromkeys(("a", "yr", "year", "years"), 365.25),
}


@dataclass(frozen=True)
class Dated:
    when: datetime
    field: str  # the element it was read from, e.g. "authoredOn"


@dataclass(frozen=True)
class End:
    """One end the order implies: its date, days from the start, and how it was obtained."""

    when: datetime
    days: float
    field: str  # e.g. "dispenseRequest.expectedSupplyDuration"
    how: str = ""  # the arithmetic, e.g. "30 days x (1 + 2 repeats)"


@dataclass(frozen=True)
class OrderSpan:
    start: Dated | None
    ends: tuple[End, ...]
    start_assumed: bool = False  # a draft without a start of its own: taken to start today
    looked_at: tuple[str, ...] = ()  # the elements read for an end, whether present or not

    @property
    def latest_end(self) -> End | None:
        return max(self.ends, key=lambda e: e.days) if self.ends else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def duration_days(quantity: Any) -> float | None:
    """A FHIR Duration (or Quantity of time) in days; None when unreadable."""
    q = _dict(quantity)
    value = _number(q.get("value"))
    for unit in (q.get("code"), q.get("unit")):
        if isinstance(unit, str) and unit.strip().lower() in _DAYS_PER_UNIT and value is not None and value >= 0:
            return value * _DAYS_PER_UNIT[unit.strip().lower()]
    return None


def _doses_per_day(repeat: dict[str, Any]) -> float | None:
    frequency = _number(repeat.get("frequency"))
    period = _number(repeat.get("period"))
    unit = repeat.get("periodUnit") or repeat.get("periodUnits")  # R4/R5; DSTU2
    per = _DAYS_PER_UNIT.get(unit.strip().lower()) if isinstance(unit, str) else None
    if frequency is None or period is None or per is None or frequency <= 0 or period <= 0:
        return None
    return frequency / (period * per)


def dose_quantity(dosage: dict[str, Any]) -> tuple[float, str] | None:
    """(value, unit) of one administration: doseAndRate[0].doseQuantity (R4/R5), doseQuantity (DSTU2)."""
    quantity: Any = dosage.get("doseQuantity")
    for item in as_list(dosage.get("doseAndRate")):
        if isinstance(item, dict) and isinstance(item.get("doseQuantity"), dict):
            quantity = item["doseQuantity"]
            break
    q = _dict(quantity)
    value = _number(q.get("value"))
    unit = q.get("code") or q.get("unit")
    if value is None or value <= 0 or not isinstance(unit, str) or not unit.strip():
        return None
    return value, unit.strip().lower()


# Units of a dose counted in tablets or capsules (UCUM annotations and the words EHRs use).
UNIT_DOSE_FORMS = frozenset(
    {
        "tab",
        "tabs",
        "tablet",
        "tablets",
        "{tbl}",
        "{tablet}",
        "{tablets}",
        "cap",
        "caps",
        "capsule",
        "capsules",
        "{cap}",
        "{capsule}",
        "{capsules}",
        "gelcap",
        "gelcaps",
    }
)


def units_per_dose(order: MedicationOrder, unit_mg: float) -> tuple[float, str] | None:
    """(tablets or capsules per administration, where it was read) from the order's coded dose:
    a count of tablets, or milligrams divided by ``unit_mg`` (the strength of one). None when
    the order carries no readable dose (free text alone is not read)."""
    raw = order.raw if isinstance(order.raw, dict) else {}
    for i, dosage in enumerate(as_list(raw.get("dosageInstruction") or raw.get("dosage"))):
        dose = dose_quantity(dosage) if isinstance(dosage, dict) else None
        if dose is None:
            continue
        value, unit = dose
        where = f"dosageInstruction[{i}] dose {value:g} {unit}"
        if unit in UNIT_DOSE_FORMS:
            return value, where
        if unit == "mg" and unit_mg > 0:
            return value / unit_mg, where
    return None


def _fmt(value: float) -> str:
    return f"{value:g}"


def _start(raw: dict[str, Any], dosages: list[dict[str, Any]]) -> Dated | None:
    for i, dosage in enumerate(dosages):
        bounds = _dict(_dict(_dict(dosage.get("timing")).get("repeat")).get("boundsPeriod"))
        when = parse_fhir_datetime(bounds.get("start"))
        if when is not None:
            return Dated(when, f"dosageInstruction[{i}].timing.repeat.boundsPeriod.start")
    candidates = (
        (_dict(raw.get("effectiveDosePeriod")).get("start"), "effectiveDosePeriod.start"),
        (
            _dict(_dict(raw.get("dispenseRequest")).get("validityPeriod")).get("start"),
            "dispenseRequest.validityPeriod.start",
        ),
        (raw.get("authoredOn"), "authoredOn"),
        (raw.get("dateWritten"), "dateWritten"),
        (_dict(raw.get("effectivePeriod")).get("start"), "effectivePeriod.start"),
        (raw.get("effectiveDateTime"), "effectiveDateTime"),
        (raw.get("dateAsserted"), "dateAsserted"),
    )
    for value, name in candidates:
        when = parse_fhir_datetime(value)
        if when is not None:
            return Dated(when, name)
    return None


def order_span(order: MedicationOrder, now: datetime, *, is_draft: bool) -> OrderSpan:
    """The start and every end ``order`` implies (see the module docstring)."""
    raw = order.raw if isinstance(order.raw, dict) else {}
    dosages = [d for d in as_list(raw.get("dosageInstruction") or raw.get("dosage")) if isinstance(d, dict)]
    start = _start(raw, dosages)
    assumed = False
    if start is None and is_draft:
        start, assumed = Dated(now, "today"), True
    looked_at = [
        "dosageInstruction.timing.repeat (boundsPeriod, boundsDuration, count)",
        "dispenseRequest (validityPeriod, expectedSupplyDuration, numberOfRepeatsAllowed, quantity)",
    ]
    if start is None:
        return OrderSpan(None, (), looked_at=tuple(looked_at))
    origin = start.when
    ends: list[End] = []

    def at(when: datetime | None, name: str, how: str = "") -> None:
        if when is not None and when >= origin:
            ends.append(End(when, (when - origin).total_seconds() / 86400, name, how))

    def after(days: float | None, name: str, how: str = "") -> None:
        if days is not None and days > 0:
            ends.append(End(origin + timedelta(days=days), days, name, how))

    for i, dosage in enumerate(dosages):
        repeat = _dict(_dict(dosage.get("timing")).get("repeat"))
        path = f"dosageInstruction[{i}].timing.repeat"
        at(parse_fhir_datetime(_dict(repeat.get("boundsPeriod")).get("end")), f"{path}.boundsPeriod.end")
        for member in ("boundsDuration", "boundsQuantity"):  # R4/R5; DSTU2
            days = duration_days(repeat.get(member))
            after(days, f"{path}.{member}", f"{_fmt(round(days, 1))} days" if days else "")
        count, per_day = _number(repeat.get("count")), _doses_per_day(repeat)
        if count is not None and count > 0 and per_day:
            after(count / per_day, f"{path}.count", f"{_fmt(count)} doses at {_fmt(round(per_day, 2))} a day")
    at(parse_fhir_datetime(_dict(raw.get("effectiveDosePeriod")).get("end")), "effectiveDosePeriod.end")
    at(parse_fhir_datetime(_dict(raw.get("effectivePeriod")).get("end")), "effectivePeriod.end")

    dispense = _dict(raw.get("dispenseRequest"))
    repeats = _number(dispense.get("numberOfRepeatsAllowed")) or 0.0
    fills = 1 + max(repeats, 0.0)
    refills = f" x (1 + {_fmt(repeats)} repeats)" if repeats else ""
    supply = duration_days(dispense.get("expectedSupplyDuration"))
    if supply:
        after(supply * fills, "dispenseRequest.expectedSupplyDuration", f"{_fmt(round(supply, 1))} days{refills}")
    quantity = _dict(dispense.get("quantity"))
    amount, unit = _number(quantity.get("value")), quantity.get("code") or quantity.get("unit")
    if amount and isinstance(unit, str) and dosages:
        dose = dose_quantity(dosages[0])
        per_day = _doses_per_day(_dict(_dict(dosages[0].get("timing")).get("repeat")))
        if dose is not None and per_day and dose[1] == unit.strip().lower():
            days = amount / (dose[0] * per_day)
            how = (
                f"{_fmt(amount)} {unit.strip()} at {_fmt(dose[0])} {dose[1]} x {_fmt(round(per_day, 2))} a day{refills}"
            )
            after(days * fills, "dispenseRequest.quantity", how)
    validity_end = parse_fhir_datetime(_dict(dispense.get("validityPeriod")).get("end"))
    if validity_end is not None and (repeats > 0 or not ends):
        at(validity_end, "dispenseRequest.validityPeriod.end", "the last day a supply may be dispensed")
    return OrderSpan(start, tuple(ends), start_assumed=assumed, looked_at=tuple(looked_at))
