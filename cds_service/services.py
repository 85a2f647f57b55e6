"""The CDS services this server offers: each declares its hook, its prefetch keys (template,
description, required or optional) and is listed by discovery from this one place.

Observation templates search every LOINC code the record reads for their analytes (from the
analyte table), so the search and the reader cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cds_service.fhir.templates import PrefetchKey
from cds_service.patient import sources
from cds_service.patient.analytes import ANALYTES
from cds_service.patient.terminology import DIALYSIS_PROCEDURE_CODES, LOINC, PARATHYROIDECTOMY_PROCEDURE_CODES
from cds_service.protocol import DiscoveryResponse, DiscoveryService


def _observations(description: str, source: str, count: int) -> PrefetchKey:
    codes = sorted(code for a in ANALYTES.values() if a.source == source for code in a.loinc | a.extra_loinc)
    code_param = ",".join(f"{LOINC}|{code}" for code in codes)
    template = f"Observation?patient={{{{context.patientId}}}}&code={code_param}&_sort=-date&_count={count}"
    return PrefetchKey(template, description, newest=count)


def _procedures(description: str, codes: frozenset[tuple[str, str]], count: int) -> PrefetchKey:
    """The newest ``count`` Procedures of the patient with one of ``codes`` (system, code)."""
    code_param = ",".join(f"{system}|{code}" for system, code in sorted(codes))
    template = f"Procedure?patient={{{{context.patientId}}}}&code={code_param}&_sort=-date&_count={count}"
    return PrefetchKey(template, description, newest=count)


# Every key the services ask for. ``_count`` on conditions and medications is a page size (a
# bounded response), not a limit: further pages are followed up to CDS_FHIR_MAX_PAGES.
PREFETCH_KEYS: dict[str, PrefetchKey] = {
    sources.PATIENT: PrefetchKey("Patient/{{context.patientId}}", "the patient record"),
    sources.CONDITIONS: PrefetchKey("Condition?patient={{context.patientId}}&_count=100", "the patient's conditions"),
    sources.MEDICATIONS: PrefetchKey(
        "MedicationRequest?patient={{context.patientId}}&status=active,on-hold&_count=100",
        "the patient's active and on-hold medications",
    ),
    # What the patient takes besides the orders: the home medication list and the doses given
    # (IV sterols at dialysis). Administrations: the newest first, enough for several weeks of
    # thrice-weekly dialysis doses of a few drugs.
    sources.MEDICATION_STATEMENTS: PrefetchKey(
        "MedicationStatement?patient={{context.patientId}}&status=active,intended,on-hold&_count=100",
        "the patient's home medication list",
    ),
    sources.MEDICATION_ADMINISTRATIONS: PrefetchKey(
        "MedicationAdministration?patient={{context.patientId}}&_sort=-effective-time&_count=50",
        "recent medication administrations",
        newest=50,
    ),
    # Allergies and intolerances: a substitute they touch is never offered.
    sources.ALLERGIES: PrefetchKey(
        "AllergyIntolerance?patient={{context.patientId}}&_count=100", "the patient's allergies and intolerances"
    ),
    sources.CALCIUM: _observations("recent calcium results", sources.CALCIUM, count=10),
    sources.ALBUMIN: _observations("recent albumin results", sources.ALBUMIN, count=10),
    sources.PHOSPHATE: _observations("recent phosphate results", sources.PHOSPHATE, count=10),
    sources.PTH: _observations("recent PTH results", sources.PTH, count=6),
    sources.EGFR: _observations("recent eGFR results", sources.EGFR, count=3),
    # CRP: the latest result and the one before it show the trend (seeds 001, 004).
    sources.CRP: _observations("recent CRP results", sources.CRP, count=3),
    # Body weight: with the age, chooses the apixaban dose on dialysis (US label).
    sources.WEIGHT: _observations("recent body weights", sources.WEIGHT, count=3),
    # A parathyroidectomy in the last months (hungry bone): calcium and active vitamin D are then
    # not stopped in one click.
    sources.PARATHYROIDECTOMY: _procedures("recent parathyroid surgery", PARATHYROIDECTOMY_PROCEDURE_CODES, count=3),
    # Recent dialysis sessions: evidence of dialysis where no ESRD/dependence Condition is coded.
    sources.PROCEDURES: _procedures("recent dialysis procedures", DIALYSIS_PROCEDURE_CODES, count=5),
}


def _keys(*required: str) -> dict[str, PrefetchKey]:
    return {key: replace(spec, required=key in required) for key, spec in PREFETCH_KEYS.items()}


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    usage_requirements: str
    prefetch: Mapping[str, PrefetchKey]

    @property
    def templates(self) -> dict[str, str]:
        return {key: spec.template for key, spec in self.prefetch.items()}

    def discovery_entry(self) -> DiscoveryService:
        return DiscoveryService(
            hook=self.hook,
            id=self.id,
            title=self.title,
            description=self.description,
            usageRequirements=self.usage_requirements,
            prefetch=self.templates,
        )


_USAGE = (
    "For adults with kidney failure on dialysis and/or calciphylaxis. Needs the patient's "
    "Conditions, active MedicationRequests and recent calcium, albumin, phosphate, PTH, eGFR and "
    "CRP results (prefetch, or a FHIR server the service is configured to trust)."
)

SERVICES: dict[str, ServiceDefinition] = {
    s.id: s
    for s in (
        ServiceDefinition(
            id="calciphylaxis-patient-view",
            hook="patient-view",
            title="Calciphylaxis medication and mineral review",
            description=(
                "On opening the chart of a dialysis patient or a patient with calciphylaxis, flags "
                "active calcium-based phosphate binders, vitamin K antagonists, active vitamin D "
                "sterols, iron, aluminium binders past 4 weeks and calcimimetics in hypocalcaemia, "
                "and summarises calcium, phosphate, PTH and CRP against targets, with sodium "
                "thiosulfate as an order for haemodialysis patients."
            ),
            usage_requirements=_USAGE,
            # Reviewing the chart: without conditions or medications there is nothing to review.
            prefetch=_keys(sources.CONDITIONS, sources.MEDICATIONS),
        ),
        ServiceDefinition(
            id="calciphylaxis-order-select",
            hook="order-select",
            title="Calciphylaxis check on medication selection",
            description=(
                "When a calcium-based binder, a vitamin K antagonist, an active vitamin D sterol, "
                "iron, an aluminium binder or a calcimimetic is selected for a dialysis or "
                "calciphylaxis patient, warns and offers a safer substitute order in one click."
            ),
            usage_requirements=_USAGE,
            # The orders under review come in the context: everything else is optional and the
            # cards say what could not be checked.
            prefetch=_keys(),
        ),
        ServiceDefinition(
            id="calciphylaxis-order-sign",
            hook="order-sign",
            title="Calciphylaxis check before signing medication orders",
            description=(
                "Before orders are signed, checks every draft medication order for calcium-based "
                "binders, vitamin K antagonists, active vitamin D sterols, iron, aluminium binders "
                "and calcimimetics in dialysis or calciphylaxis patients, with substitute orders."
            ),
            usage_requirements=_USAGE,
            prefetch=_keys(),
        ),
    )
}


def discovery_document() -> dict[str, Any]:
    entries = [service.discovery_entry() for service in SERVICES.values()]
    return DiscoveryResponse(services=entries).to_json()
