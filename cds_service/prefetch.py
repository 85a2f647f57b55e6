"""Prefetch templates and the code that reads their results: kept together so they cannot drift.

Each service declares the FHIR data it needs as CDS Hooks 2.0 prefetch templates (only 2.0
tokens: ``{{context.patientId}}`` ...). ``PrefetchResolver.resolve`` turns a request into one dict
``key -> resource | Bundle | None`` for the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cds_service.protocol import CDSRequest
from cds_service.terminology import LAB_LOINC, LOINC


def _observations(*analytes: str, count: int) -> str:
    codes = sorted({code for analyte in analytes for code in LAB_LOINC[analyte]})
    code_param = ",".join(f"{LOINC}|{code}" for code in codes)
    return (
        "Observation?patient={{context.patientId}}"
        f"&code={code_param}&_sort=-date&_count={count}"
    )


PREFETCH_TEMPLATES: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active,on-hold",
    "calcium": _observations("calcium", "ionized_calcium", "corrected_calcium", count=10),
    "albumin": _observations("albumin", count=10),
    "phosphate": _observations("phosphate", count=10),
    "pth": _observations("pth", count=6),
    "egfr": _observations("egfr", count=3),
}


@dataclass(frozen=True)
class ResolvedPrefetch:
    """What the engine reads: one value per declared key (``None`` = the EHR has no such data),
    plus the keys that could not be obtained (optional data the cards must admit to missing)."""

    data: dict[str, Any]
    unavailable: dict[str, str]


class PrefetchResolver:
    """Uses what the client sent. Fetching missing keys from ``fhirServer`` is issue #4."""

    def __init__(self, settings=None):
        self.settings = settings

    def resolve(self, request: CDSRequest, templates: dict[str, str]) -> ResolvedPrefetch:
        sent = request.prefetch or {}
        data: dict[str, Any] = {}
        unavailable: dict[str, str] = {}
        for key in templates:
            if key in sent:
                data[key] = sent[key]
            else:
                unavailable[key] = "not in prefetch"
        return ResolvedPrefetch(data=data, unavailable=unavailable)
