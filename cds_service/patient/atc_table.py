"""Read-only access to the generated WHO ATC table (``data/atc_generated.json``).

What: every ATC code, with its WHO name as WHO writes it, under the groups the service watches or
must tell apart: vitamin K antagonists and their substitutes (B01AA, B01AE, B01AF), vitamin D
(A11CC, A11CB, H05BX, topical D05AX), calcitonin (H05BA), phosphate and potassium binders (V03AE),
antidotes incl. thiosulfate (V03AB), calcium and magnesium salts (A12AA, A12AX, A12CC), iron
(B03A) and antacids (A02AA..A02AD). The declared prefixes are in ``provenance()["prefixes"]``.

Why: a drug family is an ATC subtree (every code under B01AA is a vitamin K antagonist,
fluindione B01AA12 included), so membership is a prefix test on codes taken from the source.

The JSON is written by ``tools/generate_atc_table.py`` (never edit it by hand; its tests check
it is exactly what the generator makes from the source). Loading is lazy and cached: the file is
read and parsed once per process, on first use. Standard library only.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from cds_service.patient.generated import load_table

__all__ = ["atc_codes_under", "atc_name", "atc_parent_names", "provenance"]

_FILENAME = "atc_generated.json"

# Lengths of the ATC levels 1-4 (A, A12, A12A, A12AA); a level-5 code has 7 characters.
_ANCESTOR_LENGTHS = (1, 3, 4, 5)


def _table() -> dict[str, Any]:
    return load_table(_FILENAME)


@lru_cache(maxsize=1)
def _codes() -> dict[str, str]:
    return {str(code): str(name) for code, name in _table()["codes"].items()}


@lru_cache(maxsize=1)
def _sorted_codes() -> tuple[str, ...]:
    return tuple(sorted(_codes()))


def _normalise(code: str) -> str:
    return code.strip().upper()


def atc_name(code: str) -> str | None:
    """WHO name of the code, as WHO writes it (e.g. "B01AA12" -> "fluindione"); case and surrounding
    spaces of ``code`` are ignored.

    None when the code is outside the table: either not an ATC code, retired by WHO, or in a
    group the table does not cover. It is not a statement that the drug is harmless.
    """
    return _codes().get(_normalise(code))


@lru_cache(maxsize=256)
def _under(prefix: str) -> tuple[str, ...]:
    return tuple(code for code in _sorted_codes() if code.startswith(prefix))


def atc_codes_under(prefix: str) -> tuple[str, ...]:
    """Every code of the table that starts with ``prefix``, sorted, the prefix's own code
    included when it is in the table ("B03AC" is itself the code of parenteral iron).

    Case and surrounding spaces are ignored; a blank prefix gives () rather than every code.
    """
    normalised = _normalise(prefix)
    return _under(normalised) if normalised else ()


def atc_parent_names(code: str) -> tuple[tuple[str, str], ...]:
    """(code, name) of the ancestors of ``code`` that are in the table, shortest first.

    "B01AA12" -> (("B01AA", "vitamin k antagonists"),); "B03AA07" -> (("B03A", "iron
    preparations"), ("B03AA", "iron bivalent, oral preparations")). The code itself is never
    listed, and need not be in the table (a substance WHO adds later still gets its group).
    """
    normalised = _normalise(code)
    codes = _codes()
    return tuple(
        (normalised[:length], codes[normalised[:length]])
        for length in _ANCESTOR_LENGTHS
        if length < len(normalised) and normalised[:length] in codes
    )


def provenance() -> dict[str, Any]:
    """Where the table comes from: repository, commit and file, source sha256 and size,
    licence note, generator version, declared prefixes. A deep copy, safe to modify."""
    return copy.deepcopy(dict(_table()["provenance"]))
