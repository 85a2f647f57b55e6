"""The laboratory facts the checks use, as ``LabValue``s that carry date, method and staleness.

Decisions use values rounded to the precision the cards display (calcium to 0.1 mg/dL, PTH to
1 pg/mL ...), so a card can never say "corrected calcium 10.2 mg/dL is above 10.2".
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from cds_service.checks.findings import LabValue
from cds_service.record import CorrectedCalcium, LabResult, PatientRecord

# Decimal places shown (and compared) per analyte.
DISPLAY_DECIMALS: dict[str, int] = {
    "calcium": 1,
    "corrected_calcium": 1,
    "ionized_calcium": 2,
    "albumin": 1,
    "phosphate": 1,
    "pth": 0,
    "ca_x_p": 0,
    "crp": 1,
    "egfr": 0,
}
CA_X_P_UNIT = "mg2/dL2"


def shown(analyte: str, value: float) -> float:
    """``value`` rounded half-up to the decimals the cards display for ``analyte``."""
    places = DISPLAY_DECIMALS.get(analyte, 2)
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def from_result(record: PatientRecord, lab: LabResult, analyte: str | None = None) -> LabValue:
    original = None
    if lab.original_unit and lab.original_unit != lab.unit:
        original = f"{lab.original_value:g} {lab.original_unit}"
    return LabValue(
        analyte=analyte or lab.analyte,
        value=shown(analyte or lab.analyte, lab.value),
        unit=lab.unit,
        effective=lab.effective,
        method="reported-corrected" if lab.analyte == "corrected_calcium" else "measured",
        stale=record.is_stale(lab),
        sources=(lab.resource_id,),
        original=original,
    )


def _from_corrected(record: PatientRecord, cc: CorrectedCalcium) -> LabValue:
    inputs = (from_result(record, cc.calcium),)
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
    pth: tuple[LabValue, ...]  # newest first
    albumin: LabValue | None
    crp: LabValue | None
    egfr: LabValue | None

    @property
    def latest_pth(self) -> LabValue | None:
        return self.pth[0] if self.pth else None


def lab_facts(record: PatientRecord) -> LabFacts:
    def latest(analyte: str) -> LabValue | None:
        lab = record.latest(analyte)
        return from_result(record, lab) if lab is not None else None

    cc = record.corrected_calcium()
    corrected = _from_corrected(record, cc) if cc is not None else None
    product = record.ca_x_p()
    ca_x_p = None
    if product is not None:
        calcium = _from_corrected(record, product.calcium)
        phosphate = from_result(record, product.phosphate)
        dates = [d for d in (calcium.effective, phosphate.effective) if d is not None]
        ca_x_p = LabValue(
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
        ca_x_p=ca_x_p,
        pth=tuple(from_result(record, lab) for lab in record.labs.get("pth", ())),
        albumin=latest("albumin"),
        crp=latest("crp"),
        egfr=latest("egfr"),
    )
