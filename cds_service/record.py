"""The patient as the checks see it: one immutable record per hook call.

``build_record`` (below the types) reads the raw JSON of ``context`` and the resolved prefetch,
selects the resources that matter by type and code *before* any model validation, normalises
lab units, classifies medications and conditions, and returns a ``PatientRecord``. The checks
are pure functions of this record and the orders under review.

Canonical units (every ``LabResult.value`` is in these):
calcium mg/dL, corrected_calcium mg/dL, ionized_calcium mmol/L, albumin g/dL, phosphate mg/dL,
pth pg/mL, crp mg/L, egfr mL/min/{1.73_m2}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

CANONICAL_UNITS: dict[str, str] = {
    "calcium": "mg/dL",
    "corrected_calcium": "mg/dL",
    "ionized_calcium": "mmol/L",
    "albumin": "g/dL",
    "phosphate": "mg/dL",
    "pth": "pg/mL",
    "crp": "mg/L",
    "egfr": "mL/min/{1.73_m2}",
}


@dataclass(frozen=True)
class LabResult:
    """One final/amended/corrected Observation, normalised to the analyte's canonical unit."""

    analyte: str  # key of terminology.LAB_LOINC / CANONICAL_UNITS
    value: float  # in CANONICAL_UNITS[analyte]
    unit: str  # == CANONICAL_UNITS[analyte]
    original_value: float
    original_unit: str
    effective: datetime | None  # effectiveDateTime / effectivePeriod.start / issued
    resource_id: str  # "Observation/<id>"
    loinc: str
    status: str


@dataclass(frozen=True)
class CorrectedCalcium:
    """The calcium value a rule uses, and how it was obtained (cards must say which)."""

    value: float  # mg/dL
    method: Literal["corrected", "measured", "reported-corrected"]
    calcium: LabResult  # the total (or lab-reported corrected) calcium it came from
    albumin: LabResult | None = None  # the albumin used for the Payne correction, if any


@dataclass(frozen=True)
class ConditionFact:
    """A Condition (or Procedure) that puts the patient in or out of scope."""

    kind: Literal["calciphylaxis", "kidney_failure", "dialysis", "atrial_fibrillation", "prosthetic_valve"]
    resource_id: str  # "Condition/<id>" or "Procedure/<id>"
    display: str  # what to show a clinician (coding display or text)
    matched_by: Literal["code", "text"]
    code: str | None = None
    system: str | None = None
    clinical_status: str | None = None
    verification_status: str | None = None
    recorded: datetime | None = None  # onset / recordedDate / performed, when known


@dataclass(frozen=True)
class MedicationOrder:
    """A MedicationRequest (R4/R5) or MedicationOrder (DSTU2), classified by drug class."""

    resource_id: str  # "MedicationRequest/<id>"
    resource_type: str  # "MedicationRequest" | "MedicationOrder"
    status: str | None
    drug_name: str  # best human name (coding display, text, or Medication.code)
    drug_classes: frozenset[str]  # e.g. {"calcium_binder"}; empty when nothing matched
    matched_by: Literal["code", "text", "none"]
    matched_code: str | None = None  # "system|code" that matched, when by code
    authored: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# Drug classes the classifier assigns (terminology.py maps codes and names to these).
DRUG_CLASSES = (
    "calcium_binder",  # calcium-based phosphate binders and other calcium salts (a calcium load)
    "vka",  # warfarin, acenocoumarol, phenprocoumon, phenindione
    "active_vitamin_d",  # calcitriol, alfacalcidol, paricalcitol, doxercalciferol, calcifediol
    "nutritional_vitamin_d",  # cholecalciferol, ergocalciferol: NOT active sterols
    "non_calcium_binder",  # sevelamer, lanthanum, ferric citrate, sucroferric oxyhydroxide
    "aluminium_binder",
    "doac",  # apixaban, rivaroxaban
    "calcimimetic",  # cinacalcet, etelcalcetide
    "sodium_thiosulfate",
    "iron",
    "magnesium",
)


@dataclass(frozen=True)
class PatientRecord:
    patient_id: str
    now: datetime
    conditions: tuple[ConditionFact, ...] = ()
    # Active / on-hold medications already on the chart (prefetch), not the drafts under review.
    medications: tuple[MedicationOrder, ...] = ()
    # Newest first, final/amended/corrected only, per analyte key.
    labs: dict[str, tuple[LabResult, ...]] = field(default_factory=dict)
    # Prefetch keys whose data could not be obtained: cards say what could not be checked.
    unavailable: dict[str, str] = field(default_factory=dict)

    def conditions_of(self, kind: str) -> tuple[ConditionFact, ...]:
        return tuple(c for c in self.conditions if c.kind == kind)

    @property
    def has_calciphylaxis(self) -> bool:
        return bool(self.conditions_of("calciphylaxis"))

    @property
    def on_dialysis(self) -> bool:
        """Kidney failure / dialysis by condition or procedure, or latest eGFR < 15."""
        if self.conditions_of("kidney_failure") or self.conditions_of("dialysis"):
            return True
        egfr = self.latest("egfr")
        return egfr is not None and egfr.value < 15

    def latest(self, analyte: str) -> LabResult | None:
        series = self.labs.get(analyte) or ()
        return series[0] if series else None


@dataclass(frozen=True)
class OrderUnderReview:
    """A medication order the hook asks about: a draft (order hooks) or an active one (patient-view)."""

    order: MedicationOrder
    is_draft: bool  # True: suggestions delete it; False: suggestions stop it (update status)
