"""Read-only access to the generated RxNorm table (``data/rxnorm_generated.json``).

What: every RxCUI of the CDS Hooks sandbox's RxNorm extract whose ingredients fall into a drug
class the service watches (calcium_binder, vka, active_vitamin_d, ...) or records to tell
substitutes and look-alikes apart (non_calcium_binder, nutritional_vitamin_d,
parenteral_calcium, iron, magnesium, ...), plus a brand -> classes map.

Why: an order coded with any RxNorm term type (SCD, SBD, SCDC, dose-form group, ...) or typed as
a brand can then be classed with one dictionary lookup, without a terminology server.

The JSON is written by ``tools/generate_rxnorm_table.py`` (never edit it by hand; its tests
check it is exactly what the generator makes from the source). Loading is lazy and cached:
the file is read and parsed once per process, on first use. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cds_service.patient.generated import load_table

__all__ = ["GeneratedDrug", "brand_classes", "generated_drug", "provenance"]

_FILENAME = "rxnorm_generated.json"


@dataclass(frozen=True, slots=True)
class GeneratedDrug:
    """One classed RxNorm concept, as the generator parsed its name.

    ``tty_guess`` is the term type read off the name (SCD, SBD, SCDC, SBDC, SCDG, SBDG, ...;
    the extract ships no TTY). ``ingredients`` are lower-case, as RxNorm writes them.
    ``routes`` come from the dose form, or for a form-less concept from the drugs built on it.
    """

    rxcui: str
    name: str
    tty_guess: str
    ingredients: tuple[str, ...]
    brand: str | None
    dose_form: str | None
    classes: frozenset[str]
    routes: tuple[str, ...]


def _table() -> dict[str, Any]:
    return load_table(_FILENAME)


@lru_cache(maxsize=1)
def _drugs() -> dict[str, GeneratedDrug]:
    return {
        rxcui: GeneratedDrug(
            rxcui=rxcui,
            name=str(row["name"]),
            tty_guess=str(row["tty_guess"]),
            ingredients=tuple(str(i) for i in row["ingredients"]),
            brand=None if row["brand"] is None else str(row["brand"]),
            dose_form=None if row["dose_form"] is None else str(row["dose_form"]),
            classes=frozenset(str(c) for c in row["classes"]),
            routes=tuple(str(r) for r in row["routes"]),
        )
        for rxcui, row in _table()["entries"].items()
    }


def generated_drug(rxcui: str) -> GeneratedDrug | None:
    """The classed concept with this RxCUI, or None when the extract gives it no class.

    None also covers codes absent from the extract: it is not a statement that the drug is
    harmless, only that this table cannot class it.
    """
    return _drugs().get(rxcui.strip())


@lru_cache(maxsize=1)
def brand_classes() -> dict[str, frozenset[str]]:
    """Lower-case brand name -> classes of the products sold under it (e.g. "phoslo").

    Brands versioned by RxNorm ("rolaids reformulated aug 2006") are also listed without the
    "reformulated ..." suffix, since that is how clinicians type them. The returned dict is
    shared; do not modify it.
    """
    brands: dict[str, list[str]] = _table()["brands"]
    return {brand: frozenset(classes) for brand, classes in brands.items()}


def provenance() -> dict[str, Any]:
    """Where the table comes from: source description, sha256 and size, generator version,
    licence note. A copy, safe to modify."""
    return dict(_table()["provenance"])
