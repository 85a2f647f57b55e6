"""Loading of the generated tables in ``data/`` (``rxnorm_generated.json``, ``atc_generated.json``,
``ndc_generated.json``), shared by ``rxnorm_table``, ``atc_table`` and ``ndc_table``.

Lazy and cached: a file is read and parsed once per process, on first use, and every later call
with the same file name returns the same dict (callers must not modify it). Standard library only,
and nothing else from the package: this module sits at the bottom of ``patient``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

__all__ = ["load_table"]

_PACKAGE = "cds_service.patient"
_FOLDER = "data"


@cache
def load_table(filename: str) -> dict[str, Any]:
    """The parsed JSON of ``data/<filename>`` in this package (shared; do not modify it)."""
    resource = files(_PACKAGE).joinpath(_FOLDER, filename)
    table: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return table
