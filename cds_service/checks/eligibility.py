"""Who may get a substitute: the states each one declares in ``cards/substitutes.toml``, checked.

A substitute *needs* states (``on_dialysis`` when its dose or indication assumes dialysis,
``phosphate_control_needed`` for a binder, ``apixaban_reduced_dose`` for the 2.5 mg dose ...) and
must *not meet* others (``prosthetic_valve``, ``mitral_stenosis``, ``allergy``,
``active_same_class`` ...). Each is checked here against the record and the lab facts, and becomes
a ``SafetyCheck`` the card lists as met, not met, or not checked:

* a need that is not met withholds the substitute (its blocked note says why and what to do);
* a state to avoid that holds withholds it;
* a need or a state to avoid whose data is unavailable, or was read only in part (a conditions
  list with an unread page, no recent result) is *not checked*: never shown as met, and the
  substitute is withheld. A one-click order is only offered when every check it needs was made
  on complete data;
* a need can hold and still advise against recommending the substitute (phosphate already at
  target, PTH above the parathyroidectomy threshold): it is offered, not recommended.

The wording of every check is in ``cards/common.toml`` under ``[safety.<key>]``: a need's key is
its name, a state to avoid is ``no_<name>`` (``no_active_<class>`` for duplicates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cds_service.checks.findings import Gap, LabValue, SafetyCheck
from cds_service.checks.labs import LabFacts, above, below, calcium_for_rules
from cds_service.checks.modality import dialysis_modality
from cds_service.checks.order_timing import units_per_dose
from cds_service.knowledge import thresholds as T
from cds_service.knowledge.content import CardContent, CardContentError, SubstituteSpec
from cds_service.patient import sources
from cds_service.patient.model import AllergyFact, ConditionFact, MedicationOrder, PatientRecord

# The order a substitute would replace (None on a chart review, where it replaces nothing).
Replaced = MedicationOrder | None


@dataclass(frozen=True)
class State:
    """Whether a state holds (None: not checked, its data is unavailable or partial), the data
    behind the answer, and what the card should add."""

    holds: bool | None
    detail: str
    gap: Gap | None = None
    # The need holds, but the substitute should not be marked recommended (e.g. phosphate at target).
    recommend: bool = True
    # A note (key of common.toml [notes]) that explains this outcome; shown before the
    # substitute's own blocked note for the need.
    note: str | None = None
    # Why the dose was chosen, for the order itself ("age 84: 80 or older").
    dose_basis: str = ""


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


def _fact_line(facts: tuple[ConditionFact, ...]) -> str:
    return "; ".join(f"{c.display} ({c.resource_id})" for c in facts)


def _partial(record: PatientRecord, key: str) -> Gap | None:
    """The gap when a prefetch key's data is unavailable or was read only in part."""
    if key in record.unavailable:
        return Gap("prefetch_unavailable", {"key": key, "why": record.unavailable[key]})
    if key in record.incomplete:
        return Gap("prefetch_incomplete", {"key": key, "why": record.incomplete[key]})
    return None


def _not_checked(gap: Gap) -> State:
    why = gap.params.get("why", "")
    what = "not available" if gap.key == "prefetch_unavailable" else "only partly read"
    return State(None, f"{gap.params.get('key')}: {what} ({why})", gap)


def _recent(lab: LabValue | None) -> LabValue | None:
    return lab if lab is not None and not lab.stale else None


# --- needs -------------------------------------------------------------------------------------


def _on_dialysis(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
    """Dialysis shown (a dialysis entry or procedure, ESRD, CKD 5D): kidney failure alone, CKD 5
    or an eGFR below 15 is not enough for a dose or an indication that needs dialysis."""
    transplant = record.functioning_transplant
    if transplant is not None:
        return State(False, f"kidney transplant {transplant.resource_id} with eGFR {describe_lab(labs.egfr)}")
    confirmed = record.dialysis_confirmed
    if confirmed:
        return State(True, _facts(confirmed))
    gap = _partial(record, sources.CONDITIONS)
    if gap is not None:
        return _not_checked(gap)
    failure = record.conditions_of("kidney_failure")
    if failure:
        return State(
            False, f"kidney failure without dialysis recorded: {_facts(failure)}", note="dialysis_not_confirmed"
        )
    if record.on_dialysis:
        return State(False, f"eGFR {describe_lab(labs.egfr)}, no dialysis recorded", note="dialysis_not_confirmed")
    return State(False, f"eGFR {describe_lab(labs.egfr)}" if labs.egfr else "none recorded")


def _on_haemodialysis(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
    """Haemodialysis, as the record shows it (``modality``): peritoneal dialysis, an unknown
    modality or no dialysis all withhold an order whose dose is given during haemodialysis."""
    found = dialysis_modality(record)
    if found.modality == "haemodialysis":
        return State(True, _fact_line(found.haemodialysis))
    gap = _partial(record, sources.CONDITIONS)
    if found.modality == "peritoneal":
        return State(False, f"peritoneal dialysis recorded: {_fact_line(found.peritoneal)}")
    if gap is not None:
        return _not_checked(gap)
    if found.modality == "none":
        return State(False, "not on dialysis or in kidney failure")
    if found.haemodialysis and found.peritoneal:
        both = f"{_fact_line(found.haemodialysis)} and {_fact_line(found.peritoneal)}"
        return State(False, f"both haemodialysis and peritoneal dialysis recorded: {both}")
    return State(False, f"dialysis modality not recorded: {_fact_line(found.unspecified) or 'eGFR only'}")


def _phosphate_control_needed(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
    """A binder only with a recent phosphate: above target, recommended; within it, offered but
    not recommended on dialysis or in kidney failure (elsewhere a calcium salt at a normal
    phosphate is a supplement: none); below it, none (no aggressive lowering without
    hyperphosphataemia)."""
    low, high = T.PHOSPHATE_TARGET
    phosphate = _recent(labs.phosphate)
    if phosphate is None:
        return State(None, f"phosphate {describe_lab(labs.phosphate)}", note="binder_phosphate_unknown")
    if above(phosphate, high):
        return State(True, f"phosphate {describe_lab(phosphate)}, above {high:g} mg/dL")
    if below(phosphate, low):
        return State(False, f"phosphate {describe_lab(phosphate)}, below {low:g} mg/dL", note="binder_low_phosphate")
    at_target = f"phosphate {describe_lab(phosphate)}, within {low:g}-{high:g} mg/dL"
    if not record.on_dialysis:
        # Outside kidney failure a calcium salt at a normal phosphate is a supplement, not a binder.
        return State(False, f"{at_target}, not on dialysis", note="binder_not_indicated")
    return State(True, at_target, recommend=False, note="phosphate_at_target")


def sevelamer_start_tablets(labs: LabFacts, replaced: Replaced) -> tuple[int, str] | None:
    """Sevelamer 800 mg tablets per meal to start with, and why, by its label: replacing calcium
    acetate whose dose can be read, tablet for tablet (one 800 mg tablet per 667 mg tablet, at most
    3 a meal: the 7.2 g/day maximum); otherwise by phosphate (2 from 7.5 mg/dL, else 1). None
    without a recent phosphate (no binder is offered then: phosphate_control_needed says why)."""
    if replaced is not None and any("calcium acetate" in i for i in replaced.ingredients):
        found = units_per_dose(replaced, T.CALCIUM_ACETATE_TABLET_MG)
        tablets = round(found[0]) if found is not None else 0
        if found is not None and tablets >= 1:
            tablets = min(tablets, T.SEVELAMER_MAX_TABLETS_PER_MEAL)
            return tablets, f"replacing calcium acetate ({found[1]}): tablet for tablet (label)"
    phosphate = _recent(labs.phosphate)
    if phosphate is None:
        return None
    tablets = 1 if below(phosphate, T.SEVELAMER_HIGH_START_PHOSPHATE) else 2
    return tablets, f"phosphate {describe_lab(phosphate)} (label's start by phosphate)"


def _sevelamer_start(tablets: int) -> StateCheck:
    """One sevelamer entry per starting dose (cards/substitutes.toml): met by the entry whose
    number of tablets ``sevelamer_start_tablets`` chose."""

    def check(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
        start = sevelamer_start_tablets(labs, replaced)
        if start is None or start[0] != tablets:
            return State(False, "")
        return State(True, start[1], dose_basis=start[1])

    return check


def _af_recorded(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
    af = record.conditions_of("atrial_fibrillation")
    if af:
        return State(True, _facts(af))
    gap = _partial(record, sources.CONDITIONS)
    return _not_checked(gap) if gap is not None else State(False, "")


def _pth_above_target(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
    """A PTH-lowering drug only for a recent PTH above target; above the parathyroidectomy
    threshold it is still offered, not recommended (the referral note says why)."""
    pth = _recent(labs.latest_pth)
    if pth is None:
        return State(None, describe_lab(labs.latest_pth))
    if not above(pth, T.PTH_CINACALCET_ABOVE):
        note = "pth_at_target" if not below(pth, T.PTH_TARGET[0]) else "pth_below_target"
        return State(False, describe_lab(pth), note=note)
    return State(True, describe_lab(pth), recommend=not above(pth, T.PTH_PARATHYROIDECTOMY_001_004))


def _corrected_calcium_not_low(
    record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced
) -> State:
    calcium = calcium_for_rules(labs)
    if calcium is None or calcium.value.stale:
        return State(None, calcium.describe() if calcium is not None else "no result")
    return State(not calcium.low, calcium.describe())


def _apixaban_criteria(record: PatientRecord, labs: LabFacts) -> tuple[bool | None, str]:
    """Whether the US label's reduced dose applies on dialysis (age 80 or more, or weight 60 kg
    or less): True, False, or None when the data to decide is missing; and the data used."""
    age = record.age_years()
    weight = _recent(labs.body_weight)  # older than 3 months (the analyte table): not used
    parts = [f"age {age}" if age is not None else "age not recorded"]
    parts.append(f"weight {describe_lab(weight)}" if weight is not None else "no recent body weight")
    detail = ", ".join(parts)
    if age is not None and age >= T.APIXABAN_REDUCED_DOSE_AGE:
        return True, f"age {age}: {T.APIXABAN_REDUCED_DOSE_AGE} or older"
    if weight is not None and not above(weight, T.APIXABAN_REDUCED_DOSE_WEIGHT_KG):
        return True, f"weight {describe_lab(weight)}: {T.APIXABAN_REDUCED_DOSE_WEIGHT_KG:g} kg or less"
    if age is not None and weight is not None:
        return False, f"{detail}: under {T.APIXABAN_REDUCED_DOSE_AGE} and over {T.APIXABAN_REDUCED_DOSE_WEIGHT_KG:g} kg"
    return None, detail


def _apixaban_standard_dose(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
    if not record.dialysis_confirmed:
        return State(False, "")  # the label's doses on dialysis: on_dialysis says why not
    reduced, detail = _apixaban_criteria(record, labs)
    if reduced is None:
        return State(None, detail, note="apixaban_dose_undetermined")
    return State(not reduced, detail, dose_basis=detail if not reduced else "")


def _apixaban_reduced_dose(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
    if not record.dialysis_confirmed:
        return State(False, "")
    reduced, detail = _apixaban_criteria(record, labs)
    if reduced is None:
        return State(None, detail, note="apixaban_dose_undetermined")
    return State(reduced, detail, dose_basis=detail if reduced else "")


# --- states to avoid ---------------------------------------------------------------------------


def _condition_state(kind: str) -> StateCheck:
    """A recorded condition of ``kind`` rules the substitute out; a conditions list that could
    not be read whole leaves it not checked."""

    def check(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
        found = record.conditions_of(kind)
        if found:
            return State(True, _facts(found))
        gap = _partial(record, sources.CONDITIONS)
        return _not_checked(gap) if gap is not None else State(False, "")

    return check


def allergy_touches(allergy: AllergyFact, spec: SubstituteSpec) -> bool:
    """Whether an allergy or intolerance rules out a substitute: the same ingredient, or a
    substance of the same class whose ingredient is not known (the safer reading)."""
    ingredient = spec.ingredient.lower()
    if any(ingredient in name or name.split(" ")[0] == ingredient.split(" ")[0] for name in allergy.ingredients):
        return True
    return spec.drug_class in allergy.drug_classes and not allergy.ingredients


def _allergy(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
    touching = [a for a in record.allergies if allergy_touches(a, spec)]
    if touching:
        return State(True, "; ".join(f"{a.display}, {a.resource_id}" for a in touching))
    gap = _partial(record, sources.ALLERGIES)
    return _not_checked(gap) if gap is not None else State(False, spec.ingredient)


def _active_same_class(record: PatientRecord, labs: LabFacts, spec: SubstituteSpec, replaced: Replaced) -> State:
    """An active order, home-list entry or recent dose of the class, or a draft of this call."""
    active = [describe_order(m) for m in record.medications if spec.drug_class in m.drug_classes]
    drafted = [f"{describe_order(m)}, drafted now" for m in record.drafts if spec.drug_class in m.drug_classes]
    if active or drafted:
        return State(True, "; ".join(active + drafted), note="substitute_already_drafted" if drafted else None)
    gap = _partial(record, sources.MEDICATIONS)
    return _not_checked(gap) if gap is not None else State(False, "")


StateCheck = Callable[[PatientRecord, LabFacts, SubstituteSpec, Replaced], State]

NEEDS: dict[str, StateCheck] = {
    "on_dialysis": _on_dialysis,
    "on_haemodialysis": _on_haemodialysis,
    "phosphate_control_needed": _phosphate_control_needed,
    "af_recorded": _af_recorded,
    "pth_above_target": _pth_above_target,
    "corrected_calcium_not_low": _corrected_calcium_not_low,
    "apixaban_standard_dose": _apixaban_standard_dose,
    "apixaban_reduced_dose": _apixaban_reduced_dose,
    "sevelamer_start_1_tablet": _sevelamer_start(1),
    "sevelamer_start_2_tablets": _sevelamer_start(2),
    "sevelamer_start_3_tablets": _sevelamer_start(3),
}
# Notes the states above can ask for (start-up checks each has wording in common.toml).
STATE_NOTES = (
    "dialysis_not_confirmed",
    "binder_phosphate_unknown",
    "binder_low_phosphate",
    "phosphate_at_target",
    "pth_at_target",
    "pth_below_target",
    "apixaban_dose_undetermined",
    "substitute_already_drafted",
)
NOT_WITH: dict[str, StateCheck] = {
    "prosthetic_valve": _condition_state("prosthetic_valve"),
    "mitral_stenosis": _condition_state("mitral_stenosis"),
    "antiphospholipid_syndrome": _condition_state("antiphospholipid_syndrome"),
    "bowel_obstruction": _condition_state("bowel_obstruction"),
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
    notes: tuple[str, ...]  # notes for needs that were not met (blocked_notes) and outcomes
    gaps: tuple[Gap, ...]  # states that could not be checked
    unmet_needs: tuple[str, ...]  # needs not met or not checked
    recommendable: bool = True  # offered, and nothing advises against recommending it
    dose_basis: str = ""  # what chose the dose, when a need chose it


def evaluate(spec: SubstituteSpec, record: PatientRecord, labs: LabFacts, replaced: Replaced = None) -> Eligibility:
    """What was checked for ``spec``, and whether it may be offered; ``replaced``: the order it
    would replace (its dose can set the substitute's, e.g. calcium acetate to sevelamer)."""
    checks: list[SafetyCheck] = []
    notes: list[str] = []
    gaps: list[Gap] = []
    unmet: list[str] = []
    blocked: list[str] = []
    recommendable = True
    basis = ""
    for need in spec.needs + spec.dose_needs:
        state = NEEDS[need](record, labs, spec, replaced)
        if state.holds is False and need in spec.dose_needs:
            unmet.append(need)  # the other dose of the same drug is the one that fits
            continue
        checks.append(SafetyCheck(need, state.holds, state.detail))
        if state.gap is not None:
            gaps.append(state.gap)
        recommendable = recommendable and state.recommend
        basis = basis or state.dose_basis
        if state.holds:
            if state.note:
                notes.append(state.note)
            continue
        unmet.append(need)
        # What the state says of itself (phosphate low, dialysis not shown) ...
        if state.note:
            notes.append(state.note)
        # ... and what the substitute says when this need blocks it ("start it by hand at the
        # label's dose"), kept for after the states to avoid: advice to order it by hand is wrong
        # when something rules it out altogether (a mechanical valve).
        if need in spec.blocked_notes:
            blocked.append(spec.blocked_notes[need])
    avoided = True
    for name in spec.not_with:
        state = NOT_WITH[name](record, labs, spec, replaced)
        if state.gap is not None:
            gaps.append(state.gap)
        if state.note and state.holds:
            notes.append(state.note)
        checks.append(
            SafetyCheck(_avoid_key(name, spec), None if state.holds is None else not state.holds, state.detail)
        )
        # Not checked (None) withholds the substitute as surely as a state that holds.
        avoided = avoided and state.holds is False
    if avoided:
        notes += blocked
    offered = not unmet and avoided
    return Eligibility(
        spec.key, offered, tuple(checks), tuple(notes), tuple(gaps), tuple(unmet), offered and recommendable, basis
    )


def validate(c: CardContent) -> None:
    """Start-up: every substitute declares only states this module can check, and each safety
    check it can produce has wording. Raises ``CardContentError`` naming each problem."""
    problems: list[str] = []
    for key, spec in c.substitutes.items():
        problems += [f"substitutes.{key} needs unknown state {n!r}" for n in spec.needs if n not in NEEDS]
        problems += [
            f"substitutes.{key} lists unknown state to avoid {n!r}" for n in spec.not_with if n not in NOT_WITH
        ]
        problems += [f"substitutes.{key} needs unknown dose state {n!r}" for n in spec.dose_needs if n not in NEEDS]
        needs = [n for n in spec.needs + spec.dose_needs if n in NEEDS]
        wording = needs + [_avoid_key(n, spec) for n in spec.not_with if n in NOT_WITH]
        problems += [f"substitutes.{key}: no [safety.{w}] wording in common.toml" for w in wording if w not in c.safety]
        if not spec.drug_class or not spec.ingredient:
            problems.append(f"substitutes.{key} must declare its class and ingredient")
    problems += [f"eligibility note {n!r} has no [notes.{n}] in common.toml" for n in STATE_NOTES if n not in c.notes]
    if problems:
        raise CardContentError("substitute eligibility problems:\n  " + "\n  ".join(problems))
