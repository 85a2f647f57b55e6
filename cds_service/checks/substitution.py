"""Substitution safety: which substitute orders may be offered, and the checks behind each choice.

Every function returns the substitutes to offer plus the ``SafetyCheck``s that were made, so the
card can say what was verified (or why a substitute was withheld). Substitute keys name entries
of ``cards/substitutes.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cds_service.knowledge import thresholds as T
from cds_service.checks.findings import Gap, LabValue, SafetyCheck, Substitution
from cds_service.checks.labs import LabFacts, pth_notes
from cds_service.patient import sources
from cds_service.patient.model import MedicationOrder, PatientRecord

# The drug class of each substitute: an active order of that class makes the substitute a
# duplicate (a second phosphate binder, anticoagulant or calcimimetic), so it is withheld.
SUBSTITUTE_CLASS: dict[str, str] = {
    "sevelamer": "non_calcium_binder",
    "lanthanum": "non_calcium_binder",
    "apixaban": "doac",
    "cinacalcet": "calcimimetic",
}
_DUPLICATE_CHECK = {
    "non_calcium_binder": "no_active_non_calcium_binder",
    "doac": "no_active_doac",
    "calcimimetic": "no_active_calcimimetic",
}


@dataclass(frozen=True)
class SubstitutionPlan:
    substitutions: tuple[Substitution, ...] = ()
    safety_checks: tuple[SafetyCheck, ...] = ()
    notes: tuple[str, ...] = ()
    gaps: tuple[Gap, ...] = field(default=())

    def finding_fields(self) -> dict[str, Any]:
        """What a Finding takes from the plan (its gaps are merged by the caller, in order).
        No substitute offered means the card can only suggest stopping the order."""
        return {
            "substitutions": self.substitutions,
            "stop_only": not self.substitutions,
            "safety_checks": self.safety_checks,
            "notes": self.notes,
        }


def describe_lab(lab: LabValue | None) -> str:
    if lab is None:
        return "no result"
    when = lab.effective.date().isoformat() if lab.effective else "undated"
    stale = ", out of date" if lab.stale else ""
    return f"{lab.value:g} {lab.unit} on {when}{stale}"


def describe_order(order: MedicationOrder) -> str:
    return f"{order.drug_name}, {order.resource_id}"


def _active_of_class(record: PatientRecord, drug_class: str) -> tuple[MedicationOrder, ...]:
    return tuple(m for m in record.medications if drug_class in m.drug_classes)


def _duplicate_check(record: PatientRecord, drug_class: str) -> tuple[SafetyCheck | None, Gap | None]:
    """Whether a drug of ``drug_class`` is already active; a Gap when the list is unavailable."""
    if sources.MEDICATIONS in record.unavailable:
        return None, Gap(
            "prefetch_unavailable", {"key": sources.MEDICATIONS, "why": record.unavailable[sources.MEDICATIONS]}
        )
    active = _active_of_class(record, drug_class)
    check = SafetyCheck(
        key=_DUPLICATE_CHECK[drug_class],
        passed=not active,
        detail="; ".join(describe_order(m) for m in active),
    )
    return check, None


def _plan(
    record: PatientRecord,
    keys: tuple[tuple[str, bool], ...],
    checks: list[SafetyCheck],
    notes: tuple[str, ...] = (),
    gaps: tuple[Gap, ...] = (),
) -> SubstitutionPlan:
    """Offer ``keys`` unless a check failed or an active order of the same class exists."""
    checks = list(checks)
    found_gaps = list(gaps)
    seen_classes: set[str] = set()
    duplicate = False
    for key, _ in keys:
        drug_class = SUBSTITUTE_CLASS[key]
        if drug_class in seen_classes:
            continue
        seen_classes.add(drug_class)
        check, gap = _duplicate_check(record, drug_class)
        if check is not None:
            checks.append(check)
            duplicate = duplicate or not check.passed
        if gap is not None and gap not in found_gaps:
            found_gaps.append(gap)
    blocked = duplicate or any(not c.passed for c in checks)
    subs = () if blocked else tuple(Substitution(key=k, recommended=r) for k, r in keys)
    return SubstitutionPlan(substitutions=subs, safety_checks=tuple(checks), notes=notes, gaps=tuple(found_gaps))


def phosphate_binder_plan(record: PatientRecord) -> SubstitutionPlan:
    """C1: sevelamer (recommended) or lanthanum, unless a calcium-free binder is already active."""
    return _plan(record, (("sevelamer", True), ("lanthanum", False)), [])


def anticoagulant_plan(record: PatientRecord) -> SubstitutionPlan:
    """C2: reduced-dose apixaban only for atrial fibrillation and never with a prosthetic valve."""
    af = record.conditions_of("atrial_fibrillation")
    valves = record.conditions_of("prosthetic_valve")
    checks = [
        SafetyCheck("af_recorded", bool(af), "; ".join(f"{c.display}, {c.resource_id}" for c in af)),
        SafetyCheck("no_prosthetic_valve", not valves, "; ".join(f"{c.display}, {c.resource_id}" for c in valves)),
    ]
    notes = ("anticoagulation_team",) if (valves or not af) else ()
    return _plan(record, (("apixaban", True),), checks, notes=notes)


def cinacalcet_plan(record: PatientRecord, labs: LabFacts) -> SubstitutionPlan:
    """C3: cinacalcet only with a recent PTH of 100-500 pg/mL and a recent corrected calcium that
    is not below 8.4 mg/dL (it lowers calcium). PTH above 500 or below 100 adds a note."""
    pth = labs.latest_pth
    cc = labs.corrected_calcium
    low, high = T.PTH_CINACALCET_RANGE
    pth_ok = pth is not None and not pth.stale and low <= pth.value <= high
    ca_ok = cc is not None and not cc.stale and cc.value >= T.CINACALCET_MIN_CORRECTED_CALCIUM
    checks = [
        SafetyCheck("pth_in_cinacalcet_range", pth_ok, describe_lab(pth)),
        SafetyCheck("corrected_calcium_not_low", ca_ok, describe_lab(cc)),
    ]
    plan = _plan(record, (("cinacalcet", True),), checks, notes=pth_notes(pth))
    if plan.substitutions:
        plan = replace(plan, notes=plan.notes + ("check_calcium_after_cinacalcet",))
    return plan
