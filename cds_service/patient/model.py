"""The patient as the checks see it: the types of one immutable record per hook call.

``cds_service.patient.build`` fills them from raw JSON; the checks are pure functions of a
``PatientRecord`` and the orders under review.

Canonical units (every ``LabResult.value`` is in these):
calcium mg/dL, corrected_calcium mg/dL, ionized_calcium mmol/L, albumin g/dL, phosphate mg/dL,
pth pg/mL, crp mg/L, egfr mL/min/{1.73_m2}.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from cds_service.patient.analytes import (
    ANALYTES,
    CALCIMIMETIC_CALCIUM_CHECK,
    CALCIUM_ANALYTES,
    CANONICAL_UNITS,
    EARLY_CALCIPHYLAXIS_ANALYTES,
    EARLY_CALCIPHYLAXIS_INTERVAL,
    EARLY_CALCIPHYLAXIS_PERIOD,
)

__all__ = ["CANONICAL_UNITS"]


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
    comparator: str | None = None  # "<", "<=", ">=", ">" when the lab reported one (eGFR ">60")


@dataclass(frozen=True)
class CorrectedCalcium:
    """The calcium value a rule uses, and how it was obtained (cards must say which)."""

    value: float  # mg/dL
    method: Literal["corrected", "measured", "reported-corrected"]
    calcium: LabResult  # the total (or lab-reported corrected) calcium it came from
    albumin: LabResult | None = None  # the albumin used for the Payne correction, if any


# What a Condition (or Procedure) can establish about the patient. "prosthetic_valve" is a
# mechanical valve or one of unknown type (both rule out a DOAC); an explicitly biological valve
# is "bioprosthetic_valve". "dialysis" is current dialysis (a dependence, a modality, a recent
# session); "kidney_failure" is end-stage kidney disease or CKD stage 5, which a functioning
# transplant can outlive on a problem list (``ConditionFact.dialysis_implied`` says whether the
# entry itself implies dialysis: ESRD / CKD 5D do, CKD 5 and "untreated by RRT" do not).
# "mitral_stenosis" and "antiphospholipid_syndrome" rule out apixaban (label); "bowel_obstruction"
# rules out sevelamer and lanthanum (labels); "parathyroidectomy" (a Procedure or a history entry)
# guards calcium-raising drugs from a one-click stop while hungry bone is possible.
CONDITION_KINDS = (
    "calciphylaxis",
    "kidney_failure",
    "dialysis",
    "kidney_transplant",
    "kidney_transplant_failed",
    "vascular_calcification",
    "atrial_fibrillation",
    "prosthetic_valve",
    "bioprosthetic_valve",
    "mitral_stenosis",
    "antiphospholipid_syndrome",
    "bowel_obstruction",
    # Not a condition: a problem-list text longer than the name matcher reads
    # (terminology.MAX_MATCHED_TEXT), so what its end names was not read; the cards say so.
    "text_not_read_in_full",
    "parathyroidectomy",
)

# How a drug was recognised: by a code, by its name in the text, or not at all.
DrugMatch = Literal["code", "text", "none"]
# How a text match was made: a name, a brand, an abbreviation, or a close (fuzzy) spelling.
TextMatch = Literal["name", "brand", "abbreviation", "fuzzy", "spelling"]
# Where a medication exposure was read from.
ExposureKind = Literal["request", "statement", "administration"]


@dataclass(frozen=True)
class ConditionFact:
    """A Condition (or Procedure) that puts the patient in or out of scope."""

    kind: str  # one of CONDITION_KINDS
    resource_id: str  # "Condition/<id>" or "Procedure/<id>"
    display: str  # what to show a clinician (coding display or text)
    matched_by: Literal["code", "text"]
    code: str | None = None
    matched_text: str | None = None  # the words that matched, when recognised from the text
    system: str | None = None
    clinical_status: str | None = None
    verification_status: str | None = None
    recorded: datetime | None = None  # onset / recordedDate / performed, when known
    # A kidney-failure entry whose code or words imply dialysis (end-stage renal disease: ICD-10-CM
    # N18.6 includes CKD requiring chronic dialysis; "CKD 5D"), rather than CKD stage 5 or kidney
    # failure "untreated by renal replacement therapy".
    dialysis_implied: bool = False


@dataclass(frozen=True)
class MedicationOrder:
    """A MedicationRequest (R4/R5) or MedicationOrder (DSTU2), classified by drug class."""

    resource_id: str  # "MedicationRequest/<id>"
    resource_type: str  # "MedicationRequest" | "MedicationOrder"
    status: str | None
    drug_name: str  # best human name (coding display, text, or Medication.code)
    drug_classes: frozenset[str]  # e.g. {"calcium_binder"}; empty when nothing matched
    matched_by: DrugMatch
    matched_code: str | None = None  # "system|code" that matched, when by code
    authored: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # When recognised from the text: the words that matched and how (a card must show both).
    matched_text: str | None = None
    text_match: TextMatch | None = None
    # Ingredient names recognised (lower case), e.g. ("sevelamer carbonate",); used to match
    # allergies to substitutes.
    ingredients: tuple[str, ...] = ()
    kind: ExposureKind = "request"  # a medication order, a statement, or an administration
    # False when the order carries no words and no table names its code: ``drug_name`` is then
    # the code itself ("SNOMED CT 12345"), and a card names the drug by its class instead.
    name_in_words: bool = True
    # Its text was longer than the name matcher reads (terminology.MAX_MATCHED_TEXT): the card
    # says only the beginning was read.
    text_cut: bool = False

    def with_raw(self, raw: dict[str, Any]) -> MedicationOrder:
        """The same order carrying ``raw`` (a remembered reading meets this call's resource).
        A field-for-field copy without re-running ``__init__``: ``dataclasses.replace`` costs
        several times more, on every medication of every call."""
        clone = object.__new__(MedicationOrder)
        clone.__dict__.update(self.__dict__)
        clone.__dict__["raw"] = raw
        return clone


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
    "parenteral_calcium",  # calcium gluconate/chloride injections: acute treatment, not a binder
)


@dataclass(frozen=True)
class AllergyFact:
    """An AllergyIntolerance that counts (not refuted, not resolved), classified like a drug."""

    resource_id: str
    display: str
    drug_classes: frozenset[str]  # classes of the substance, e.g. {"doac"}
    ingredients: tuple[str, ...]  # ingredient names recognised (lower case)
    matched_by: DrugMatch
    matched_text: str | None = None
    criticality: str | None = None


@dataclass(frozen=True)
class UnusableLab:
    """A lab Observation of a known analyte that could not be used, and why (cards may say so)."""

    analyte: str
    resource_id: str
    reason: str  # e.g. "unit 'mmol/mol' cannot be converted to mg/dL"
    effective: datetime | None = None  # when it was drawn, as the Observation says


@dataclass(frozen=True)
class CalciumPhosphateProduct:
    """Ca x P in mg2/dL2 and the two results it multiplies."""

    value: float  # mg2/dL2
    calcium: CorrectedCalcium  # the calcium value used (corrected when possible; says which)
    phosphate: LabResult


# When a result goes out of date, per analyte (from the analyte table; absent = never).
STALE_AFTER: dict[str, timedelta] = {a.key: a.stale_after for a in ANALYTES.values() if a.stale_after is not None}


# Kidney failure by eGFR (mL/min/1.73m2) where no condition or procedure says so (clinical-rules.md).
KIDNEY_FAILURE_EGFR = 15.0


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
    # Prefetch keys whose data was read only in part (a later page or a referenced Medication
    # could not be read): the checks use what was read and the cards say it is partial.
    incomplete: dict[str, str] = field(default_factory=dict)
    # Final lab results of a known analyte that could not be used (unknown unit, no value ...).
    unusable_labs: tuple[UnusableLab, ...] = ()
    # Prefetch key -> how many resources about another patient were found in it and dropped
    # (never read): the cards say so.
    other_patient: Mapping[str, int] = field(default_factory=dict)
    # Allergies and intolerances that count (AllergyIntolerance).
    allergies: tuple[AllergyFact, ...] = ()
    # Medication resources found in the prefetch (by "Medication/id", fullUrl, urn:uuid), so that
    # draft orders referring to them can be classified.
    medication_catalog: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # Patient.birthDate (the patient prefetch), when it is this patient's and readable.
    birth_date: date | None = None
    # The medication drafts of this hook call about this patient (order-sign: every draft; order-
    # select: the selected and the unselected ones): an order being written now, which a
    # substitute must not duplicate. Filled by the engine once the drafts are read.
    drafts: tuple[MedicationOrder, ...] = ()

    def conditions_of(self, kind: str) -> tuple[ConditionFact, ...]:
        return tuple(c for c in self.conditions if c.kind == kind)

    @property
    def has_calciphylaxis(self) -> bool:
        return bool(self.conditions_of("calciphylaxis"))

    @property
    def on_dialysis(self) -> bool:
        """On dialysis or in kidney failure now.

        Current dialysis evidence (a dialysis condition, a recent dialysis session) counts; so
        does kidney failure (ESKD, CKD 5) or a latest eGFR below 15 -- except for a kidney
        transplant recipient with a working graft (transplant recorded, latest eGFR of at least
        15, no dialysis recorded after the transplant): an old kidney-failure entry still active
        on the problem list does not put them back on dialysis.
        """
        if self.functioning_transplant is not None:
            return False
        if self.conditions_of("kidney_failure") or self.conditions_of("dialysis"):
            return True
        egfr = self.latest("egfr")
        return egfr is not None and egfr.value < KIDNEY_FAILURE_EGFR and egfr.comparator not in (">", ">=")

    @property
    def dialysis_confirmed(self) -> tuple[ConditionFact, ...]:
        """The entries that show the patient is on dialysis now (empty: not shown).

        Stricter than ``on_dialysis``: a dialysis condition or recent dialysis procedure, or a
        kidney-failure entry that implies dialysis (ESRD, CKD 5D). CKD stage 5, kidney failure
        "untreated by renal replacement therapy" or an eGFR below 15 alone are kidney failure
        with dialysis not confirmed: a dose or an indication that needs dialysis is withheld.
        """
        if self.functioning_transplant is not None:
            return ()
        return self.conditions_of("dialysis") + tuple(
            f for f in self.conditions_of("kidney_failure") if f.dialysis_implied
        )

    def age_years(self) -> int | None:
        """Whole years of age at ``now`` from the birth date, when known."""
        born = self.birth_date
        if born is None:
            return None
        today = self.now.date()
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))

    @property
    def functioning_transplant(self) -> ConditionFact | None:
        """The kidney transplant that shows a working graft, or None (see ``on_dialysis``)."""
        transplants = self.conditions_of("kidney_transplant")
        egfr = self.latest("egfr")
        if not transplants or egfr is None or egfr.value < KIDNEY_FAILURE_EGFR:
            return None
        if self.conditions_of("kidney_transplant_failed"):
            return None  # a failed or rejected graft
        transplant = transplants[0]
        for fact in self.conditions_of("dialysis"):
            if fact.resource_id.startswith("Procedure/"):
                return None  # a dialysis session within the last weeks
            if fact.recorded is not None and transplant.recorded is not None and fact.recorded > transplant.recorded:
                return None  # dialysis started again after the transplant
        return transplant

    def latest(self, analyte: str) -> LabResult | None:
        series = self.labs.get(analyte) or ()
        return series[0] if series else None

    def superseded_by(self, lab: LabResult) -> UnusableLab | None:
        """The newest result of the same analyte drawn after ``lab`` that could not be used (a
        unit not understood, no number): ``lab`` is then not the patient's latest value, and a
        card must say so rather than act on it as if it were."""
        return self.unusable_after((lab.analyte,), lab.effective)

    def unusable_after(self, analytes: tuple[str, ...], after: datetime | None) -> UnusableLab | None:
        """The newest unusable result of any of ``analytes`` drawn after ``after``."""
        if after is None or not self.unusable_labs:
            return None
        newer = [
            (u.effective, u)
            for u in self.unusable_labs
            if u.analyte in analytes and u.effective is not None and u.effective > after
        ]
        return max(newer, key=lambda pair: pair[0])[1] if newer else None

    # --- staleness -------------------------------------------------------------------------

    def stale_after(self, analyte: str) -> timedelta | None:
        """The monitoring interval after which a result of ``analyte`` is stale (None: never):
        2 weeks for calcium and phosphate in the first month after calciphylaxis is recorded."""
        limit = STALE_AFTER.get(analyte)
        if limit is None or analyte not in EARLY_CALCIPHYLAXIS_ANALYTES:
            return limit
        dates = [c.recorded for c in self.conditions_of("calciphylaxis") if c.recorded is not None]
        if dates and self.now - min(dates) <= EARLY_CALCIPHYLAXIS_PERIOD:
            return min(limit, EARLY_CALCIPHYLAXIS_INTERVAL)
        return limit

    def calcimimetic_change(self) -> datetime | None:
        """When the newest calcimimetic order on the chart was written (a start or a change), if
        that is more than a week ago: a calcium drawn before it is then out of date."""
        written = [
            m.authored
            for m in self.medications
            if "calcimimetic" in m.drug_classes and m.kind == "request" and m.authored is not None
        ]
        if not written:
            return None
        newest = max(written)
        return newest if self.now - newest > CALCIMIMETIC_CALCIUM_CHECK else None

    def age(self, lab: LabResult) -> timedelta | None:
        return None if lab.effective is None else self.now - lab.effective

    def is_stale(self, lab: LabResult | str | None) -> bool:
        """Whether a result (or the latest of an analyte) is older than its monitoring interval,
        is a calcium drawn before a calcimimetic start or change more than a week old, or has a
        newer result after it that could not be read (``superseded_by``).

        A result with no date is stale (its age cannot be shown); a missing result is not stale
        (it is missing: check ``latest`` for ``None``).
        """
        if isinstance(lab, str):
            lab = self.latest(lab)
        if lab is None:
            return False
        if self.unusable_labs and self.superseded_by(lab) is not None:
            return True  # a newer result exists that could not be read: this one is not current
        limit = self.stale_after(lab.analyte)
        if limit is None:
            return False
        age = self.age(lab)
        if age is None or age > limit:
            return True
        if lab.analyte in CALCIUM_ANALYTES and lab.effective is not None:
            change = self.calcimimetic_change()
            return change is not None and lab.effective < change
        return False


@dataclass(frozen=True)
class OrderUnderReview:
    """A medication order the hook asks about: a draft (order hooks) or an active one (patient-view)."""

    order: MedicationOrder
    is_draft: bool  # True: suggestions delete it; False: suggestions stop it (update status)
