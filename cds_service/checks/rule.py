"""What a rule is: one artifact per recommendation, under one name.

A rule's name (``c1_calcium_binders``) is shared by its check module here, its card content
(``cards/rules/<name>.toml``), its fixtures (``fhir_fixtures/c1-...``) and its test module
(``tests/checks/test_<name>.py``). The runner (``cds_service.checks``) calls an order rule only
for an order of its drug class, and hands every rule the lab facts read once per hook call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cds_service.checks.findings import Finding
from cds_service.checks.labs import LabFacts
from cds_service.patient.model import OrderUnderReview, PatientRecord

OrderCheck = Callable[[PatientRecord, OrderUnderReview, LabFacts], list[Finding]]
ChartCheck = Callable[[PatientRecord, LabFacts], list[Finding]]


@dataclass(frozen=True)
class OrderRule:
    """A check of one medication order (a draft on order hooks, an active order on patient-view)."""

    name: str  # artifact name, e.g. "c1_calcium_binders"
    drug_class: str  # the class an order must have for the rule to apply
    finding_ids: tuple[str, ...]  # the rule ids its findings carry (feedback is counted by these)
    check: OrderCheck

    def applies(self, review: OrderUnderReview) -> bool:
        return self.drug_class in review.order.drug_classes


@dataclass(frozen=True)
class ChartRule:
    """A check of the whole chart, run on patient-view."""

    name: str
    finding_ids: tuple[str, ...]
    check: ChartCheck
