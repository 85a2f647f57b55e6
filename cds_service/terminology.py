"""Code sets and unit factors: the one source of truth for every code the service matches.

Every code here comes from ../shared/reference/terminology.md (confidence A or B) unless a
comment names another public source. Never add a code from memory.
"""

from __future__ import annotations

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"

# Laboratory analytes by LOINC code (terminology.md section 2). Keys are the analyte names the
# record and the checks use; the prefetch templates search by these codes.
LAB_LOINC: dict[str, frozenset[str]] = {
    "calcium": frozenset({"17861-6", "2000-8"}),
    "ionized_calcium": frozenset({"1995-0", "12180-6", "1994-3", "17863-2"}),
    "corrected_calcium": frozenset({"29265-6"}),
    "albumin": frozenset({"1751-7", "61151-7"}),
    "phosphate": frozenset({"2777-1", "14879-1"}),
    "pth": frozenset({"2731-8", "14866-8"}),
    "crp": frozenset({"1988-5", "30522-7"}),
    "egfr": frozenset(
        {"98979-8", "98980-6", "62238-1", "94677-2", "50210-4", "77147-7", "70969-1", "69405-9",
         "88293-6", "88294-4", "48642-3", "48643-1", "50044-7"}
    ),
}
