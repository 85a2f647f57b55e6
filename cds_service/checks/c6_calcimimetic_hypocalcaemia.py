"""C6: a calcimimetic (cinacalcet, etelcalcetide) while calcium is low (clinical-rules.md; seed 001,
the cinacalcet and etelcalcetide labels).

Seed 001, on cinacalcet: with calcium below 7.5 mg/dL withhold it until calcium is back to
8.0 mg/dL, then restart at the next lower dose (30, 60, 90, 120, 180 mg); with calcium between
7.5 and 8.4 mg/dL raise calcium with calcium-containing binders and/or vitamin D sterols. The
etelcalcetide label gives its own rule: stop it below 7.5 mg/dL (or with symptoms), restart 5 mg
lower once corrected calcium is at or above the lower limit of normal. Both labels: do not start
or increase the dose below the lower limit of normal (8.4 mg/dL). In calciphylaxis hypocalcaemia
may be treated case by case rather than routinely corrected, and the other sources avoid calcium
loading there: a conflict the card states. In scope: calciphylaxis, or dialysis / kidney
failure; anyone else is silent. The calcium is ``calcium_for_rules``: the corrected calcium,
else the ionized calcium against cut-offs derived from the same numbers (thresholds.py), which
the card says.

* below 7.5 mg/dL (recent): withhold, critical. The suggestion puts an active order on hold, or
  removes a draft; the card gives the restart level and dose (cinacalcet: the next lower step,
  when the order's dose can be read; etelcalcetide: 5 mg lower, by its own label);
* 7.5 to below 8.4 mg/dL (recent), a new order or a dose increase (a draft, with no active
  calcimimetic at the same or a higher dose): warning, "do not start or increase now", and the
  suggestion removes the draft (the labels);
* 7.5 to below 8.4 mg/dL (recent), a running order (or a draft at the same or a lower dose):
  calciphylaxis: warning with the conflict (the usual remedy adds calcium); dialysis without
  calciphylaxis: info with the protocol's advice. No suggestion;
* only an out-of-date result below 8.4: info asking for a recheck;
* calcium not low, PTH recent: a new order or a dose increase while PTH is at or below the
  150-300 pg/mL target gets a warning not to start it (the draft is removed; a PTH-lowering drug
  is not needed, and over-suppression is a calciphylaxis risk); a running order with PTH below
  100 pg/mL gets a warning to reduce or stop it (the labels), with no one-click change;
* otherwise silent.
"""

from __future__ import annotations

import re

from cds_service.checks.findings import Fact, Finding, Indicator, LabValue
from cds_service.checks.labs import CalciumReading, LabFacts, above, below, calcium_for_rules, calcium_notes
from cds_service.checks.order_timing import UNIT_DOSE_FORMS, dose_quantity
from cds_service.checks.rule import OrderRule
from cds_service.checks.scope import (
    calciphylaxis_conditions,
    calcium_wanted,
    dialysis_evidence,
    lab_gaps,
    unavailable_gaps,
)
from cds_service.fhir.reading import as_list
from cds_service.knowledge import thresholds as T
from cds_service.patient import sources
from cds_service.patient import terminology as term
from cds_service.patient.model import ConditionFact, MedicationOrder, OrderUnderReview, PatientRecord

RULE_HOLD = "C6-calcimimetic-calcium-below-7-5"
RULE_LOW_CALCIPHYLAXIS = "C6-calcimimetic-low-calcium-calciphylaxis"
RULE_LOW_DIALYSIS = "C6-calcimimetic-low-calcium-dialysis"
RULE_STALE = "C6-calcimimetic-low-calcium-stale-data"
RULE_PTH = "C6-calcimimetic-pth-not-above-target"

# Etelcalcetide: its RxNorm ingredient and clinical drugs and its ATC code, as listed in
# patient/terminology.py (RXNORM_CLASSES, ATC_CLASSES; terminology.md 1a and 1b).
_ETELCALCETIDE_CODES = frozenset(
    {
        f"{term.RXNORM}|1876119",
        f"{term.RXNORM}|1876137",
        f"{term.RXNORM}|1876135",
        f"{term.RXNORM}|1876127",
        f"{term.ATC}|H05BX04",
    }
)
_ETELCALCETIDE_NAME = re.compile(r"etelcalcetide|parsabiv", re.IGNORECASE)
# A tablet count times the strength in the RxNorm name ("cinacalcet 60 MG Oral Tablet").
_CINACALCET_STRENGTH = re.compile(r"cinacalcet\D{0,20}?(\d+(?:\.\d+)?)\s*MG", re.IGNORECASE)


def is_etelcalcetide(order: MedicationOrder) -> bool:
    return (
        order.matched_code in _ETELCALCETIDE_CODES
        or any("etelcalcetide" in i for i in order.ingredients)
        or bool(_ETELCALCETIDE_NAME.search(order.drug_name))
    )


def cinacalcet_dose_mg(order: MedicationOrder) -> tuple[float, str] | None:
    """(mg per dose, where it was read) from the order's dose, when it can be read: a dose in mg,
    or a number of tablets times the strength the drug's name gives."""
    raw = order.raw if isinstance(order.raw, dict) else {}
    dosages = as_list(raw.get("dosageInstruction") or raw.get("dosage"))
    for i, dosage in enumerate(dosages):
        dose = dose_quantity(dosage) if isinstance(dosage, dict) else None
        if dose is None:
            continue
        value, unit = dose
        where = f"dosageInstruction[{i}] dose"
        if unit == "mg":
            return value, where
        strength = _CINACALCET_STRENGTH.search(order.drug_name)
        if unit in UNIT_DOSE_FORMS and strength is not None:
            mg = value * float(strength.group(1))
            return mg, f"{where} of {value:g} tablet(s) x {strength.group(1)} mg"
    return None


def _dose_facts(order: MedicationOrder) -> tuple[Fact, ...]:
    found = cinacalcet_dose_mg(order)
    if found is None:
        return (Fact("calcimimetic_dose_unknown"),)
    dose, where = found
    lower = [step for step in T.CINACALCET_STEPS_MG if step < dose]
    if not lower:
        return (Fact("calcimimetic_lowest_dose", {"dose": f"{dose:g}", "field": where}),)
    return (Fact("calcimimetic_dose", {"dose": f"{dose:g}", "field": where, "next_dose": f"{max(lower):g}"}),)


def _starts_or_increases(record: PatientRecord, review: OrderUnderReview) -> bool:
    """A draft that starts a calcimimetic or raises its dose: no active calcimimetic, or one at
    a lower dose (or a dose that cannot be read on either side: the safe reading)."""
    if not review.is_draft:
        return False
    running = [m for m in record.medications if "calcimimetic" in m.drug_classes and m.kind != "administration"]
    if not running:
        return True
    new = cinacalcet_dose_mg(review.order)
    if new is None:
        return True
    current = [dose for dose in (cinacalcet_dose_mg(m) for m in running) if dose is not None]
    return not current or new[0] > max(dose for dose, _ in current)


def _reason(calcium: CalciumReading, kind: str) -> str:
    return f"{'ionized' if calcium.ionized else 'corrected'}_calcium_{kind}"


def check_calcimimetic(record: PatientRecord, review: OrderUnderReview, labs: LabFacts) -> list[Finding]:
    if not record.has_calciphylaxis and not record.on_dialysis:
        return []
    return _low_calcium(record, review, labs) or _pth_not_above_target(record, review, labs)


def _scope(record: PatientRecord, labs: LabFacts) -> tuple[tuple[ConditionFact, ...], tuple[LabValue, ...]]:
    """The conditions (and, on dialysis without them, the eGFR) that put the patient in scope."""
    if record.has_calciphylaxis:
        return calciphylaxis_conditions(record), ()
    return dialysis_evidence(record, labs)


def _pth_not_above_target(record: PatientRecord, review: OrderUnderReview, labs: LabFacts) -> list[Finding]:
    """A calcimimetic is a PTH-lowering drug (clinical review F06, for the order itself): a new
    order or a dose increase while PTH is at or below target is not started; a running order
    with PTH below 100 pg/mL is to be reduced or stopped (the labels; seed 003: over-suppression,
    adynamic bone, is itself a calciphylaxis risk)."""
    pth = labs.latest_pth
    if pth is None or pth.stale:
        return []
    starts = _starts_or_increases(record, review)
    if starts and not above(pth, T.PTH_TARGET[1]):
        reason, variant = "pth_not_above_target", ""
    elif not starts and below(pth, T.PTH_AVOID_BELOW):
        reason, variant = "pth_below_avoid", "running"
    else:
        return []
    conditions, scope_labs = _scope(record, labs)
    note = "pth_at_target" if not below(pth, T.PTH_TARGET[0]) else "pth_below_avoid"
    return [
        Finding(
            rule_id=RULE_PTH,
            indicator="warning",
            review=review,
            conditions=conditions,
            labs=(pth,) + scope_labs,
            reasons=(reason,),
            notes=(note,),
            withhold=starts,  # a new order is removed; a running one is the prescriber's to reduce
            variant=variant,
        )
    ]


def _low_calcium(record: PatientRecord, review: OrderUnderReview, labs: LabFacts) -> list[Finding]:
    calcium = calcium_for_rules(labs)
    if calcium is None or not (calcium.low or calcium.severe_low):
        return []
    value = calcium.value
    etelcalcetide = is_etelcalcetide(review.order)
    notes = list(calcium_notes(calcium))
    if calcium.ionized:
        notes.append("calcimimetic_ionized_cutoffs")
    conditions, scope_labs = _scope(record, labs)
    if record.has_calciphylaxis:
        notes.append("hypocalcaemia_in_calciphylaxis")
        if record.on_dialysis:
            notes.append("dialysate_calcium_lever")
    gaps = lab_gaps(record, calcium_wanted(value)) + unavailable_gaps(record, (sources.CALCIUM, sources.ALBUMIN))
    shown = calcium.shown + scope_labs

    if value.stale:
        return [
            Finding(
                rule_id=RULE_STALE,
                indicator="info",
                review=review,
                conditions=conditions,
                labs=shown,
                reasons=(f"stale_{_reason(calcium, 'low')}",),
                notes=tuple(notes),
                gaps=gaps,
            )
        ]
    if calcium.severe_low:
        # Critical: both labels say stop or withhold; each restarts by its own rule.
        return [
            Finding(
                rule_id=RULE_HOLD,
                indicator="critical",
                review=review,
                conditions=conditions,
                labs=shown,
                reasons=(_reason(calcium, "below_hold"),),
                facts=() if etelcalcetide else _dose_facts(review.order),
                notes=("etelcalcetide_restart" if etelcalcetide else "calcimimetic_restart", *notes),
                withhold=True,
                gaps=gaps,
                variant="etelcalcetide" if etelcalcetide else "",
            )
        ]
    rule_id = RULE_LOW_CALCIPHYLAXIS if record.has_calciphylaxis else RULE_LOW_DIALYSIS
    if _starts_or_increases(record, review):
        # The labels: never start or raise a calcimimetic below the lower limit of normal.
        return [
            Finding(
                rule_id=rule_id,
                indicator="warning",
                review=review,
                conditions=conditions,
                labs=shown,
                reasons=(_reason(calcium, "low"),),
                notes=("calcimimetic_no_start", *notes),
                withhold=True,
                gaps=gaps,
                variant="new_order",
            )
        ]
    indicator: Indicator = "warning" if record.has_calciphylaxis else "info"
    return [
        Finding(
            rule_id=rule_id,
            indicator=indicator,
            review=review,
            conditions=conditions,
            labs=shown,
            reasons=(_reason(calcium, "low"),),
            notes=tuple(notes),
            gaps=gaps,
        )
    ]


RULE = OrderRule(
    name="c6_calcimimetic_hypocalcaemia",
    drug_class="calcimimetic",
    finding_ids=(RULE_HOLD, RULE_LOW_CALCIPHYLAXIS, RULE_LOW_DIALYSIS, RULE_STALE, RULE_PTH),
    check=check_calcimimetic,
)
