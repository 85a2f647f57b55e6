"""Names of the data sources a patient record is read from.

Each is a CDS Hooks prefetch key: the service declarations (``cds_service.services``) give each
one its FHIR query, and the record notes by these names what could not be obtained, so the
checks can say on a card what they could not verify. "meds" is the name the public CDS Hooks
sandbox was captured sending for the medication list, so replayed sandbox requests match.
"""

from __future__ import annotations

PATIENT = "patient"
CONDITIONS = "conditions"
MEDICATIONS = "meds"
PROCEDURES = "procedures"
CALCIUM = "calcium"
ALBUMIN = "albumin"
PHOSPHATE = "phosphate"
PTH = "pth"
EGFR = "egfr"
# C-reactive protein: seeds 001 and 004 call it the most helpful laboratory test to follow in
# calciphylaxis; shown with its trend in the mineral review.
CRP = "crp"
ALLERGIES = "allergies"
# Home medication lists (MedicationStatement) and doses given, e.g. IV sterols at dialysis
# (MedicationAdministration): current exposure on patient-view, besides the active orders.
MEDICATION_STATEMENTS = "medstatements"
MEDICATION_ADMINISTRATIONS = "medadmins"
# Body weight: with the age from the patient record, chooses the apixaban dose (US label).
WEIGHT = "weight"
# Parathyroid surgery (Procedures): a recent parathyroidectomy guards calcium and active vitamin D
# from a one-click stop (hungry bone).
PARATHYROIDECTOMY = "parathyroidectomy"
