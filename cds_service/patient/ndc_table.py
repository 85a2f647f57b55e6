"""Read-only access to the generated NDC table (``data/ndc_generated.json``).

What: the NDCs of every RxNorm drug that contains an ingredient the service watches (calcium
salts, warfarin, active and nutritional vitamin D, phosphate binders, calcimimetics, sodium
thiosulfate, parenteral iron, magnesium, ...), with the drug's names, substances, strength,
dose form and route.

Why: a US order coded only with an NDC (``http://hl7.org/fhir/sid/ndc``) can then be recognised
without a terminology server: ``ndc_product("0054-0088-13")`` is calcium acetate 667 mg capsules.

NDCs come in several shapes: 10 digits with hyphens (4-4-2, 5-3-2, 5-4-1), the 11-digit 5-4-2
billing form (with or without hyphens), product NDCs without the package part (4-4, 5-3, 5-4),
and 10 digits without hyphens, which is ambiguous (it can be read three ways).
``normalise_ndc`` turns any of them into the 9-digit keys of the table (5-digit labeler +
4-digit product, zero-padded as in the 11-digit form). ``ndc_product`` answers only when the
code can mean exactly one product; an ambiguous code gives None, never a guess.

The JSON is written by ``tools/generate_ndc_table.py`` (never edit it by hand; its tests check it
is exactly what the generator makes from the source). Loading is lazy and cached: the file is
read and parsed once per process, on first use. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cds_service.patient.generated import load_table

__all__ = ["NdcProduct", "ndc_product", "normalise_ndc", "provenance"]

_FILENAME = "ndc_generated.json"

# Segment lengths of hyphenated NDCs: package NDCs (10-digit FDA forms and the 11-digit billing
# form) and product NDCs (labeler-product, no package part).
_PACKAGE_SHAPES = frozenset({(4, 4, 2), (5, 3, 2), (5, 4, 1), (5, 4, 2)})
_PRODUCT_SHAPES = frozenset({(4, 4), (5, 3), (5, 4)})
_IGNORED = re.compile(r"[\s*]+")


@dataclass(frozen=True, slots=True)
class NdcProduct:
    """One drug product as the table knows it.

    ``ndc`` is the product NDC in the 11-digit-normalised 5-4 form (``00054-0088``): the source
    (NLM RxNorm) keeps NDCs as 11 digits, so the labeler's own 10-digit hyphenation is not known.
    ``name`` is the brand (None for a generic). ``nonproprietary`` is the RxNorm clinical drug
    name without brand. ``substances`` are upper-case, in name order. ``route`` is upper-case
    (ORAL, INJECTABLE, TOPICAL, INTRAPERITONEAL, ...): a calcitriol ointment is in the table with
    route TOPICAL, and the caller decides what that means. ``watched`` names the watched
    ingredients the product contains (``"calcium acetate"``, ``"magnesium"``, ...).
    """

    ndc: str
    name: str | None
    nonproprietary: str
    substances: tuple[str, ...]
    strength: str
    dosage_form: str
    route: str
    rxcui: str
    tty: str
    watched: tuple[str, ...]


def _table() -> dict[str, Any]:
    return load_table(_FILENAME)


@lru_cache(maxsize=1)
def _other_keys() -> frozenset[str]:
    return frozenset(str(key) for key in _table()["other_keys"])


def _readings(code: str) -> tuple[tuple[str, str | None], ...]:
    """(9-digit key, 11-digit NDC or None) for every way ``code`` can be read; () if none."""
    text = _IGNORED.sub("", code)
    if not text or not all(part.isdigit() and part.isascii() for part in text.split("-")):
        return ()
    parts = text.split("-")
    shape = tuple(len(part) for part in parts)
    if len(parts) == 1:
        if shape == (11,):
            return ((text[:9], text),)
        if shape == (10,):  # no hyphens: 4-4-2, 5-3-2 or 5-4-1
            eleven = ("0" + text, text[:5] + "0" + text[5:], text[:9] + "0" + text[9:])
            return tuple(dict.fromkeys((ndc[:9], ndc) for ndc in eleven))
        return ()
    if shape in _PACKAGE_SHAPES:
        labeler, product, package = parts
        ndc = labeler.zfill(5) + product.zfill(4) + package.zfill(2)
        return ((ndc[:9], ndc),)
    if shape in _PRODUCT_SHAPES:
        labeler, product = parts
        return ((labeler.zfill(5) + product.zfill(4), None),)
    return ()


def normalise_ndc(code: str) -> tuple[str, ...]:
    """The 9-digit product keys (5-digit labeler + 4-digit product) ``code`` may stand for.

    One key for every unambiguous form (``"0093-1712-01"``, ``"00093171201"``, ``"0093-1712"``,
    ``"00093-1712-01"`` all give ``("000931712",)``); three for 10 digits without hyphens
    (one per reading, 4-4-2 first, duplicates removed); ``()`` for anything that is not an NDC.
    Spaces and asterisks are ignored.
    """
    return tuple(dict.fromkeys(key for key, _ in _readings(code)))


def _product(rxcui: str, key: str) -> NdcProduct:
    row = _table()["drugs"][rxcui]
    return NdcProduct(
        ndc=f"{key[:5]}-{key[5:]}",
        name=None if row["name"] is None else str(row["name"]),
        nonproprietary=str(row["nonproprietary"]),
        substances=tuple(str(s) for s in row["substances"]),
        strength=str(row["strength"]),
        dosage_form=str(row["dosage_form"]),
        route=str(row["route"]),
        rxcui=rxcui,
        tty=str(row["tty"]),
        watched=tuple(str(w) for w in row["watched"]),
    )


_UNKNOWN = "?"  # a reading that is some other (or an undecidable) product


def _match(key: str, ndc: str | None) -> tuple[str, str] | str | None:
    """What one reading points at: (key, rxcui), _UNKNOWN, or None (nothing the source knows)."""
    table = _table()
    row = table["products"].get(key)
    if row is not None:
        return (key, str(row["rxcui"]))
    if key in table["ambiguous_keys"]:
        package = table["packages"].get(ndc) if ndc is not None else None
        return (key, str(package["rxcui"])) if package is not None else _UNKNOWN
    if key in _other_keys():
        return _UNKNOWN
    return None


def ndc_product(code: str) -> NdcProduct | None:
    """The watched product ``code`` identifies, or None.

    None when the code is not an NDC, is not a watched product, or could be more than one
    product: a 10-digit code without hyphens whose readings reach two products (or a watched
    product and another drug), or a product NDC whose labeler reused the product code (then
    only the full package NDC decides). None is not a statement that the drug is harmless.
    """
    found: set[tuple[str, str]] = set()
    for key, ndc in _readings(code):
        match = _match(key, ndc)
        if match == _UNKNOWN:
            return None
        if isinstance(match, tuple):
            found.add(match)
    if len(found) != 1:
        return None
    key, rxcui = found.pop()
    return _product(rxcui, key)


def provenance() -> dict[str, Any]:
    """Where the table comes from: source repository, commit, data date, sha256 and size,
    generator version, licence note, watched ingredients. A copy, safe to modify."""
    return dict(_table()["provenance"])
