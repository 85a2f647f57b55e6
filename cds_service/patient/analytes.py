"""The one table of laboratory analytes: every fact about an analyte, in one row.

A row holds the LOINC codes it is read from (terminology.md section 2), the canonical unit every
value is normalised to, the range outside which a value is a data error rather than a result,
how long a result stays current, how many decimals a card shows (and the rules compare), the
target range the cards show, and the data source (prefetch key) it comes from. The checks'
thresholds that are not targets live in ``cds_service.knowledge.thresholds``; unit conversion
factors live in ``cds_service.patient.units``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cds_service.patient import sources


@dataclass(frozen=True)
class Analyte:
    key: str
    unit: str  # canonical unit (UCUM)
    decimals: int  # shown on cards, and used for comparisons (no "10.2 is above 10.2")
    loinc: frozenset[str] = frozenset()  # searched for and read
    # Also read, but not searched for (codes that real data carries; see their provenance below).
    extra_loinc: frozenset[str] = frozenset()
    # A value outside this range (canonical unit) cannot be a real result: a unit or typing error.
    plausible: tuple[float, float] | None = None
    # A result older than this is out of date: the checks say so rather than act on it silently.
    stale_after: timedelta | None = None
    # The target the cards show: (low, high), None = no bound on that side.
    target: tuple[float | None, float | None] | None = None
    # An upper target that is itself out of range ("keep below 55": 55 is out of target).
    target_high_exclusive: bool = False
    source: str | None = None  # the prefetch key it is read from; None for computed values
    # How many of the newest usable results the checks read: the latest alone, except PTH (two
    # consecutive results: knowledge.thresholds.PTH_OVERSUPPRESSED_CONSECUTIVE), CRP (the one
    # before it, for the trend) and albumin (the one drawn nearest the latest calcium, which may
    # be a few results back). Only these are normalised; older results cost a sort key.
    series: int = 1


# Monitoring intervals (clinical-rules.md; seeds 000, 001, 004): calcium and phosphate monthly once
# stable -> 35 days (a month plus a few days for scheduling); PTH every 3 months -> 93 days. Albumin
# is only used beside a calcium, so it ages like calcium. CRP and eGFR have no interval in the
# seeds (001 and 004 say "regularly" for CRP), so they are never flagged as out of date.
_MONTHLY = timedelta(days=35)
_QUARTERLY = timedelta(days=93)

# Closer monitoring (seeds 000, 001, 004; clinical review F25): calcium and phosphate every 2 weeks
# in the first month after calciphylaxis is recorded (14 days, within 30 days of its onset or
# recording); calcium within 1 week of starting or changing a calcimimetic (a calcium drawn
# before an order authored more than 7 days ago is out of date).
EARLY_CALCIPHYLAXIS_PERIOD = timedelta(days=30)
EARLY_CALCIPHYLAXIS_INTERVAL = timedelta(days=14)
EARLY_CALCIPHYLAXIS_ANALYTES = frozenset({"calcium", "corrected_calcium", "ionized_calcium", "albumin", "phosphate"})
CALCIMIMETIC_CALCIUM_CHECK = timedelta(days=7)
CALCIUM_ANALYTES = frozenset({"calcium", "corrected_calcium", "ionized_calcium"})

# Targets (clinical-rules.md, "Lab context"): phosphate 3.5-5.5 mg/dL on dialysis (000); corrected
# calcium 8.4-9.5 mg/dL in calciphylaxis, the low end of normal (000); Ca x P below 55 mg2/dL2
# (000); intact PTH 150-300 pg/mL on treatment (001, 003).
#
# Plausible ranges are deliberately wide (an order of magnitude around what is survivable): they
# catch unit and typing errors (a calcium of 1e30, a PTH sent in ng/mL as 0.3), never an extreme
# but real result.
ANALYTES: dict[str, Analyte] = {
    a.key: a
    for a in (
        Analyte(
            "calcium",
            "mg/dL",
            1,
            frozenset({"17861-6", "2000-8"}),
            # 49765-1 "Calcium [Mass/volume] in Blood" (mg/dL): confirmed by two independent public
            # sources: synthetichealth/synthea src/test/.../HealthRecordTest.java lists it as Calcium
            # in its metabolic panel, and a public LOINC usage table of Synthea output; a third
            # project maps it to "Calcium in Blood". Whole-blood total calcium: read as total.
            extra_loinc=frozenset({"49765-1"}),
            plausible=(1.0, 30.0),
            stale_after=_MONTHLY,
            source=sources.CALCIUM,
        ),
        Analyte(
            "corrected_calcium",
            "mg/dL",
            1,
            frozenset({"29265-6"}),
            plausible=(1.0, 30.0),
            stale_after=_MONTHLY,
            target=(8.4, 9.5),
            source=sources.CALCIUM,
        ),
        Analyte(
            "ionized_calcium",
            "mmol/L",
            2,
            frozenset({"1995-0", "12180-6", "1994-3", "17863-2"}),
            plausible=(0.2, 5.0),
            stale_after=_MONTHLY,
            source=sources.CALCIUM,
        ),
        Analyte(
            "albumin",
            "g/dL",
            1,
            frozenset({"1751-7", "61151-7"}),
            plausible=(0.3, 10.0),
            stale_after=_MONTHLY,
            source=sources.ALBUMIN,
            series=12,
        ),
        Analyte(
            "phosphate",
            "mg/dL",
            1,
            frozenset({"2777-1", "14879-1"}),
            plausible=(0.1, 40.0),
            stale_after=_MONTHLY,
            target=(3.5, 5.5),
            source=sources.PHOSPHATE,
        ),
        Analyte(
            "pth",
            "pg/mL",
            0,
            frozenset({"2731-8", "14866-8"}),
            plausible=(0.1, 30000.0),
            stale_after=_QUARTERLY,
            target=(150.0, 300.0),
            source=sources.PTH,
            series=2,
        ),
        # CRP and hs-CRP (terminology.md section 2: 1988-5 [ELEXIS, LABDUMP], 30522-7 [VULCAN,
        # ELEXIS]). No stale_after: seeds 001 and 004 ask for regular monitoring but give no
        # interval, so a result is never called out of date (the card says there is no interval).
        Analyte(
            "crp",
            "mg/L",
            1,
            frozenset({"1988-5", "30522-7"}),
            plausible=(0.0, 1000.0),
            source=sources.CRP,
            series=2,
        ),
        Analyte(
            "egfr",
            "mL/min/{1.73_m2}",
            0,
            frozenset(
                {
                    "98979-8",
                    "98980-6",
                    "62238-1",
                    "94677-2",
                    "50210-4",
                    "77147-7",
                    "70969-1",
                    "69405-9",
                    "88293-6",
                    "88294-4",
                    "48642-3",
                    "48643-1",
                    "50044-7",
                }
            ),
            # 33914-3 "Glomerular filtration rate/1.73 sq M.predicted" (MDRD eGFR): the eGFR code of
            # the Synthea bundles in ../shared/fhir-data, and used as eGFR by several public projects
            # (e.g. sophie-kearney/CVD_multimodal_prediction supplementary/loinc_feature_mappings.md).
            extra_loinc=frozenset({"33914-3"}),
            plausible=(0.0, 300.0),
            source=sources.EGFR,
        ),
        # Body weight (kg): chooses the apixaban dose (US label: 2.5 mg at 60 kg or less on
        # dialysis). 29463-7 "Body weight" and 3141-9 "Body weight Measured" (terminology and
        # sources in research notes of docs/clinical/codes.md). Dialysis patients' weight moves
        # with fluid, so a weight older than 3 months does not choose a dose.
        Analyte(
            "body_weight",
            "kg",
            1,
            frozenset({"29463-7", "3141-9"}),
            plausible=(2.0, 400.0),
            stale_after=_QUARTERLY,
            source=sources.WEIGHT,
        ),
        # Computed from a corrected calcium and a phosphate drawn together; never read from a code.
        Analyte("ca_x_p", "mg2/dL2", 0, target=(None, 55.0), target_high_exclusive=True),
    )
}

# LOINC code -> analyte key, for a one-lookup selection of Observations from raw JSON.
LOINC_TO_ANALYTE: dict[str, str] = {
    code: analyte.key for analyte in ANALYTES.values() for code in analyte.loinc | analyte.extra_loinc
}

# Analytes read from Observations (not computed), with their canonical unit.
CANONICAL_UNITS: dict[str, str] = {a.key: a.unit for a in ANALYTES.values() if a.source is not None or a.loinc}


def analyte(key: str) -> Analyte:
    return ANALYTES[key]
