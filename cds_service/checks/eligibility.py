"""Who may get a substitute: the states each one declares in ``cards/substitutes.toml``, checked.

A substitute *needs* states (``on_dialysis`` when its dose assumes dialysis, ``on_haemodialysis``
when it is given during haemodialysis sessions ...) and must *not
meet* others (``prosthetic_valve``, ``allergy``, ``active_same_class``). Each is checked here
against the record and the lab facts, and becomes a ``SafetyCheck`` the card lists, met or not:

* a need that is not met, or cannot be verified (no recent result), withholds the substitute;
* a state to avoid that holds withholds it; one that cannot be checked because its data is
  unavailable (no medication or allergy list) does not, but the card says it was not checked.

The wording of every check is in ``cards/common.toml`` under ``[safety.<key>]``: a need's key is
its name, a state to avoid is ``no_<name>`` (``no_active_<class>`` for duplicates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cds_service.checks.findings import Gap, LabValue, SafetyCheck
from cds_service.checks.labs import LabFacts, above, calcium_for_rules, is_within
from cds_service.checks.modality import dialysis_modality
from cds_service.knowledge import thresholds as T
from cds_service.knowledge.content import CardContent, CardContentError, SubstituteSpec
from cds_service.patient import sources
from cds_service.patient.analytes import ANALYTES
from cds_service.patient.model import AllergyFact, ConditionFact, MedicationOrder, PatientRecord


@dataclass(frozen=True)
class State:
    """Whether a state holds (None: its data is unavailable) and the data behind the answer."""

    holds: bool | None
    detail: str
    gap: Gap | None = None


def describe_lab(lab: LabValue | None) -> str:
    if lab is None:
        return "no result"
    when = lab.effective.date().isoformat() if lab.effective else "undated"
    stale = ", out of date" if lab.stale else ""
    comparator = lab.comparator or ""
    return f"{comparator}{lab.value:g} {lab.unit} on {when}{stale}"


def describe_order(order: MedicationOrder) -> str:
    return f"{order.drug_name}, {order.resource_id}"


def _facts(facts: tuple[ConditionFact, ...]) -> str:
    return "; ".join(f"{c.display}, {c.resource_id}" for c in facts)


# --- needs -------------------------------------------------------------------------------------


def _on_dialysis(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec) -> State:
    transplant = record.functioning_transplant
    if transplant is not None:
        egfr = describe_lab(labs.egfr)
        return State(False, f"kidney transplant {transplant.resource_id} with eGFR {egfr}")
    evidence = record.conditions_of("dialysis") + record.conditions_of("kidney_failure")
    if evidence:
        return State(True, _facts(evidence))
    if record.on_dialysis:
        return State(True, f"eGFR {describe_lab(labs.egfr)}")
    return State(False, f"eGFR {describe_lab(labs.egfr)}" if labs.egfr else "none recorded")


def _fact_line(facts: tuple[ConditionFact, ...]) -> str:
    return "; ".join(f"{c.display} ({c.resource_id})" for c in facts)


def _on_haemodialysis(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec) -> State:
    """Haemodialysis, as the record shows it (``modality``): peritoneal dialysis, an unknown
    modality or no dialysis all withhold an order whose dose is given during haemodialysis."""
    found = dialysis_modality(record)
    if found.modality == "haemodialysis":
        return State(True, _fact_line(found.haemodialysis))
    if found.modality == "peritoneal":
        return State(False, f"peritoneal dialysis recorded: {_fact_line(found.peritoneal)}")
    if found.modality == "none":
        return State(False, "not on dialysis or in kidney failure")
    if found.haemodialysis and found.peritoneal:
        both = f"{_fact_line(found.haemodialysis)} and {_fact_line(found.peritoneal)}"
        return State(False, f"both haemodialysis and peritoneal dialysis recorded: {both}")
    return State(False, f"dialysis modality not recorded: {_fact_line(found.unspecified) or 'eGFR only'}")


def _phosphate_control_needed(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec) -> State:
    dialysis = _on_dialysis(record, labs, spec)
    if dialysis.holds:
        return dialysis
    phosphate = labs.phosphate
    target = ANALYTES["phosphate"].target
    high = target[1] if target else None
    if phosphate is not None and not phosphate.stale and high is not None and above(phosphate, high):
        return State(True, f"phosphate {describe_lab(phosphate)}")
    return State(False, f"{dialysis.detail}; phosphate {describe_lab(phosphate)}")


def _af_recorded(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec) -> State:
    af = record.conditions_of("atrial_fibrillation")
    return State(bool(af), _facts(af))


def _pth_in_cinacalcet_range(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec) -> State:
    pth = labs.latest_pth
    ok = pth is not None and not pth.stale and is_within(pth, *T.PTH_CINACALCET_RANGE)
    return State(ok, describe_lab(pth))


def _corrected_calcium_not_low(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec) -> State:
    calcium = calcium_for_rules(labs)
    if calcium is None:
        return State(False, "no result")
    ok = not calcium.value.stale and not calcium.low
    return State(ok, calcium.describe())


# --- states to avoid ---------------------------------------------------------------------------


def _prosthetic_valve(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec) -> State:
    valves = record.conditions_of("prosthetic_valve")
    if valves:
        return State(True, _facts(valves))
    if sources.CONDITIONS in record.unavailable:
        why = record.unavailable[sources.CONDITIONS]
        return State(None, "", Gap("prefetch_unavailable", {"key": sources.CONDITIONS, "why": why}))
    return State(False, "")


def allergy_touches(allergy: AllergyFact, spec: SubstituteSpec) -> bool:
    """Whether an allergy or intolerance rules out a substitute: the same ingredient, or a
    substance of the same class whose ingredient is not known (the safer reading)."""
    ingredient = spec.ingredient.lower()
    if any(ingredient in name or name.split(" ")[0] == ingredient.split(" ")[0] for name in allergy.ingredients):
        return True
    return spec.drug_class in allergy.drug_classes and not allergy.ingredients


def _allergy(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec) -> State:
    touching = [a for a in record.allergies if allergy_touches(a, spec)]
    if touching:
        return State(True, "; ".join(f"{a.display}, {a.resource_id}" for a in touching))
    if sources.ALLERGIES in record.unavailable:
        why = record.unavailable[sources.ALLERGIES]
        return State(None, spec.ingredient, Gap("prefetch_unavailable", {"key": sources.ALLERGIES, "why": why}))
    return State(False, spec.ingredient)


def _active_same_class(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec) -> State:
    if sources.MEDICATIONS in record.unavailable:
        why = record.unavailable[sources.MEDICATIONS]
        return State(None, "", Gap("prefetch_unavailable", {"key": sources.MEDICATIONS, "why": why}))
    active = tuple(m for m in record.medications if spec.drug_class in m.drug_classes)
    return State(bool(active), "; ".join(describe_order(m) for m in active))


StateCheck = Callable[[PatientRecord, LabFacts, SubstituteSpec], State]

NEEDS: dict[str, StateCheck] = {
    "on_dialysis": _on_dialysis,
    "on_haemodialysis": _on_haemodialysis,
    "phosphate_control_needed": _phosphate_control_needed,
    "af_recorded": _af_recorded,
    "pth_in_cinacalcet_range": _pth_in_cinacalcet_range,
    "corrected_calcium_not_low": _corrected_calcium_not_low,
}
NOT_WITH: dict[str, StateCheck] = {
    "prosthetic_valve": _prosthetic_valve,
    "allergy": _allergy,
    "active_same_class": _active_same_class,
}


def _avoid_key(state: str, spec: SubstituteSpec) -> str:
    return f"no_active_{spec.drug_class}" if state == "active_same_class" else f"no_{state}"


@dataclass(frozen=True)
class Eligibility:
    """What was checked for one substitute, and whether it may be offered."""

    key: str
    offered: bool
    checks: tuple[SafetyCheck, ...]
    notes: tuple[str, ...]  # notes for needs that were not met (blocked_notes)
    gaps: tuple[Gap, ...]  # states that could not be checked
    unmet_needs: tuple[str, ...]


def evaluate(spec: SubstituteSpec, record: PatientRecord, labs: LabFacts) -> Eligibility:
    checks: list[SafetyCheck] = []
    notes: list[str] = []
    gaps: list[Gap] = []
    unmet: list[str] = []
    for need in spec.needs:
        state = NEEDS[need](record, labs, spec)
        met = bool(state.holds)
        checks.append(SafetyCheck(need, met, state.detail))
        if not met:
            unmet.append(need)
            if need in spec.blocked_notes:
                notes.append(spec.blocked_notes[need])
    avoided = True
    for name in spec.not_with:
        state = NOT_WITH[name](record, labs, spec)
        if state.gap is not None:
            gaps.append(state.gap)
        if state.holds is None:
            continue  # not checked: said as a gap, not held against the substitute
        checks.append(SafetyCheck(_avoid_key(name, spec), not state.holds, state.detail))
        avoided = avoided and not state.holds
    return Eligibility(spec.key, not unmet and avoided, tuple(checks), tuple(notes), tuple(gaps), tuple(unmet))


def validate(c: CardContent) -> None:
    """Start-up: every substitute declares only states this module can check, and each safety
    check it can produce has wording. Raises ``CardContentError`` naming each problem."""
    problems: list[str] = []
    for key, spec in c.substitutes.items():
        problems += [f"substitutes.{key} needs unknown state {n!r}" for n in spec.needs if n not in NEEDS]
        problems += [
            f"substitutes.{key} lists unknown state to avoid {n!r}" for n in spec.not_with if n not in NOT_WITH
        ]
        wording = [n for n in spec.needs if n in NEEDS] + [_avoid_key(n, spec) for n in spec.not_with if n in NOT_WITH]
        problems += [f"substitutes.{key}: no [safety.{w}] wording in common.toml" for w in wording if w not in c.safety]
        if not spec.drug_class or not spec.ingredient:
            problems.append(f"substitutes.{key} must declare its class and ingredient")
    if problems:
        raise CardContentError("substitute eligibility problems:\n  " + "\n  ".join(problems))
