"""The CDS services this server offers (what discovery lists and what each endpoint serves)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cds_service.prefetch import PREFETCH_TEMPLATES
from cds_service.protocol import DiscoveryService


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hooks: tuple[str, ...]
    title: str
    description: str
    usage_requirements: str
    prefetch: dict[str, str] = field(default_factory=lambda: dict(PREFETCH_TEMPLATES))

    def discovery_entries(self) -> list[DiscoveryService]:
        # One entry per hook: 2.0 allows the same id for several hooks.
        return [
            DiscoveryService(
                hook=hook,
                id=self.id,
                title=self.title,
                description=self.description,
                usageRequirements=self.usage_requirements,
                prefetch=self.prefetch,
            )
            for hook in self.hooks
        ]


_USAGE = (
    "For adults with kidney failure on dialysis and/or calciphylaxis. Needs the patient's "
    "Conditions, active MedicationRequests and recent calcium, albumin, phosphate, PTH and eGFR "
    "results (prefetch, or a FHIR server the service is configured to trust)."
)

SERVICES: dict[str, ServiceDefinition] = {
    s.id: s
    for s in (
        ServiceDefinition(
            id="calciphylaxis-patient-view",
            hooks=("patient-view",),
            title="Calciphylaxis medication and mineral review",
            description=(
                "On opening the chart of a dialysis patient or a patient with calciphylaxis, flags "
                "active calcium-based phosphate binders, vitamin K antagonists and active vitamin D "
                "sterols, and summarises calcium, phosphate and PTH against targets."
            ),
            usage_requirements=_USAGE,
        ),
        ServiceDefinition(
            id="calciphylaxis-order-select",
            hooks=("order-select",),
            title="Calciphylaxis check on medication selection",
            description=(
                "When a calcium-based binder, a vitamin K antagonist or an active vitamin D sterol "
                "is selected for a dialysis or calciphylaxis patient, warns and offers a safer "
                "substitute order in one click."
            ),
            usage_requirements=_USAGE,
        ),
        ServiceDefinition(
            id="calciphylaxis-order-sign",
            hooks=("order-sign",),
            title="Calciphylaxis check before signing medication orders",
            description=(
                "Before orders are signed, checks every draft medication order for calcium-based "
                "binders, vitamin K antagonists and active vitamin D sterols in dialysis or "
                "calciphylaxis patients, with substitute orders."
            ),
            usage_requirements=_USAGE,
        ),
    )
}


def discovery_document() -> dict:
    from cds_service.protocol import DiscoveryResponse

    entries = [entry for service in SERVICES.values() for entry in service.discovery_entries()]
    return DiscoveryResponse(services=entries).to_json()
