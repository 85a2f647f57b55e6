"""Which substitute orders a finding offers, and what was checked before each was offered.

The substitutes a rule may offer are listed in its card content (``cards/rules/<rule>.toml``);
who may get each one is declared in ``cards/substitutes.toml`` and checked by
``cds_service.checks.eligibility``. A plan carries the substitutes to offer plus every check that
was made, so the card can say what was verified (or why a substitute was withheld).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from cds_service.checks.eligibility import Eligibility, evaluate
from cds_service.checks.findings import Gap, SafetyCheck, Substitution
from cds_service.checks.labs import LabFacts
from cds_service.knowledge.content import content
from cds_service.patient.model import MedicationOrder, PatientRecord


@dataclass(frozen=True)
class SubstitutionPlan:
    substitutions: tuple[Substitution, ...] = ()
    safety_checks: tuple[SafetyCheck, ...] = ()
    notes: tuple[str, ...] = ()
    gaps: tuple[Gap, ...] = ()
    results: tuple[Eligibility, ...] = ()

    def finding_fields(self) -> dict[str, Any]:
        """What a Finding takes from the plan (its gaps are merged by the caller, in order).
        No substitute offered means the card can only suggest stopping the order."""
        return {
            "substitutions": self.substitutions,
            "stop_only": not self.substitutions,
            "safety_checks": self.safety_checks,
            "notes": self.notes,
        }

    def blocked_only_by(self, *needs: str) -> bool:
        """No substitute offered, and for each the only reason is one of ``needs`` not being met."""
        return (
            not self.substitutions
            and bool(self.results)
            and all(
                r.unmet_needs
                and set(r.unmet_needs) <= set(needs)
                and all(c.passed is True for c in r.checks if c.key not in r.unmet_needs)
                for r in self.results
            )
        )


def _unique(items: list[Any]) -> tuple[Any, ...]:
    """Items in order, repeats dropped (compared by value: Gaps hold dicts, so no hashing)."""
    kept: list[Any] = []
    for item in items:
        if item not in kept:
            kept.append(item)
    return tuple(kept)


def _indications(kinds: tuple[str, ...], record: PatientRecord) -> tuple[str, ...]:
    """The Condition resources (never Procedures) of the given kinds: the order's reason."""
    ids = [fact.resource_id for kind in kinds for fact in record.conditions_of(kind)]
    return tuple(dict.fromkeys(i for i in ids if i.startswith("Condition/")))


def plan_for(
    rule_id: str, record: PatientRecord, labs: LabFacts, replaced: MedicationOrder | None = None
) -> SubstitutionPlan:
    """Check every substitute the rule lists; offer those the patient can take. ``replaced``:
    the order under review that a substitute would replace (None on a chart review)."""
    c = content()
    listed = c.rule(rule_id).substitutes
    results = tuple(evaluate(c.substitutes[key], record, labs, replaced) for key, _ in listed)
    offered_results = [result for result in results if result.offered]
    # The rule's preference holds among what can be offered: when its recommended substitute is
    # withheld (an allergy, say), the first one still offered is recommended instead, unless a
    # check advises against recommending it (phosphate already at target, PTH above 500).
    recommends = any(recommended for _, recommended in listed)
    offered = tuple(
        Substitution(
            key=result.key,
            recommended=recommends and index == 0 and result.recommendable,
            dose_basis=result.dose_basis,
            indications=_indications(c.substitutes[result.key].indication, record),
        )
        for index, result in enumerate(offered_results)
    )
    return SubstitutionPlan(
        substitutions=offered,
        safety_checks=_unique([check for r in results for check in r.checks]),
        notes=_unique([note for r in results for note in r.notes]),
        gaps=_unique([gap for r in results for gap in r.gaps]),
        results=results,
    )


def with_notes(plan: SubstitutionPlan, *notes: str) -> SubstitutionPlan:
    return replace(plan, notes=_unique([*plan.notes, *notes]))
