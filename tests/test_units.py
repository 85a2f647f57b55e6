"""Unit normalisation (terminology.md section 4) and the derived mineral values."""

from __future__ import annotations

import pytest

from cds_service.patient import units
from cds_service.patient.model import CANONICAL_UNITS


def q(value, code=None, unit=None, system="http://unitsofmeasure.org", **extra):
    quantity = {"value": value, **extra}
    if code is not None:
        quantity["code"] = code
        quantity["system"] = system
    if unit is not None:
        quantity["unit"] = unit
    return quantity


@pytest.mark.parametrize(
    "analyte, quantity, expected",
    [
        ("calcium", q(9.6, "mg/dL"), 9.6),
        ("calcium", q(2.4, "mmol/L"), 2.4 * 4.008),
        ("calcium", q(2400, "umol/L"), 2.4 * 4.008),
        ("corrected_calcium", q(2.5, "mmol/L"), 2.5 * 4.008),
        ("ionized_calcium", q(1.2, "mmol/L"), 1.2),
        ("ionized_calcium", q(4.8, "mg/dL"), 4.8 * 0.2495),
        ("albumin", q(3.1, "g/dL"), 3.1),
        ("albumin", q(31, "g/L"), 3.1),
        ("phosphate", q(5.9, "mg/dL"), 5.9),
        ("phosphate", q(1.9, "mmol/L"), 1.9 * 3.097),
        ("pth", q(420, "pg/mL"), 420),
        ("pth", q(420, "ng/L"), 420),
        ("pth", q(44.5, "pmol/L"), 44.5 * 9.43),
        ("crp", q(12, "mg/L"), 12),
        ("crp", q(1.2, "mg/dL"), 12),
        ("egfr", q(11, "mL/min/{1.73_m2}"), 11),
    ],
)
def test_each_analyte_converts_to_its_canonical_unit(analyte, quantity, expected):
    result = units.to_canonical(quantity, analyte)
    assert result is not None
    assert result.value == pytest.approx(expected)
    assert result.original_value == quantity["value"]


@pytest.mark.parametrize(
    "analyte, spelling",
    [
        ("calcium", "mg/dl"),
        ("calcium", "MG/DL"),
        ("calcium", " mg / dL "),
        ("calcium", "mmol/l"),
        ("phosphate", "mmol/l"),
        ("pth", "pmol/l"),
        ("pth", "PG/ML"),
        ("pth", "ng/l"),
        ("albumin", "g/l"),
        ("albumin", "G/DL"),
        ("egfr", "mL/min/1.73m2"),
        ("egfr", "ml/min/1.73 m²"),
        ("ionized_calcium", "µmol/L"),
    ],
)
def test_unit_spellings_differing_in_case_and_spacing_are_recognised(analyte, spelling):
    assert units.to_canonical(q(1.0, unit=spelling), analyte) is not None


def test_mass_and_molar_factors_are_inverse_of_each_other():
    # Round trips guard against the inverted-factor trap (MIRACUM shipped phosphate 0.3229 as mmol->mg).
    assert pytest.approx(1, abs=1e-3) == units.CALCIUM_MG_DL_PER_MMOL_L * units.CALCIUM_MMOL_L_PER_MG_DL
    assert units.convert(1.0, "mmol/L", "phosphate") == pytest.approx(3.097)
    assert units.convert(10.0, "mg/dL", "calcium") / units.CALCIUM_MG_DL_PER_MMOL_L == pytest.approx(2.495, abs=1e-3)
    assert units.convert(1.0, "pmol/L", "pth") == pytest.approx(9.43)


def test_ucum_code_is_preferred_over_the_display_unit():
    # The human-readable unit says mg/dL, but the UCUM code is the machine truth.
    quantity = q(2.4, code="mmol/L", unit="mg/dL")
    assert units.to_canonical(quantity, "calcium").value == pytest.approx(2.4 * 4.008)


def test_display_unit_is_used_when_the_code_is_not_ucum():
    quantity = q(31, code="GPL", unit="g/L", system="http://example.org/local-units")
    assert units.to_canonical(quantity, "albumin").value == pytest.approx(3.1)


@pytest.mark.parametrize(
    "analyte, quantity",
    [
        ("phosphate", q(1.8, "mEq/L")),  # its charge depends on pH: no single factor, never guessed
        ("calcium", q(9.6, "g/dL")),  # wrong dimension
        ("calcium", q(2.3, "mmol/mol")),
        ("albumin", q(520, "umol/L")),
        ("pth", q(40, "mmol/L")),
        ("egfr", q(40, "mL/min")),  # not normalised to body surface area
        ("phosphate", {"value": 5.0}),  # no unit at all
        ("phosphate", q("5.0", "mg/dL")),  # value is not a number
        ("phosphate", q(True, "mg/dL")),
        ("phosphate", "5 mg/dL"),
    ],
)
def test_unknown_or_incompatible_units_are_not_usable(analyte, quantity):
    assert units.to_canonical(quantity, analyte) is None


def test_every_analyte_has_a_factor_for_its_canonical_unit():
    for analyte, canonical in CANONICAL_UNITS.items():
        assert units.convert(1.0, canonical, analyte) == 1.0, analyte


def test_comparator_is_kept():
    result = units.to_canonical(q(60, "mL/min/{1.73_m2}", comparator=">"), "egfr")
    assert result.comparator == ">"
    assert result.value == 60


def test_payne_raises_calcium_when_albumin_is_low_and_lowers_it_when_high():
    assert units.payne_corrected_calcium(8.8, 2.5) == pytest.approx(8.8 + 0.8 * 1.5)
    assert units.payne_corrected_calcium(10.0, 4.0) == pytest.approx(10.0)
    assert units.payne_corrected_calcium(10.0, 4.5) == pytest.approx(9.6)


def test_calcium_phosphate_product_is_in_mg2_per_dl2():
    assert units.calcium_phosphate_product(9.5, 6.0) == pytest.approx(57.0)


@pytest.mark.parametrize(
    "analyte, quantity, expected",
    [
        # Calcium is divalent: 5.6 mEq/L = 2.8 mmol/L = 11.2 mg/dL (1 mmol/L = 2 mEq/L).
        ("calcium", q(5.6, "mEq/L"), 11.2224),
        ("calcium", q(5.6, "meq/L"), 11.2224),  # the UCUM code
        ("calcium", q(5.6, "mval/l"), 11.2224),  # German laboratories' name for mEq
        ("corrected_calcium", q(4.6, "mEq/L"), 9.2184),
        ("ionized_calcium", q(2.4, "mEq/L"), 1.2),
        ("ionized_calcium", q(4.8, "mg/dL"), 1.1976),
        ("ionized_calcium", q(48, "mg/L"), 1.1976),
        ("calcium", q(96, "mg/L"), 9.6),
        ("calcium", q(9.6, "mg%"), 9.6),
        ("calcium", q(9.6, "mg/100 mL"), 9.6),
        ("calcium", q(9.6, "mg/dL{total}"), 9.6),  # a UCUM annotation changes nothing
        ("phosphate", q(55, "mg/L"), 5.5),
        ("pth", q(0.32, "ng/mL"), 320.0),
        ("albumin", q(3800, "mg/dL"), 3.8),
        ("albumin", q(38, "mg/mL"), 3.8),
        ("albumin", q(3.8, "g%"), 3.8),
    ],
)
def test_units_real_laboratories_report_are_converted_with_their_stated_factors(analyte, quantity, expected):
    normalised = units.to_canonical(quantity, analyte)
    assert normalised is not None
    assert normalised.value == pytest.approx(expected, rel=1e-4)
