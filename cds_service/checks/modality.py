"""Haemodialysis or peritoneal dialysis: which dialysis the record shows, and from what.

Sodium thiosulfate is given during haemodialysis sessions (seed 003: 25 g IV towards the end of
dialysis), so its one-click order is offered only when the record shows haemodialysis. How the
modality is told, from the facts that put the patient on dialysis (``ConditionFact`` of kind
"dialysis" or "kidney_failure": coded Conditions, recent dialysis Procedures, problem-list text):

* haemodialysis: a haemodialysis code (below), or its coding display / problem-list text names
  haemodialysis or haemodiafiltration, or the abbreviations HD, HHD, HDF;
* peritoneal dialysis: a peritoneal dialysis code (below), or the display / text names it
  ("peritoneal", PD, CAPD, APD, CCPD). "Dialysis other than haemodialysis" (CPT 90945/90947)
  counts here: whatever it is, it is not haemodialysis;
* neither (Z99.2 "Dependence on renal dialysis", "ESRD on dialysis", an eGFR alone): unknown,
  and the card asks to confirm the modality instead of offering the order;
* both (a switch between modalities with both still recorded as current): unknown as well.

A coded Condition is shown by its coding display; free text written beside a code is not kept
on the fact, so "Z99.2, text: haemodialysis MWF" reads as modality unknown (the safe reading).

Codes: all already confirmed in ``cds_service.patient.terminology`` (dialysis procedure and
condition codes, with their sources) and ../shared/reference/terminology.md section 3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from cds_service.patient import terminology as term
from cds_service.patient.model import ConditionFact, PatientRecord

Modality = Literal["haemodialysis", "peritoneal", "unknown", "none"]

HAEMODIALYSIS_CODES: frozenset[tuple[str, str]] = frozenset(
    {
        (term.SNOMED, "302497006"),  # hemodialysis
        (term.SNOMED, "233575001"),  # intermittent hemodialysis
        (term.SNOMED, "67970008"),  # hemodialysis maintenance at home
        (term.SNOMED, "34897002"),  # hemodialysis maintenance in hospital
        (term.SNOMED, "708932005"),  # emergency hemodialysis
        (term.SNOMED, "443143006"),  # dependence on hemodialysis
        (term.CPT, "90935"),  # hemodialysis procedure, single evaluation
        (term.CPT, "90937"),  # ... repeated evaluation
        (term.ICD10CM, "Z49.31"),  # encounter for adequacy testing for hemodialysis
        (term.ICD10CM, "Z49.01"),  # fitting of extracorporeal dialysis catheter
        # ICD-10-PCS "Performance of urinary filtration" (VSAC hospital-based dialysis services,
        # terminology.md section 3 "HD procedure (inpatient)"): extracorporeal.
        (term.ICD10PCS, "5A1D70Z"),
        (term.ICD10PCS, "5A1D80Z"),
        (term.ICD10PCS, "5A1D90Z"),
    }
)
PERITONEAL_CODES: frozenset[tuple[str, str]] = frozenset(
    {
        (term.SNOMED, "71192002"),  # peritoneal dialysis
        (term.SNOMED, "238318009"),  # continuous ambulatory peritoneal dialysis
        (term.SNOMED, "428648006"),  # automated peritoneal dialysis
        (term.SNOMED, "238319001"),  # continuous cycling peritoneal dialysis
        (term.SNOMED, "225230008"),  # chronic peritoneal dialysis
        (term.SNOMED, "238321006"),  # intermittent peritoneal dialysis
        (term.SNOMED, "238322004"),  # tidal peritoneal dialysis
        (term.SNOMED, "238323009"),  # night-time intermittent peritoneal dialysis
        (term.SNOMED, "676002"),  # peritoneal dialysis including cannulation
        (term.SNOMED, "14684005"),  # peritoneal dialysis excluding cannulation
        (term.CPT, "90945"),  # dialysis other than hemodialysis, single evaluation
        (term.CPT, "90947"),  # ... repeated evaluations
        (term.ICD10CM, "Z49.02"),  # fitting of peritoneal dialysis catheter
    }
)

_HAEMO_TEXT = re.compile(r"(?i:\bha?emo-?dia(?:lys|filtr))|\b(?:HD|HHD|HDF)\b")
_PERITONEAL_TEXT = re.compile(r"(?i:\bperitoneal\b)|\b(?:PD|CAPD|APD|CCPD)\b")


def _code_key(fact: ConditionFact) -> tuple[str, str] | None:
    if fact.matched_by != "code" or not fact.system or not fact.code:
        return None
    return fact.system, term.normalise_code(fact.system, fact.code)


_HAEMO_INDEX = frozenset((s, term.normalise_code(s, c)) for s, c in HAEMODIALYSIS_CODES)
_PERITONEAL_INDEX = frozenset((s, term.normalise_code(s, c)) for s, c in PERITONEAL_CODES)


def fact_modality(fact: ConditionFact) -> Modality:
    """What one dialysis / kidney-failure fact says about the modality."""
    key = _code_key(fact)
    haemo = key in _HAEMO_INDEX
    peritoneal = key in _PERITONEAL_INDEX
    for text in (fact.display, fact.matched_text or ""):
        haemo = haemo or bool(_HAEMO_TEXT.search(text))
        peritoneal = peritoneal or bool(_PERITONEAL_TEXT.search(text))
    if haemo and not peritoneal:
        return "haemodialysis"
    if peritoneal and not haemo:
        return "peritoneal"
    return "unknown"


@dataclass(frozen=True)
class DialysisModality:
    modality: Modality
    haemodialysis: tuple[ConditionFact, ...] = ()  # the facts that show haemodialysis
    peritoneal: tuple[ConditionFact, ...] = ()  # the facts that show peritoneal dialysis
    unspecified: tuple[ConditionFact, ...] = ()  # dialysis / kidney failure, modality not said


def dialysis_modality(record: PatientRecord) -> DialysisModality:
    """The dialysis modality the record shows ("none": not on dialysis or in kidney failure)."""
    if not record.on_dialysis:
        return DialysisModality("none")
    facts = record.conditions_of("dialysis") + record.conditions_of("kidney_failure")
    by_kind: dict[Modality, list[ConditionFact]] = {"haemodialysis": [], "peritoneal": [], "unknown": []}
    for fact in facts:
        by_kind[fact_modality(fact)].append(fact)
    haemo, peritoneal = tuple(by_kind["haemodialysis"]), tuple(by_kind["peritoneal"])
    modality: Modality = "unknown"
    if haemo and not peritoneal:
        modality = "haemodialysis"
    elif peritoneal and not haemo:
        modality = "peritoneal"
    return DialysisModality(modality, haemo, peritoneal, tuple(by_kind["unknown"]))
