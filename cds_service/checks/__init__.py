"""The clinical checks: pure functions from a PatientRecord (and an order under review) to Findings.

No Flask, no JSON, no wording: a Finding carries rule id, evidence and what could not be
checked; ``cds_service.render`` turns it into a card using the text in ``cards/``.

One module per rule (``c1_calcium_binders`` ... ``c6_calcimimetic_hypocalcaemia``), each
declaring its ``RULE``. This runner:

* ``check_order(record, review, labs)``: every order rule whose drug class the order has (one
  finding per problem per order), completed by X1 when the conditions are unknown;
* ``run_checks(record, orders, labs)``: ``check_order`` over every order under review;
* ``review_chart(record, labs)``: the chart rules, for patient-view (M1 mineral status).
"""

from __future__ import annotations

from collections.abc import Sequence

from cds_service.checks import (
    c1_calcium_binders,
    c2_vitamin_k_antagonists,
    c3_active_vitamin_d,
    c4_iron,
    c5_aluminium_binders,
    c6_calcimimetic_hypocalcaemia,
    m1_mineral_status,
    x1_check_incomplete,
)
from cds_service.checks.findings import Finding, Gap, LabValue, SafetyCheck, Substitution
from cds_service.checks.labs import LabFacts, lab_facts
from cds_service.checks.rule import ChartRule, OrderRule
from cds_service.patient.model import OrderUnderReview, PatientRecord

__all__ = [
    "CHART_RULES",
    "Finding",
    "Gap",
    "LabFacts",
    "LabValue",
    "MONITORED_CLASSES",
    "ORDER_RULES",
    "RULE_INCOMPLETE",
    "SafetyCheck",
    "Substitution",
    "check_order",
    "lab_facts",
    "review_chart",
    "run_checks",
]

ORDER_RULES: tuple[OrderRule, ...] = (
    c1_calcium_binders.RULE,
    c2_vitamin_k_antagonists.RULE,
    c3_active_vitamin_d.RULE,
    c4_iron.RULE,
    c5_aluminium_binders.RULE,
    c6_calcimimetic_hypocalcaemia.RULE,
)
CHART_RULES: tuple[ChartRule, ...] = (m1_mineral_status.RULE,)

# Drug classes the service monitors; an order of any other class never produces a card.
MONITORED_CLASSES = frozenset(rule.drug_class for rule in ORDER_RULES)
RULE_INCOMPLETE = x1_check_incomplete.RULE_ID


def check_order(record: PatientRecord, review: OrderUnderReview, labs: LabFacts | None = None) -> list[Finding]:
    """Every finding for one order (``[]`` for an order of no monitored class). ``labs``: the
    lab facts of this record when the caller has them (read once per hook call)."""
    rules = [rule for rule in ORDER_RULES if rule.applies(review)]
    if not rules:
        return []
    labs = labs or lab_facts(record)
    findings = [finding for rule in rules for finding in rule.check(record, review, labs)]
    return x1_check_incomplete.complete(record, review, findings)


def run_checks(
    record: PatientRecord, orders: Sequence[OrderUnderReview], labs: LabFacts | None = None
) -> list[Finding]:
    labs = labs or lab_facts(record)
    return [finding for review in orders for finding in check_order(record, review, labs)]


def review_chart(record: PatientRecord, labs: LabFacts | None = None) -> list[Finding]:
    labs = labs or lab_facts(record)
    return [finding for rule in CHART_RULES for finding in rule.check(record, labs)]
