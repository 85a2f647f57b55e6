"""The laboratory facts the checks use, as ``LabValue``s that carry date, method and staleness.

Derived values (albumin-corrected calcium, Ca x P) are computed here, once per hook call.

Decisions use values rounded to the precision the cards display (calcium to 0.1 mg/dL, PTH to
1 pg/mL ...), so a card can never say "corrected calcium 10.2 mg/dL is above 10.2".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from cds_service.checks.findings import LabValue
from cds_service.knowledge import thresholds as T
from cds_service.patient import units
from cds_service.patient.analytes import ANALYTES
from cds_service.patient.model import CalciumPhosphateProduct, CorrectedCalcium, LabResult, PatientRecord

# Decimal places shown (and compared) per analyte: from the analyte table.
DISPLAY_DECIMALS: dict[str, int] = {a.key: a.decimals for a in ANALYTES.values()}
CA_X_P_UNIT = ANALYTES["ca_x_p"].unit
# The most PTH results any rule reads (C1's run of consecutive oversuppressed results).
PTH_SERIES = T.PTH_OVERSUPPRESSED_CONSECUTIVE


@lru_cache(maxsize=8192)  # pure, and decimal rounding is costly: lab values recur call after call
def shown(analyte: str, value: float) -> float:
    """``value`` rounded half-up to the decimals the cards display for ``analyte``."""
    places = DISPLAY_DECIMALS.get(analyte, 2)
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def _within(a: LabResult, b: LabResult, window: timedelta) -> bool:
    if a.effective is None or b.effective is None:
        return False
    return abs(a.effective - b.effective) <= window


def _distance(a: LabResult, b: LabResult) -> timedelta:
    if a.effective is None or b.effective is None:
        return timedelta.max
    return abs(a.effective - b.effective)


def corrected_calcium(record: PatientRecord) -> CorrectedCalcium | None:
    """The calcium value the rules use, in mg/dL, and how it was obtained.

    A lab-reported albumin-corrected calcium (LOINC 29265-6) when it is at least as recent as
    the latest total calcium; else Payne from the latest total calcium and the albumin drawn
    nearest to it within ``units.ALBUMIN_PAIRING_WINDOW``; else the measured total calcium.
    """
    total = record.latest("calcium")
    reported = record.latest("corrected_calcium")
    if reported is not None and (
        total is None
        or (reported.effective is not None and (total.effective is None or reported.effective >= total.effective))
    ):
        return CorrectedCalcium(value=reported.value, method="reported-corrected", calcium=reported)
    if total is None:
        return None
    albumins = [a for a in record.labs.get("albumin", ()) if _within(a, total, units.ALBUMIN_PAIRING_WINDOW)]
    if albumins:
        # _within kept only dated albumins, and the total calcium they pair with is dated too.
        albumin = min(albumins, key=lambda a: _distance(a, total))
        return CorrectedCalcium(
            value=units.payne_corrected_calcium(total.value, albumin.value),
            method="corrected",
            calcium=total,
            albumin=albumin,
        )
    return CorrectedCalcium(value=total.value, method="measured", calcium=total)


def ca_x_p(record: PatientRecord, calcium: CorrectedCalcium | None = None) -> CalciumPhosphateProduct | None:
    """Ca x P (mg2/dL2) from the corrected calcium and the latest phosphate, when both were
    drawn within ``units.CA_X_P_PAIRING_WINDOW`` of each other; else ``None``. ``calcium``:
    the corrected calcium when the caller has it already."""
    calcium = calcium or corrected_calcium(record)
    phosphate = record.latest("phosphate")
    if calcium is None or phosphate is None:
        return None
    if not _within(calcium.calcium, phosphate, units.CA_X_P_PAIRING_WINDOW):
        return None
    return CalciumPhosphateProduct(
        value=units.calcium_phosphate_product(calcium.value, phosphate.value),
        calcium=calcium,
        phosphate=phosphate,
    )


def from_result(record: PatientRecord, lab: LabResult, analyte: str | None = None) -> LabValue:
    original = None
    if lab.original_unit and lab.original_unit != lab.unit:
        original = f"{lab.comparator or ''}{lab.original_value:g} {lab.original_unit}"
    return LabValue(
        analyte=analyte or lab.analyte,
        value=shown(analyte or lab.analyte, lab.value),
        unit=lab.unit,
        effective=lab.effective,
        method="reported-corrected" if lab.analyte == "corrected_calcium" else "measured",
        stale=record.is_stale(lab),
        sources=(lab.resource_id,),
        original=original,
        comparator=lab.comparator,
    )


def _from_corrected(record: PatientRecord, cc: CorrectedCalcium) -> LabValue:
    inputs: tuple[LabValue, ...] = (from_result(record, cc.calcium),)
    if cc.albumin is not None:
        inputs += (from_result(record, cc.albumin),)
    return LabValue(
        analyte="corrected_calcium",
        value=shown("corrected_calcium", cc.value),
        unit="mg/dL",
        effective=cc.calcium.effective,
        method=cc.method,
        # Stale when the calcium behind it is stale (the albumin is paired within days of it).
        stale=record.is_stale(cc.calcium),
        sources=tuple(s for i in inputs for s in i.sources),
        original=inputs[0].original if cc.method == "reported-corrected" else None,
        inputs=inputs if cc.method == "corrected" else (),
    )


@dataclass(frozen=True)
class LabFacts:
    """What the checks read about labs, computed once per record."""

    corrected_calcium: LabValue | None  # corrected when albumin allows; else measured (says which)
    total_calcium: LabValue | None
    ionized_calcium: LabValue | None
    phosphate: LabValue | None
    ca_x_p: LabValue | None
    pth: tuple[LabValue, ...]  # newest first, as many as a rule reads (PTH_SERIES)
    albumin: LabValue | None
    crp: LabValue | None  # with .previous: the result before it (the trend)
    egfr: LabValue | None
    body_weight: LabValue | None = None  # chooses the apixaban dose (with the age)

    @property
    def latest_pth(self) -> LabValue | None:
        return self.pth[0] if self.pth else None


def _with_previous(record: PatientRecord, analyte: str) -> LabValue | None:
    """The latest result of ``analyte`` carrying the one before it, for a card to show the trend."""
    series = record.labs.get(analyte) or ()
    if not series:
        return None
    latest = from_result(record, series[0])
    return replace(latest, previous=from_result(record, series[1])) if len(series) > 1 else latest


def trend(lab: LabValue) -> str | None:
    """'up', 'down' or 'unchanged' from the previous result to ``lab``; 'unclear' when a reported
    bound ("<5") leaves the direction open; None without a previous result."""
    before = lab.previous
    if before is None:
        return None
    if below(before, lab.value) and above(lab, before.value):
        return "up"
    if above(before, lab.value) and below(lab, before.value):
        return "down"
    if lab.comparator is None and before.comparator is None and lab.value == before.value:
        return "unchanged"
    return "unclear"


def lab_facts(record: PatientRecord) -> LabFacts:
    def latest(analyte: str) -> LabValue | None:
        lab = record.latest(analyte)
        return from_result(record, lab) if lab is not None else None

    cc = corrected_calcium(record)
    corrected = _from_corrected(record, cc) if cc is not None else None
    product = ca_x_p(record, cc)
    product_value = None
    if product is not None:
        calcium = _from_corrected(record, product.calcium)
        phosphate = from_result(record, product.phosphate)
        dates = [d for d in (calcium.effective, phosphate.effective) if d is not None]
        product_value = LabValue(
            analyte="ca_x_p",
            value=shown("ca_x_p", product.value),
            unit=CA_X_P_UNIT,
            effective=max(dates) if dates else None,
            method="computed",
            stale=calcium.stale or phosphate.stale,
            sources=calcium.sources + phosphate.sources,
            inputs=(calcium, phosphate),
        )
    return LabFacts(
        corrected_calcium=corrected,
        total_calcium=latest("calcium"),
        ionized_calcium=latest("ionized_calcium"),
        phosphate=latest("phosphate"),
        ca_x_p=product_value,
        pth=tuple(from_result(record, lab) for lab in record.labs.get("pth", ())[:PTH_SERIES]),
        albumin=latest("albumin"),
        crp=_with_previous(record, "crp"),
        egfr=latest("egfr"),
        body_weight=latest("body_weight"),
    )


def pth_notes(pth: LabValue | None) -> tuple[str, ...]:
    """What a recent PTH adds to a card: a parathyroidectomy referral above its threshold (with
    the conflicting thresholds), a warning against further suppression below the floor."""
    if pth is None or pth.stale:
        return ()
    if above(pth, T.PTH_PARATHYROIDECTOMY_001_004):
        return ("parathyroidectomy_referral",)
    if below(pth, T.PTH_AVOID_BELOW):
        return ("pth_below_avoid",)
    return ()


# --- comparing a value that may carry a comparator ("<3.0", ">1000") ---------------------------
# A result reported as "<x" only says the true value is below x (">x": above x). A rule fires on
# what the result shows for certain, never on a guess about the value behind a bound.


def above(lab: LabValue, threshold: float) -> bool:
    """The result is certainly above ``threshold``."""
    if lab.comparator in ("<", "<="):
        return False
    if lab.comparator == ">":
        return lab.value >= threshold
    return lab.value > threshold


def below(lab: LabValue, threshold: float) -> bool:
    """The result is certainly below ``threshold``."""
    if lab.comparator in (">", ">="):
        return False
    if lab.comparator == "<":
        return lab.value <= threshold
    return lab.value < threshold


def is_within(lab: LabValue, low: float, high: float) -> bool:
    """The result is certainly within ``low``-``high`` (both ends included)."""
    return lab.comparator is None and low <= lab.value <= high


@dataclass(frozen=True)
class CalciumReading:
    """The calcium a rule decides on: a measured ionized calcium from the same draw as the total
    calcium (or newer), with its own thresholds; else the corrected (or measured) total calcium;
    else an ionized calcium alone."""

    value: LabValue
    high: bool  # above the level where calcium-raising therapy must be reduced or stopped
    low: bool  # below the floor for starting cinacalcet
    # below the level where a calcimimetic is withheld (001: 7.5 mg/dL; ionized: derived)
    severe_low: bool = False
    # The corrected calcium shown beside an ionized calcium that was preferred to it.
    beside: LabValue | None = None

    @property
    def shown(self) -> tuple[LabValue, ...]:
        """What a card lists: the value decided on, and the corrected calcium beside it."""
        return (self.value,) if self.beside is None else (self.value, self.beside)

    @property
    def ionized(self) -> bool:
        return self.value.analyte == "ionized_calcium"

    def describe(self) -> str:
        when = self.value.effective.date().isoformat() if self.value.effective else "undated"
        kind = "ionized calcium " if self.value.analyte == "ionized_calcium" else ""
        stale = ", out of date" if self.value.stale else ""
        return f"{kind}{self.value.comparator or ''}{self.value.value:g} {self.value.unit} on {when}{stale}"


# The decisions a corrected calcium close to T.CORRECTED_CALCIUM_MARGIN of which gets a note.
_CALCIUM_DECISIONS = (T.CORRECTED_CALCIUM_HIGH, T.CALCIUM_LOWER_LIMIT, T.CALCIMIMETIC_HOLD_BELOW)


def calcium_notes(calcium: CalciumReading | None) -> tuple[str, ...]:
    """What a card says about the calcium it used: an ionized calcium preferred to the corrected
    one, or standing in for a missing total calcium; a Payne-corrected value close to a threshold."""
    if calcium is None:
        return ()
    if calcium.beside is not None:
        return ("ionized_calcium_preferred",)
    if calcium.value.analyte == "ionized_calcium":
        return ("ionized_calcium_used",)
    value = calcium.value
    if value.method == "corrected" and any(
        abs(value.value - t) <= T.CORRECTED_CALCIUM_MARGIN for t in _CALCIUM_DECISIONS
    ):
        return ("corrected_calcium_in_dialysis",)
    return ()


def _ionized(ic: LabValue, beside: LabValue | None = None) -> CalciumReading:
    return CalciumReading(
        ic,
        above(ic, T.IONIZED_CALCIUM_HIGH),
        below(ic, T.IONIZED_CALCIUM_LOW),
        below(ic, T.IONIZED_CALCIMIMETIC_HOLD_BELOW),
        beside=beside,
    )


def _same_draw_or_newer(ionized: LabValue, total: LabValue) -> bool:
    if ionized.effective is None or total.effective is None:
        return False
    return ionized.effective >= total.effective - units.ALBUMIN_PAIRING_WINDOW


def calcium_for_rules(labs: LabFacts) -> CalciumReading | None:
    """The calcium the rules decide on. A recent measured ionized calcium drawn with the total
    calcium (within 2 days) or after it is preferred: the KDIGO position is that ionized calcium
    is preferred, and albumin-corrected calcium agrees poorly with it in kidney failure (Gauci
    2008; clinical review F15). The corrected value is then shown beside it."""
    cc, ic = labs.corrected_calcium, labs.ionized_calcium
    if cc is not None and ic is not None and not ic.stale and _same_draw_or_newer(ic, cc):
        return _ionized(ic, beside=cc)
    if cc is not None:
        return CalciumReading(
            cc,
            above(cc, T.CORRECTED_CALCIUM_HIGH),
            below(cc, T.CINACALCET_MIN_CORRECTED_CALCIUM),
            below(cc, T.CALCIMIMETIC_HOLD_BELOW),
        )
    if ic is not None:
        return _ionized(ic)
    return None
