"""Unit normalisation and derived mineral values (terminology.md section 4).

Every conversion factor lives in ``UNIT_FACTORS``: for each analyte, the factor that takes a value
in a given unit to the analyte's canonical unit (``record.CANONICAL_UNITS``). A unit that is not
listed for that analyte is not usable: ``to_canonical`` returns ``None`` and the caller records
why, rather than guessing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from cds_service.patient.analytes import ANALYTES

CANONICAL_UNIT = {key: analyte.unit for key, analyte in ANALYTES.items()}

# Molar <-> mass factors from terminology.md section 4 (MIRACUM loinc-conversion).
CALCIUM_MG_DL_PER_MMOL_L = 4.008  # mg/dL = mmol/L x 4.008
CALCIUM_MMOL_L_PER_MG_DL = 0.2495  # mmol/L = mg/dL x 0.2495
PHOSPHATE_MG_DL_PER_MMOL_L = 3.097  # mg/dL = mmol/L x 3.097 (not 0.3229: that is the inverse)
PTH_PG_ML_PER_PMOL_L = 9.43  # pg/mL = pmol/L x 9.43
ALBUMIN_G_DL_PER_G_L = 0.1  # g/L = g/dL x 10
# Calcium is divalent: 1 mmol/L = 2 mEq/L (convertmedunits.com calcium conversion calculator:
# "1 mmol/L = 4.0078 mg/dL = 2 mEq/L", atomic weight 40.078, valence 2). So a total calcium of
# 5.6 mEq/L is 2.8 mmol/L = 11.2 mg/dL, and an ionized calcium of 2.4 mEq/L is 1.2 mmol/L.
# "mval/L" (German laboratories' older name for the milliequivalent) is the same unit.
CALCIUM_VALENCE = 2
CALCIUM_MG_DL_PER_MEQ_L = CALCIUM_MG_DL_PER_MMOL_L / CALCIUM_VALENCE  # 2.004
CALCIUM_MMOL_L_PER_MEQ_L = 1 / CALCIUM_VALENCE  # 0.5
# Phosphate in mEq/L is NOT converted: its charge depends on blood pH (a mix of HPO4 2- and
# H2PO4 -), so there is no single factor; such a result is named on the card as not used.

# Payne 1973 (terminology.md section 4): corrected Ca (mg/dL) = Ca + 0.8 x (4.0 - albumin g/dL).
PAYNE_COEFFICIENT = 0.8
PAYNE_REFERENCE_ALBUMIN_G_DL = 4.0

# An albumin is used to correct a calcium only if drawn within this time of it. Albumin moves
# slowly (weeks), but fluid shifts around dialysis and acute illness change it within days, and
# clinical-rules.md asks for "same day or close": two days covers a same-session draw reported
# the next day and a Monday/Wednesday dialysis-unit pair, and no more.
ALBUMIN_PAIRING_WINDOW = timedelta(days=2)
# A Ca x P product only multiplies a calcium and a phosphate drawn this close together.
CA_X_P_PAIRING_WINDOW = timedelta(days=2)


def is_number(value: Any) -> bool:
    """A finite JSON number (not a bool, not NaN/Infinity, which json.loads accepts)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def unit_key(unit: str) -> str:
    """Case- and spacing-insensitive key: "mg/dl", "mmol/l", "mL/min/{1.73_m2}" ..."""
    key = unit.strip().lower().replace(" ", "").replace("µ", "u").replace("μ", "u")
    return key.replace("²", "2").replace("^2", "2")


# A UCUM annotation in braces ("mg/dL{total}", "meq/L{Ca}") does not change the unit (UCUM
# specification, section 2.4 "Annotations": curly braces carry no meaning of their own).
_ANNOTATION = re.compile(r"\{[^{}]*\}")


def _factors(table: dict[str, float]) -> dict[str, float]:
    return {unit_key(unit): factor for unit, factor in table.items()}


_EGFR = {
    "mL/min/{1.73_m2}": 1.0,
    "mL/min/1.73m2": 1.0,
    "mL/min/1.73_m2": 1.0,
    "mL/min/{1.73m2}": 1.0,
    "mL/min/1.73m^2": 1.0,
    "mL/min/1.73 m²": 1.0,
    "mL/min/1.73sqm": 1.0,
    "mL/min/1.73 sq m": 1.0,
    "mL/min/{1.73m^2}": 1.0,
}

# analyte -> unit key -> factor to the canonical unit. Only dimensional identities (ng/L = pg/mL,
# umol/L = mmol/L / 1000, mg/dL = 10 mg/L) and the factors above.
# Mass per volume written the old ways: mg% and mg/100 mL are mg/dL; g% and g/100 mL are g/dL.
_PER_DL = {"mg/dL": 1.0, "mg%": 1.0, "mg/100mL": 1.0, "mg/L": 0.1}
_TOTAL_CALCIUM = {
    **_PER_DL,
    "mmol/L": CALCIUM_MG_DL_PER_MMOL_L,
    "umol/L": CALCIUM_MG_DL_PER_MMOL_L / 1000,
    "meq/L": CALCIUM_MG_DL_PER_MEQ_L,
    "mval/L": CALCIUM_MG_DL_PER_MEQ_L,
}
UNIT_FACTORS: dict[str, dict[str, float]] = {
    "calcium": _factors(_TOTAL_CALCIUM),
    "corrected_calcium": _factors(_TOTAL_CALCIUM),
    "ionized_calcium": _factors(
        {
            "mmol/L": 1.0,
            "umol/L": 0.001,
            "meq/L": CALCIUM_MMOL_L_PER_MEQ_L,
            "mval/L": CALCIUM_MMOL_L_PER_MEQ_L,
            **{unit: factor * CALCIUM_MMOL_L_PER_MG_DL for unit, factor in _PER_DL.items()},
        }
    ),
    "albumin": _factors(
        {
            "g/dL": 1.0,
            "g%": 1.0,
            "g/100mL": 1.0,
            "g/L": ALBUMIN_G_DL_PER_G_L,
            "mg/mL": ALBUMIN_G_DL_PER_G_L,
            "mg/dL": 0.001,
        }
    ),
    "phosphate": _factors(
        {**_PER_DL, "mmol/L": PHOSPHATE_MG_DL_PER_MMOL_L, "umol/L": PHOSPHATE_MG_DL_PER_MMOL_L / 1000}
    ),
    # ng/mL is 1000 pg/mL (a PTH of 0.3 ng/mL is 300 pg/mL).
    "pth": _factors({"pg/mL": 1.0, "ng/L": 1.0, "pmol/L": PTH_PG_ML_PER_PMOL_L, "ng/mL": 1000.0}),
    "crp": _factors({"mg/L": 1.0, "mg/dL": 10.0, "ug/mL": 1.0}),
    "egfr": _factors(_EGFR),
    # Avoirdupois pound: 0.45359237 kg exactly (UCUM [lb_av]).
    "body_weight": _factors({"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237, "lbs": 0.45359237}),
}


@lru_cache(maxsize=1024)
def _factor(analyte: str, unit: str) -> float | None:
    table = UNIT_FACTORS.get(analyte, {})
    key = unit_key(unit)
    found = table.get(key)
    if found is None and "{" in key:
        found = table.get(_ANNOTATION.sub("", key))
    return found


def convert(value: float, unit: str, analyte: str) -> float | None:
    """``value`` in ``unit`` expressed in the analyte's canonical unit; ``None`` if not convertible."""
    factor = _factor(analyte, unit)
    if factor is None:
        return None
    return value * factor


@dataclass(frozen=True)
class NormalisedQuantity:
    value: float  # canonical unit
    original_value: float
    original_unit: str
    comparator: str | None = None  # "<", "<=", ">=", ">" as reported (e.g. eGFR ">60")


def quantity_unit(quantity: dict[str, Any]) -> str | None:
    """The unit of a FHIR Quantity: the UCUM ``code`` when it is UCUM, else ``unit``."""
    code = quantity.get("code")
    system = quantity.get("system")
    unit = quantity.get("unit")
    if isinstance(code, str) and code.strip() and (system in (None, "http://unitsofmeasure.org")):
        return code
    if isinstance(unit, str) and unit.strip():
        return unit
    if isinstance(code, str) and code.strip():
        return code
    return None


def to_canonical(quantity: Any, analyte: str) -> NormalisedQuantity | None:
    """Normalise a FHIR Quantity (raw JSON) for ``analyte``; ``None`` when it cannot be used."""
    if not isinstance(quantity, dict):
        return None
    value = quantity.get("value")
    if not isinstance(value, (int, float)) or not is_number(value):
        return None
    # The UCUM code first, then the human unit, then the code whatever its system.
    tried = None
    for unit in (quantity_unit(quantity), quantity.get("unit"), quantity.get("code")):
        if unit == tried or not isinstance(unit, str) or not unit.strip():
            continue
        tried = unit
        factor = _factor(analyte, unit)
        if factor is not None:
            comparator = quantity.get("comparator")
            return NormalisedQuantity(
                value=float(value) * factor,
                original_value=float(value),
                original_unit=unit,
                comparator=comparator if isinstance(comparator, str) else None,
            )
    return None


def payne_corrected_calcium(calcium_mg_dl: float, albumin_g_dl: float) -> float:
    """Albumin-corrected total calcium, mg/dL (both inputs in canonical units)."""
    return calcium_mg_dl + PAYNE_COEFFICIENT * (PAYNE_REFERENCE_ALBUMIN_G_DL - albumin_g_dl)


def calcium_phosphate_product(calcium_mg_dl: float, phosphate_mg_dl: float) -> float:
    """Ca x P in mg^2/dL^2."""
    return calcium_mg_dl * phosphate_mg_dl


# A result sent as text: an optional comparator, a number, an optional unit ("<3.0", "> 1000
# pg/mL", "2,45 mmol/L"). A comma is a decimal comma unless it groups thousands ("1,200").
_STRING_RESULT = re.compile(
    r"^\s*(?P<comparator><=|>=|<|>|\u2264|\u2265)?\s*(?P<number>[0-9]{1,7}(?:[.,][0-9]{1,6})?)\s*(?P<unit>[^\s0-9<>].{0,29})?\s*$"
)
_COMPARATORS = {"\u2264": "<=", "\u2265": ">="}


def quantity_from_string(text: Any, analyte: str) -> tuple[dict[str, Any], bool] | None:
    """A FHIR Quantity (raw JSON) read from a ``valueString``, and whether its unit was assumed
    (a bare number is read in the analyte's canonical unit, and the card says so); ``None`` when
    the text is not a single result."""
    if not isinstance(text, str):
        return None
    match = _STRING_RESULT.match(text)
    if match is None:
        return None
    number = match.group("number")
    if "," in number:
        whole, _, fraction = number.partition(",")
        number = whole + fraction if len(fraction) == 3 else f"{whole}.{fraction}"
    comparator = match.group("comparator")
    quantity: dict[str, Any] = {"value": float(number)}
    if comparator:
        quantity["comparator"] = _COMPARATORS.get(comparator, comparator)
    unit = (match.group("unit") or "").strip()
    assumed = not unit
    quantity["unit"] = unit or CANONICAL_UNIT[analyte]
    return quantity, assumed


def is_plausible(analyte: str, value: float) -> bool:
    """Whether a value (canonical unit) can be a real result: finite and within the analyte's
    plausible range (a unit or typing error otherwise, never acted on)."""
    if not math.isfinite(value):
        return False
    bounds = ANALYTES[analyte].plausible
    return bounds is None or bounds[0] <= value <= bounds[1]
