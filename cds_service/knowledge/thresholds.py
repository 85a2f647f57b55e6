"""Every clinical number the checks use, in one place, each with its source.

Seeds are the documents in ../shared/seeds (000-004); clinical-rules.md maps each fact to them.
Labels are the product labels named in ``cards/references.toml``. All calcium values are mg/dL,
phosphate mg/dL, PTH pg/mL (the record's canonical units). Comparisons follow the wording of the
sources: "above 10.2" is strictly greater, "below 150" strictly less, and a range includes both
ends.

The targets (calcium, phosphate, PTH, Ca x P) are properties of the analytes, so they are
defined once, in the analyte table (``cds_service.patient.analytes``), and read from it here; the
kidney-failure eGFR cut-off is the patient model's (``KIDNEY_FAILURE_EGFR``). Nothing else in the
package defines a clinical number: ``tests/test_thresholds.py`` checks both and that every number
here carries a source. ``THRESHOLDS`` lists each with its unit, meaning and source: the card
templates use their names (``{corrected_calcium_high}``) and ``docs/clinical/`` is generated from
them.

Site choices are made here and nowhere else. The PTH target is K/DOQI 2003's 150-300 pg/mL, the
range the seed documents use; KDIGO 2017 suggests about 2-9 times the upper limit of the assay's
normal range instead. A site that follows KDIGO changes the PTH row of the analyte table (and
the cinacalcet window follows, since it is "above target").
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.patient.analytes import ANALYTES
from cds_service.patient.model import KIDNEY_FAILURE_EGFR


def _target(analyte: str) -> tuple[float, float]:
    target = ANALYTES[analyte].target
    assert target is not None and target[0] is not None and target[1] is not None, analyte
    return target[0], target[1]


# --- targets (the analyte table) -------------------------------------------------------------
CORRECTED_CALCIUM_TARGET = _target("corrected_calcium")  # 000: low end of normal in calciphylaxis
PHOSPHATE_TARGET = _target("phosphate")  # 000 (K/DOQI): stage 5 CKD / dialysis
PTH_TARGET = _target("pth")  # 001, 003 (K/DOQI 2003)
_CA_X_P = ANALYTES["ca_x_p"].target
assert _CA_X_P is not None and _CA_X_P[1] is not None
CA_X_P_MAX: float = _CA_X_P[1]  # 000, mg2/dL2: keep below

# --- calcium -------------------------------------------------------------------------------
# K/DOQI via 000: above this corrected calcium, calcium-raising therapy (calcium-based binders,
# active vitamin D) must be reduced or stopped.
CORRECTED_CALCIUM_HIGH = 10.2
# The lower limit of normal for corrected calcium: the cinacalcet and etelcalcetide labels say
# not to start (or increase, or restart, for etelcalcetide) a calcimimetic below it; seed 001 uses
# 8.4 mg/dL. Below it, calcium-lowering steps (stopping calcium binders or active vitamin D in
# calciphylaxis) get the hypocalcaemia guard.
CALCIUM_LOWER_LIMIT = 8.4
CINACALCET_MIN_CORRECTED_CALCIUM = CALCIUM_LOWER_LIMIT
# Ionized calcium (mmol/L), used only when no total calcium is available: the same decisions at
# the ends of the adult reference range, 1.16-1.32 mmol/L (the American Society for Clinical
# Pathology range, as summarised at droracle.ai and acutecaretesting.org; other sources give
# 1.1-1.3 mmol/L, so the card shows the value and says ionized calcium was used).
# An albumin-corrected calcium this close to a decision threshold (10.2, 8.4, 7.5 mg/dL) is where its
# poor agreement with ionized calcium in kidney failure matters (Gauci 2008; clinical review F15):
# the card suggests measuring an ionized calcium. A site choice: half the 0.8 mg/dL the Payne
# formula adds per g/dL of albumin.
CORRECTED_CALCIUM_MARGIN = 0.4
IONIZED_CALCIUM_HIGH = 1.32  # like a corrected calcium above 10.2 mg/dL
IONIZED_CALCIUM_LOW = 1.16  # like a corrected calcium below 8.4 mg/dL

# --- calcimimetics in hypocalcaemia (C6) -----------------------------------------------------
# 001 and the cinacalcet label: on cinacalcet, a calcium below 7.5 mg/dL means withhold it until
# calcium is back to 8.0 mg/dL, then restart at the next lower dose; between 7.5 and 8.4 mg/dL the
# same source raises calcium with calcium-containing binders and/or vitamin D sterols instead.
# The etelcalcetide label: stop below 7.5 mg/dL (or with symptoms); restart 5 mg lower once
# corrected calcium is back at or above the lower limit of normal.
CALCIMIMETIC_HOLD_BELOW = 7.5
CALCIMIMETIC_RESTART_AT = 8.0
CALCIMIMETIC_LOW = CALCIUM_LOWER_LIMIT  # 8.4: the band 7.5-8.4 of the same source
ETELCALCETIDE_RESTART_STEP_MG = 5.0
# 001: the titration steps of cinacalcet (mg once daily): "restart at the next lower dose".
CINACALCET_STEPS_MG = (30.0, 60.0, 90.0, 120.0, 180.0)
# Ionized calcium (mmol/L) when no total calcium is available. No source gives ionized values for
# 7.5 and 8.0 mg/dL: derived here by keeping the ratio of the pair used above for the lower
# reference limit (1.16 mmol/L for 8.4 mg/dL), i.e. x 1.16/8.4, rounded to the 0.01 mmol/L the
# cards show. The card says an ionized calcium was used and that these cut-offs are derived.
IONIZED_CALCIMIMETIC_HOLD_BELOW = 1.04  # 7.5 x 1.16 / 8.4 = 1.036
IONIZED_CALCIMIMETIC_RESTART_AT = 1.10  # 8.0 x 1.16 / 8.4 = 1.105

# --- PTH (intact, pg/mL) -------------------------------------------------------------------
# K/DOQI via 000: no calcium-based binders when PTH is below this on 2 consecutive measurements
# (over-suppression / adynamic bone).
PTH_OVERSUPPRESSED = 150.0
PTH_OVERSUPPRESSED_CONSECUTIVE = 2
# ... and both within this many days: an old result does not make a pair with a new one (clinical
# review, C1 notes: "add an upper age limit, e.g. 6 months"; a site choice).
PTH_CONSECUTIVE_WITHIN_DAYS = 183
# 003: avoid pushing PTH below 100 (adynamic bone disease).
PTH_AVOID_BELOW = 100.0
# A PTH-lowering drug (cinacalcet) is offered only when PTH is above the target (F06 of the
# clinical review: at or below target a PTH-lowering drug is not needed, and over-suppression is
# itself a calciphylaxis risk, 001, 003). Seed 001 also says cinacalcet may be started from
# 100 pg/mL, which contradicts its own 150-300 target: the cards state that conflict.
PTH_CINACALCET_ABOVE = PTH_TARGET[1]
# Parathyroidectomy thresholds: the sources disagree and the cards say so. Above the lower one,
# cinacalcet is still offered (not recommended) beside the referral note (003: cinacalcet for
# secondary hyperparathyroidism, surgery when it fails; 000: surgery only when PTH stays high
# despite medical treatment).
PTH_PARATHYROIDECTOMY_001_004 = 500.0  # 001, 004: consider surgery above 500
PTH_PARATHYROIDECTOMY_000 = (1000.0, 1500.0)  # 000: only above 1000-1500, limited evidence
# After a parathyroidectomy calcium can fall steeply (hungry bone): for this many days calcium
# and active vitamin D are not stopped in one click (the review's 3 months).
PARATHYROIDECTOMY_RECENT_DAYS = 91

# --- phosphate -----------------------------------------------------------------------------
# Binders follow the phosphate target: below its lower end no binder is offered (001: no
# aggressive phosphate lowering without overt hyperphosphataemia; 002: add phosphate to the
# dialysate if it falls after binders stop); within it a binder is offered but not recommended;
# above it, recommended. The sevelamer label starts 1600 mg three times daily at 7.5 mg/dL or more.
SEVELAMER_HIGH_START_PHOSPHATE = 7.5
# The sevelamer label, switching from calcium acetate: one 800 mg tablet for each 667 mg tablet;
# at most 3 tablets a meal (7.2 g/day, seed 000).
CALCIUM_ACETATE_TABLET_MG = 667.0
SEVELAMER_MAX_TABLETS_PER_MEAL = 3

# --- aluminium-based phosphate binders (C5) ---------------------------------------------------
# 000 (K/DOQI): no aluminium-based binder for more than 4 weeks (aluminium toxicity), even in
# severe hyperphosphataemia. "More than 4 weeks" is strictly longer than 28 days.
ALUMINIUM_BINDER_MAX_DAYS = 28

# --- apixaban dose (US label) ----------------------------------------------------------------
# Eliquis US label, end-stage kidney disease on dialysis: 5 mg twice daily; 2.5 mg twice daily
# if age 80 years or more or body weight 60 kg or less. The EU SmPC does not recommend apixaban
# on dialysis, and the seeds say "reduced-dose" without a number: the cards state the conflict.
APIXABAN_REDUCED_DOSE_AGE = 80
APIXABAN_REDUCED_DOSE_WEIGHT_KG = 60.0
# A body weight chooses a dose only while current: the analyte table gives it 3 months (dialysis
# patients' weight moves with fluid), like every other result's monitoring interval.

# --- monitoring intervals ------------------------------------------------------------------
# When a result is stale is defined once, in the analyte table (35 days for calcium, albumin and
# phosphate; 93 days for PTH); the checks use PatientRecord.is_stale. CRP has none: 001 and 004
# say to monitor it regularly without giving an interval, so it is never called out of date.


@dataclass(frozen=True)
class Threshold:
    """One number as the cards and the clinical specification show it."""

    name: str  # the template name: cards write "{name}"
    value: float
    unit: str
    meaning: str
    source: str


def _fmt(value: float) -> str:
    return f"{value:g}"


THRESHOLDS: tuple[Threshold, ...] = (
    Threshold(
        "corrected_calcium_high",
        CORRECTED_CALCIUM_HIGH,
        "mg/dL",
        "above it, reduce or stop calcium-based binders and active vitamin D (dialysis)",
        "K/DOQI 2003 guidelines 5.6, 6.3 via seed 000",
    ),
    Threshold(
        "corrected_calcium_target_low",
        CORRECTED_CALCIUM_TARGET[0],
        "mg/dL",
        "calcium target in calciphylaxis, lower end",
        "seed 000 (low end of normal)",
    ),
    Threshold(
        "corrected_calcium_target_high",
        CORRECTED_CALCIUM_TARGET[1],
        "mg/dL",
        "calcium target in calciphylaxis, upper end",
        "seed 000 (low end of normal)",
    ),
    Threshold(
        "calcium_lower_limit",
        CALCIUM_LOWER_LIMIT,
        "mg/dL",
        "lower limit of normal: no calcimimetic start or increase below it; hypocalcaemia guard on stopping calcium or vitamin D",
        "cinacalcet and etelcalcetide US labels; seed 001",
    ),
    Threshold(
        "cinacalcet_min_calcium",
        CINACALCET_MIN_CORRECTED_CALCIUM,
        "mg/dL",
        "cinacalcet is not offered below it",
        "cinacalcet US label; seed 001",
    ),
    Threshold(
        "corrected_calcium_margin",
        CORRECTED_CALCIUM_MARGIN,
        "mg/dL",
        "a corrected calcium this close to a threshold prompts an ionized calcium",
        "site choice; Gauci et al., JASN 2008 (corrected calcium agrees poorly with ionized calcium in CKD)",
    ),
    Threshold(
        "ionized_calcium_high",
        IONIZED_CALCIUM_HIGH,
        "mmol/L",
        "upper end of the adult ionized calcium reference range",
        "ASCP range (droracle.ai, acutecaretesting.org)",
    ),
    Threshold(
        "ionized_calcium_low",
        IONIZED_CALCIUM_LOW,
        "mmol/L",
        "lower end of the adult ionized calcium reference range",
        "ASCP range (droracle.ai, acutecaretesting.org)",
    ),
    Threshold(
        "calcimimetic_hold_below",
        CALCIMIMETIC_HOLD_BELOW,
        "mg/dL",
        "withhold a calcimimetic below it",
        "seed 001; cinacalcet and etelcalcetide US labels",
    ),
    Threshold(
        "calcimimetic_restart_at",
        CALCIMIMETIC_RESTART_AT,
        "mg/dL",
        "restart cinacalcet one step lower from it",
        "seed 001 (cinacalcet protocol)",
    ),
    Threshold(
        "calcimimetic_low",
        CALCIMIMETIC_LOW,
        "mg/dL",
        "upper end of the 7.5-8.4 band where the cinacalcet protocol raises calcium",
        "seed 001; cinacalcet US label",
    ),
    Threshold(
        "etelcalcetide_restart_step",
        ETELCALCETIDE_RESTART_STEP_MG,
        "mg",
        "etelcalcetide restarts this much lower",
        "etelcalcetide (Parsabiv) US label",
    ),
    Threshold(
        "ionized_calcimimetic_hold_below",
        IONIZED_CALCIMIMETIC_HOLD_BELOW,
        "mmol/L",
        "ionized equivalent of 7.5 mg/dL",
        "derived: 7.5 x 1.16 / 8.4 (no source gives one)",
    ),
    Threshold(
        "ionized_calcimimetic_restart_at",
        IONIZED_CALCIMIMETIC_RESTART_AT,
        "mmol/L",
        "ionized equivalent of 8.0 mg/dL",
        "derived: 8.0 x 1.16 / 8.4 (no source gives one)",
    ),
    Threshold(
        "pth_oversuppressed",
        PTH_OVERSUPPRESSED,
        "pg/mL",
        "no calcium-based binder on dialysis when PTH is below it on 2 consecutive results",
        "K/DOQI 2003 guideline 5.6 via seed 000",
    ),
    Threshold(
        "pth_consecutive_within_days",
        PTH_CONSECUTIVE_WITHIN_DAYS,
        "days",
        "the 2 consecutive low PTH results must both be this recent",
        "site choice (clinical review 2026-12, C1 notes: about 6 months)",
    ),
    Threshold(
        "pth_target_low",
        PTH_TARGET[0],
        "pg/mL",
        "PTH target on dialysis, lower end",
        "K/DOQI 2003 via seeds 001, 003 (KDIGO 2017: about 2-9x the assay's upper limit)",
    ),
    Threshold(
        "pth_target_high",
        PTH_TARGET[1],
        "pg/mL",
        "PTH target on dialysis, upper end; cinacalcet is offered only above it",
        "K/DOQI 2003 via seeds 001, 003; clinical review F06",
    ),
    Threshold(
        "pth_avoid_below", PTH_AVOID_BELOW, "pg/mL", "avoid suppressing PTH below it (adynamic bone)", "seed 003"
    ),
    Threshold(
        "pth_ptx_low",
        PTH_PARATHYROIDECTOMY_001_004,
        "pg/mL",
        "consider parathyroidectomy above it; cinacalcet above it is offered, not recommended",
        "seeds 001, 004",
    ),
    Threshold(
        "pth_ptx_000_low",
        PTH_PARATHYROIDECTOMY_000[0],
        "pg/mL",
        "parathyroidectomy only for PTH persistently above 1000-1500",
        "seed 000",
    ),
    Threshold(
        "pth_ptx_000_high",
        PTH_PARATHYROIDECTOMY_000[1],
        "pg/mL",
        "parathyroidectomy only for PTH persistently above 1000-1500",
        "seed 000",
    ),
    Threshold(
        "ptx_recent_days",
        PARATHYROIDECTOMY_RECENT_DAYS,
        "days",
        "a parathyroidectomy this recent guards calcium and vitamin D from a one-click stop",
        "clinical review F08 (hungry bone)",
    ),
    Threshold(
        "phosphate_target_low",
        PHOSPHATE_TARGET[0],
        "mg/dL",
        "phosphate target, lower end: below it no binder is offered",
        "K/DOQI 2003 via seed 000; seeds 001, 002",
    ),
    Threshold(
        "phosphate_target_high",
        PHOSPHATE_TARGET[1],
        "mg/dL",
        "phosphate target, upper end: above it a binder is recommended",
        "K/DOQI 2003 via seed 000",
    ),
    Threshold(
        "sevelamer_high_start_phosphate",
        SEVELAMER_HIGH_START_PHOSPHATE,
        "mg/dL",
        "sevelamer starts at 1600 mg three times daily from it",
        "sevelamer carbonate (Renvela) US label",
    ),
    Threshold(
        "ca_x_p_max",
        CA_X_P_MAX,
        "mg2/dL2",
        "keep calcium x phosphate below it",
        "K/DOQI 2003 via seed 000 (KDIGO 2017 does not use it)",
    ),
    Threshold(
        "aluminium_max_days",
        ALUMINIUM_BINDER_MAX_DAYS,
        "days",
        "no aluminium-based binder for longer",
        "K/DOQI 2003 guideline 5.8 via seed 000",
    ),
    Threshold(
        "aluminium_max_weeks",
        ALUMINIUM_BINDER_MAX_DAYS / 7,
        "weeks",
        "no aluminium-based binder for longer",
        "K/DOQI 2003 guideline 5.8 via seed 000",
    ),
    Threshold(
        "apixaban_reduced_age",
        APIXABAN_REDUCED_DOSE_AGE,
        "years",
        "on dialysis, apixaban 2.5 mg twice daily from this age (5 mg otherwise)",
        "Eliquis US label",
    ),
    Threshold(
        "apixaban_reduced_weight",
        APIXABAN_REDUCED_DOSE_WEIGHT_KG,
        "kg",
        "on dialysis, apixaban 2.5 mg twice daily at or below this weight (5 mg otherwise)",
        "Eliquis US label",
    ),
    Threshold(
        "kidney_failure_egfr",
        KIDNEY_FAILURE_EGFR,
        "mL/min/1.73m2",
        "kidney failure by eGFR when no condition says so",
        "KDIGO CKD G5; clinical-rules.md",
    ),
)

# The same numbers by name for the card texts in cards/*.toml ("above {corrected_calcium_high}
# mg/dL"), so no card hard-codes a threshold.
TEMPLATE_VALUES: dict[str, str] = {t.name: _fmt(t.value) for t in THRESHOLDS} | {
    "cinacalcet_steps": ", ".join(_fmt(step) for step in CINACALCET_STEPS_MG),
}
