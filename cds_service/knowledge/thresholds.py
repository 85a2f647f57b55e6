"""Every clinical number the checks use, in one place, each with the seed it comes from.

Seeds are the documents in ../shared/seeds (000-004); clinical-rules.md maps each fact to them.
All calcium values are mg/dL, phosphate mg/dL, PTH pg/mL (the record's canonical units).
Comparisons follow the wording of the sources: "above 10.2" is strictly greater, "below 150"
strictly less, and a "100-500" range includes both ends.
"""

from __future__ import annotations

# --- calcium -------------------------------------------------------------------------------
# K/DOQI via 000: above this corrected calcium, calcium-raising therapy (calcium-based binders,
# active vitamin D) must be reduced or stopped.
CORRECTED_CALCIUM_HIGH = 10.2
# 000: in calciphylaxis keep calcium at the low end of normal.
CORRECTED_CALCIUM_TARGET = (8.4, 9.5)
# 001: cinacalcet lowers calcium; do not start it below this corrected calcium.
CINACALCET_MIN_CORRECTED_CALCIUM = 8.4
# Ionized calcium (mmol/L), used only when no total calcium is available: the same decisions at
# the ends of the adult reference range, 1.16-1.32 mmol/L (the American Society for Clinical
# Pathology range, as summarised at droracle.ai and acutecaretesting.org; other sources give
# 1.1-1.3 mmol/L, so the card shows the value and says ionized calcium was used).
IONIZED_CALCIUM_HIGH = 1.32  # like a corrected calcium above 10.2 mg/dL
IONIZED_CALCIUM_LOW = 1.16  # like a corrected calcium below 8.4 mg/dL

# --- calcimimetics in hypocalcaemia (C6) -----------------------------------------------------
# 001: on cinacalcet, a calcium below 7.5 mg/dL means withhold it until calcium is back to
# 8.0 mg/dL, then restart at the next lower dose; between 7.5 and 8.4 mg/dL the same source
# raises calcium with calcium-containing binders and/or vitamin D sterols instead.
CALCIMIMETIC_HOLD_BELOW = 7.5
CALCIMIMETIC_RESTART_AT = 8.0
CALCIMIMETIC_LOW = CINACALCET_MIN_CORRECTED_CALCIUM  # 8.4: the band 7.5-8.4 of the same source
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
# 001, 003: target range on treatment; avoid pushing PTH below 100 (adynamic bone disease).
PTH_TARGET = (150.0, 300.0)
PTH_AVOID_BELOW = 100.0
# 001: cinacalcet is the option for secondary hyperparathyroidism in this band (inclusive).
PTH_CINACALCET_RANGE = (100.0, 500.0)
# Parathyroidectomy thresholds: the sources disagree and the cards say so.
PTH_PARATHYROIDECTOMY_001_004 = 500.0  # 001, 004: consider surgery above 500
PTH_PARATHYROIDECTOMY_000 = (1000.0, 1500.0)  # 000: only above 1000-1500, limited evidence

# --- phosphate and the calcium x phosphate product -------------------------------------------
PHOSPHATE_TARGET = (3.5, 5.5)  # 000, dialysis
CA_X_P_MAX = 55.0  # 000, mg^2/dL^2: keep below

# --- aluminium-based phosphate binders (C5) ---------------------------------------------------
# 000 (K/DOQI): no aluminium-based binder for more than 4 weeks (aluminium toxicity), even in
# severe hyperphosphataemia. "More than 4 weeks" is strictly longer than 28 days.
ALUMINIUM_BINDER_MAX_DAYS = 28

# --- monitoring intervals ------------------------------------------------------------------
# When a result is stale is defined once, in record.STALE_AFTER (35 days for calcium, albumin
# and phosphate; 93 days for PTH); the checks use PatientRecord.is_stale. CRP has none: 001 and
# 004 say to monitor it regularly without giving an interval, so it is never called out of date.


def _fmt(value: float) -> str:
    return f"{value:g}"


# The same numbers by name for the card texts in cards/*.toml ("above {corrected_calcium_high}
# mg/dL"), so no card hard-codes a threshold.
TEMPLATE_VALUES: dict[str, str] = {
    "corrected_calcium_high": _fmt(CORRECTED_CALCIUM_HIGH),
    "corrected_calcium_target_low": _fmt(CORRECTED_CALCIUM_TARGET[0]),
    "corrected_calcium_target_high": _fmt(CORRECTED_CALCIUM_TARGET[1]),
    "cinacalcet_min_calcium": _fmt(CINACALCET_MIN_CORRECTED_CALCIUM),
    "ionized_calcium_high": _fmt(IONIZED_CALCIUM_HIGH),
    "ionized_calcium_low": _fmt(IONIZED_CALCIUM_LOW),
    "pth_oversuppressed": _fmt(PTH_OVERSUPPRESSED),
    "pth_target_low": _fmt(PTH_TARGET[0]),
    "pth_target_high": _fmt(PTH_TARGET[1]),
    "pth_avoid_below": _fmt(PTH_AVOID_BELOW),
    "pth_cinacalcet_low": _fmt(PTH_CINACALCET_RANGE[0]),
    "pth_cinacalcet_high": _fmt(PTH_CINACALCET_RANGE[1]),
    "pth_ptx_low": _fmt(PTH_PARATHYROIDECTOMY_001_004),
    "pth_ptx_000_low": _fmt(PTH_PARATHYROIDECTOMY_000[0]),
    "pth_ptx_000_high": _fmt(PTH_PARATHYROIDECTOMY_000[1]),
    "phosphate_target_low": _fmt(PHOSPHATE_TARGET[0]),
    "phosphate_target_high": _fmt(PHOSPHATE_TARGET[1]),
    "ca_x_p_max": _fmt(CA_X_P_MAX),
    "aluminium_max_days": _fmt(ALUMINIUM_BINDER_MAX_DAYS),
    "aluminium_max_weeks": _fmt(ALUMINIUM_BINDER_MAX_DAYS / 7),
    "calcimimetic_hold_below": _fmt(CALCIMIMETIC_HOLD_BELOW),
    "calcimimetic_restart_at": _fmt(CALCIMIMETIC_RESTART_AT),
    "calcimimetic_low": _fmt(CALCIMIMETIC_LOW),
    "ionized_calcimimetic_hold_below": _fmt(IONIZED_CALCIMIMETIC_HOLD_BELOW),
    "ionized_calcimimetic_restart_at": _fmt(IONIZED_CALCIMIMETIC_RESTART_AT),
    "cinacalcet_steps": ", ".join(_fmt(step) for step in CINACALCET_STEPS_MG),
}
