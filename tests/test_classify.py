"""Medication, condition and procedure classification from raw FHIR JSON (R4, R5, DSTU2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cds_service.fhir.reading import ResourceIndex, parse_fhir_datetime
from cds_service.patient import terminology as term
from cds_service.patient.classify import (
    DIALYSIS_PROCEDURE_RECENT,
    classify_condition,
    classify_medication,
    classify_procedure,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def cc(system=None, code=None, display=None, text=None):
    concept = {}
    if code is not None or display is not None:
        coding = {}
        if system:
            coding["system"] = system
        if code is not None:
            coding["code"] = code
        if display is not None:
            coding["display"] = display
        concept["coding"] = [coding]
    if text is not None:
        concept["text"] = text
    return concept


def med_request(concept=None, rid="mr1", status="draft", **extra):
    resource = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        **extra,
    }
    if concept is not None:
        resource["medicationCodeableConcept"] = concept
    return resource


def medication(rid, concept):
    return {"resourceType": "Medication", "id": rid, "code": concept}


# --- medications --------------------------------------------------------------------------


def test_rxnorm_clinical_drug_code_classifies_by_code():
    order = classify_medication(med_request(cc(term.RXNORM, "197433", "calcium acetate 667 MG Oral Tablet")))
    assert order.drug_classes == {"calcium_binder"}
    assert order.matched_by == "code"
    assert order.matched_code == f"{term.RXNORM}|197433"
    assert order.drug_name == "calcium acetate 667 MG Oral Tablet"
    assert order.resource_id == "MedicationRequest/mr1"
    assert order.status == "draft"


def test_ingredient_code_without_display_is_named_from_the_ingredient_table():
    order = classify_medication(med_request(cc(term.RXNORM, "1364430")))
    assert order.drug_classes == {"doac"}
    assert order.drug_name == "apixaban"


def test_atc_only_coding_classifies():
    order = classify_medication(med_request(cc(term.ATC, "H05BX02", "paricalcitol")))
    assert order.drug_classes == {"active_vitamin_d"} and order.matched_by == "code"


def test_code_wins_over_misleading_text():
    # Polystyrene sulfonate (V03AE01) is recognised as no class even if its text says "binder".
    order = classify_medication(med_request(cc(term.ATC, "V03AE01", text="calcium polystyrene sulfonate binder")))
    assert order.drug_classes == frozenset() and order.matched_by == "code"


def test_unknown_code_falls_back_to_the_name_and_says_so():
    concept = cc(term.RXNORM, "999999", "calcium acetate 667 MG Oral Capsule [Brandname]")
    order = classify_medication(med_request(concept))
    assert order.drug_classes == {"calcium_binder"}
    assert order.matched_by == "text"
    assert order.matched_code is None


def test_text_only_medication_classifies_by_text():
    order = classify_medication(med_request({"text": "Warfarin 5 mg tablet"}))
    assert order.drug_classes == {"vka"} and order.matched_by == "text"


def test_snomed_coded_drug_falls_back_to_its_display():
    order = classify_medication(med_request(cc(term.SNOMED, "123456789", "Product containing calcitriol")))
    assert order.drug_classes == {"active_vitamin_d"} and order.matched_by == "text"


def test_leucovorin_calcium_is_not_a_binder():
    order = classify_medication(med_request({"text": "leucovorin calcium 15 MG Oral Tablet"}))
    assert order.drug_classes == frozenset() and order.matched_by == "none"


def test_nutritional_vitamin_d_is_not_an_active_sterol():
    order = classify_medication(med_request(cc(term.RXNORM, "199362", "cholecalciferol 0.025 MG Oral Tablet")))
    assert "active_vitamin_d" not in order.drug_classes
    assert order.drug_classes == {"nutritional_vitamin_d"}


def test_polystyrene_sulfonate_is_not_a_phosphate_binder():
    order = classify_medication(med_request(cc(term.ATC, "V03AE01")))
    assert not order.drug_classes & {"calcium_binder", "non_calcium_binder"}


def test_calcitriol_named_in_mg_decimals_classifies():
    order = classify_medication(med_request({"text": "calcitriol 0.00025 MG Oral Capsule"}))
    assert order.drug_classes == {"active_vitamin_d"}


def test_precise_ingredient_code_classifies_like_the_ingredient():
    pin = classify_medication(med_request(cc(term.RXNORM, "114194", "warfarin sodium")))
    ingredient = classify_medication(med_request(cc(term.RXNORM, "11289", "warfarin")))
    assert pin.drug_classes == ingredient.drug_classes == {"vka"}


def test_contained_medication_is_followed():
    resource = med_request(
        None,
        contained=[medication("m1", cc(term.RXNORM, "359296", "calcium acetate 667 MG Oral Capsule"))],
        medicationReference={"reference": "#m1"},
    )
    order = classify_medication(resource)
    assert order.drug_classes == {"calcium_binder"} and order.matched_by == "code"
    assert order.drug_name == "calcium acetate 667 MG Oral Capsule"


@pytest.mark.parametrize(
    "reference, key",
    [
        ("Medication/m2", "Medication/m2"),
        ("urn:uuid:2f1c", "urn:uuid:2f1c"),
        ("http://ehr.example/fhir/Medication/m2", "Medication/m2"),
        ("http://ehr.example/fhir/Medication/m2/_history/3", "Medication/m2"),
    ],
)
def test_medication_elsewhere_in_the_bundle_is_followed(reference, key):
    med = medication("m2", cc(term.RXNORM, "855332", "warfarin sodium 5 MG Oral Tablet"))
    index = ResourceIndex([("urn:uuid:2f1c", med)])
    order = classify_medication(med_request(None, medicationReference={"reference": reference}), index)
    assert order.drug_classes == {"vka"}


def test_plain_mapping_works_as_an_index():
    med = medication("m3", cc(term.RXNORM, "432402"))
    order = classify_medication(
        med_request(None, medicationReference={"reference": "Medication/m3"}), {"Medication/m3": med}
    )
    assert order.drug_classes == {"calcimimetic"}


def test_medication_ingredients_are_classified_when_the_code_is_unknown():
    med = {
        "resourceType": "Medication",
        "id": "m4",
        "code": {"text": "Compounded capsule"},
        "ingredient": [{"itemCodeableConcept": cc(term.RXNORM, "1894", "calcitriol")}],
    }
    order = classify_medication(
        med_request(None, medicationReference={"reference": "Medication/m4"}), ResourceIndex([(None, med)])
    )
    assert order.drug_classes == {"active_vitamin_d"}


def test_unresolvable_reference_uses_its_display_text():
    order = classify_medication(
        med_request(None, medicationReference={"reference": "Medication/missing", "display": "Sevelamer 800 mg"})
    )
    assert order.drug_classes == {"non_calcium_binder"} and order.matched_by == "text"


def test_unresolvable_reference_without_display_is_unclassified_not_dropped():
    order = classify_medication(med_request(None, medicationReference={"reference": "Medication/missing"}))
    assert order is not None and order.drug_classes == frozenset() and order.matched_by == "none"


def test_r5_codeable_reference_concept():
    resource = {
        "resourceType": "MedicationRequest",
        "id": "r5",
        "status": "draft",
        "intent": "order",
        "medication": {"concept": cc(term.RXNORM, "1114198", "rivaroxaban 10 MG Oral Tablet")},
    }
    order = classify_medication(resource)
    assert order.drug_classes == {"doac"}


def test_r5_codeable_reference_to_a_medication():
    med = medication("m5", cc(term.RXNORM, "308867", "calcitriol 0.00025 MG Oral Capsule"))
    resource = {
        "resourceType": "MedicationRequest",
        "id": "r5b",
        "status": "active",
        "intent": "order",
        "medication": {"reference": {"reference": "Medication/m5"}},
    }
    assert classify_medication(resource, ResourceIndex([(None, med)])).drug_classes == {"active_vitamin_d"}


def test_dstu2_medication_order():
    resource = {
        "resourceType": "MedicationOrder",
        "id": "d2",
        "status": "draft",
        "dateWritten": "2026-11-20",
        "medicationCodeableConcept": cc(term.RXNORM, "197433", "calcium acetate 667 MG Oral Tablet"),
    }
    order = classify_medication(resource)
    assert order.resource_type == "MedicationOrder"
    assert order.resource_id == "MedicationOrder/d2"
    assert order.drug_classes == {"calcium_binder"}
    assert order.authored == datetime(2026, 11, 20, tzinfo=UTC)


def test_dstu2_medication_order_with_reference():
    med = medication("m6", cc(term.RXNORM, "855332"))
    resource = {
        "resourceType": "MedicationOrder",
        "id": "d3",
        "status": "active",
        "medicationReference": {"reference": "Medication/m6"},
    }
    assert classify_medication(resource, ResourceIndex([(None, med)])).drug_classes == {"vka"}


def test_sandbox_empty_draft_without_medication_or_intent_is_skipped():
    resource = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "subject": {"reference": "Patient/p"},
    }
    assert classify_medication(resource) is None


def test_non_medication_resources_and_junk_are_not_classified():
    assert classify_medication({"resourceType": "NutritionOrder", "id": "n1"}) is None
    assert classify_medication({"resourceType": "ServiceRequest", "id": "s1"}) is None
    assert classify_medication("MedicationRequest") is None
    assert classify_medication(None) is None


def test_schema_defects_are_read_around():
    # The sandbox sends category as an object; a coding may be an object instead of a list.
    resource = med_request(
        {"coding": {"system": term.RXNORM, "code": "855332"}}, category={"coding": [{"code": "community"}]}
    )
    assert classify_medication(resource).drug_classes == {"vka"}
    junk = classify_medication(med_request({"coding": ["junk", 5, None]}))
    assert junk.drug_classes == frozenset() and junk.matched_by == "none"
    garbage = med_request({"coding": [{"system": 5, "code": ["x"]}], "text": 7})
    assert classify_medication(garbage).drug_classes == frozenset()


# --- conditions ---------------------------------------------------------------------------


def condition(concept, clinical="active", verification="confirmed", rid="c1", **extra):
    resource = {"resourceType": "Condition", "id": rid, "code": concept, **extra}
    if clinical is not None:
        resource["clinicalStatus"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]
        }
    if verification is not None:
        resource["verificationStatus"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]
        }
    return resource


def kinds(resource):
    return {fact.kind for fact in classify_condition(resource)}


def test_esrd_code_is_kidney_failure():
    facts = classify_condition(condition(cc(term.SNOMED, "46177005", "End-stage renal disease")))
    assert [(f.kind, f.matched_by, f.code) for f in facts] == [("kidney_failure", "code", "46177005")]
    assert facts[0].resource_id == "Condition/c1"


@pytest.mark.parametrize("clinical", ["active", "recurrence", "relapse"])
def test_active_clinical_statuses_count(clinical):
    assert kinds(condition(cc(term.ICD10CM, "Z99.2"), clinical=clinical)) == {"dialysis"}


@pytest.mark.parametrize("clinical", ["resolved", "inactive", "remission"])
def test_inactive_clinical_statuses_do_not_count(clinical):
    assert kinds(condition(cc(term.ICD10CM, "N18.6"), clinical=clinical)) == set()


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_and_entered_in_error_never_count(verification):
    resource = condition(cc(text="Calciphylaxis"), verification=verification)
    assert kinds(resource) == set()


@pytest.mark.parametrize("verification", ["provisional", "differential", "unconfirmed"])
def test_suspected_calciphylaxis_counts(verification):
    # Treatment should not wait for a biopsy (clinical-rules.md, seed 004).
    facts = classify_condition(condition(cc(text="Calciphylaxis"), verification=verification))
    assert [f.kind for f in facts] == ["calciphylaxis"]
    assert facts[0].verification_status == verification


def test_dstu2_plain_string_statuses_are_read():
    resource = {
        "resourceType": "Condition",
        "id": "c9",
        "clinicalStatus": "resolved",
        "verificationStatus": "confirmed",
        "code": cc(term.ICD10CM, "N18.6"),
    }
    assert kinds(resource) == set()
    resource["clinicalStatus"] = "active"
    assert kinds(resource) == {"kidney_failure"}


def test_missing_clinical_status_counts_unless_abated():
    resource = condition(cc(term.ICD10CM, "N18.6"), clinical=None)
    assert kinds(resource) == {"kidney_failure"}
    resource["abatementDateTime"] = "2020-01-01"
    assert kinds(resource) == set()


def test_e83_59_without_calciphylaxis_text_does_not_count():
    resource = condition(cc(term.ICD10CM, "E83.59", "Other disorders of calcium metabolism"))
    assert kinds(resource) == set()


@pytest.mark.parametrize(
    "text", ["Calciphylaxis of lower legs", "Calcific uremic arteriolopathy", "calcific uraemic arteriolopathy"]
)
def test_e83_59_with_calciphylaxis_text_counts_as_coded(text):
    resource = condition(
        {
            "coding": [{"system": term.ICD10CM, "code": "E83.59", "display": "Other disorders of calcium metabolism"}],
            "text": text,
        }
    )
    facts = classify_condition(resource)
    assert [(f.kind, f.matched_by, f.code) for f in facts] == [("calciphylaxis", "code", "E83.59")]
    assert facts[0].display == text


def test_calciphylaxis_snomed_display_is_recognised_by_text():
    # SNOMED 237900002 is single-source (confidence C) so it is not matched as a code.
    resource = condition(cc(term.SNOMED, "237900002", "Calciphylaxis"))
    facts = classify_condition(resource)
    assert [(f.kind, f.matched_by) for f in facts] == [("calciphylaxis", "text")]


def test_negated_calciphylaxis_text_does_not_count():
    assert kinds(condition(cc(text="Leg ulcer, calciphylaxis ruled out"))) == set()
    assert kinds(condition(cc(text="r/o calciphylaxis"))) == {"calciphylaxis"}  # suspected counts
    assert kinds(condition(cc(text="No calciphylaxis on biopsy"))) == set()
    assert kinds(condition(cc(text="Negative for calciphylaxis"))) == set()


def test_a_diagnosis_mentioned_only_in_a_note_does_not_count():
    resource = condition(cc(text="Leg ulcer"), note=[{"text": "Mother had calciphylaxis"}])
    assert kinds(resource) == set()


def test_prosthetic_valve_by_z95_2_and_by_mechanical_valve_text():
    assert kinds(condition(cc(term.ICD10CM, "Z95.2", "Presence of prosthetic heart valve"))) == {"prosthetic_valve"}
    assert kinds(condition(cc(text="Status post mechanical mitral valve replacement"))) == {"prosthetic_valve"}
    assert kinds(condition(cc(text="St. Jude mechanical aortic valve"))) == {"prosthetic_valve"}


def test_bioprosthetic_valve_is_not_a_doac_contraindication():
    # Recognised as a biological valve, never as the prosthetic valve that rules out a DOAC.
    assert kinds(condition(cc(term.ICD10CM, "Z95.3", "Presence of xenogenic heart valve"))) == {"bioprosthetic_valve"}
    assert kinds(condition(cc(text="Bioprosthetic aortic valve"))) == {"bioprosthetic_valve"}
    assert kinds(condition(cc(text="Porcine prosthetic heart valve"))) == {"bioprosthetic_valve"}


def test_atrial_fibrillation_codes_and_text():
    assert kinds(condition(cc(term.SNOMED, "49436004"))) == {"atrial_fibrillation"}
    assert kinds(condition(cc(term.ICD10CM, "I48.91"))) == {"atrial_fibrillation"}
    assert kinds(condition(cc(text="Paroxysmal atrial fibrillation"))) == {"atrial_fibrillation"}


def test_ckd_stage_1_is_not_kidney_failure_but_stage_5_text_is():
    assert kinds(condition(cc(term.SNOMED, "431855005", "Chronic kidney disease stage 1 (disorder)"))) == set()
    assert kinds(condition(cc(text="Chronic kidney disease stage 5"))) == {"kidney_failure"}


def test_non_conditions_are_ignored():
    assert classify_condition({"resourceType": "Observation"}) == ()
    assert classify_condition(None) == ()


# --- procedures ---------------------------------------------------------------------------


def procedure(code, when=None, status="completed", rid="p1", period=None):
    resource = {"resourceType": "Procedure", "id": rid, "status": status, "code": code}
    if when is not None:
        resource["performedDateTime"] = when
    if period is not None:
        resource["performedPeriod"] = period
    return resource


def test_recent_dialysis_procedure_means_on_dialysis():
    when = (NOW - timedelta(days=2)).isoformat()
    fact = classify_procedure(procedure(cc(term.SNOMED, "302497006", "Hemodialysis"), when), NOW)
    assert fact.kind == "dialysis" and fact.matched_by == "code"
    assert fact.resource_id == "Procedure/p1"


def test_old_dialysis_procedure_is_history_not_current_dialysis():
    period = {"start": "1990-10-01T10:00:00-05:00", "end": "1990-10-01T14:00:00-05:00"}
    assert (
        classify_procedure(procedure(cc(term.SNOMED, "265764009", "Renal dialysis (procedure)"), period=period), NOW)
        is None
    )


def test_dialysis_just_outside_the_window_does_not_count_and_inside_does():
    code = cc(term.CPT, "90935")
    outside = (NOW - DIALYSIS_PROCEDURE_RECENT - timedelta(hours=1)).isoformat()
    inside = (NOW - DIALYSIS_PROCEDURE_RECENT + timedelta(hours=1)).isoformat()
    assert classify_procedure(procedure(code, outside), NOW) is None
    assert classify_procedure(procedure(code, inside), NOW) is not None


def test_in_progress_dialysis_counts_without_a_date():
    assert classify_procedure(procedure(cc(term.ICD10PCS, "5A1D70Z"), status="in-progress"), NOW) is not None


@pytest.mark.parametrize("status", ["not-done", "entered-in-error"])
def test_dialysis_not_done_or_in_error_does_not_count(status):
    when = NOW.isoformat()
    assert classify_procedure(procedure(cc(term.SNOMED, "302497006"), when, status=status), NOW) is None


def test_dialysis_procedure_recognised_by_text():
    fact = classify_procedure(procedure(cc(text="Haemodialysis session"), NOW.isoformat()), NOW)
    assert fact.matched_by == "text"


def test_other_procedures_are_not_dialysis():
    assert (
        classify_procedure(procedure(cc(term.SNOMED, "430193006", "Medication Reconciliation"), NOW.isoformat()), NOW)
        is None
    )


# --- dates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2019", datetime(2019, 1, 1, tzinfo=UTC)),
        ("2019-11", datetime(2019, 11, 1, tzinfo=UTC)),
        ("2019-11-12", datetime(2019, 11, 12, tzinfo=UTC)),
        ("2019-11-12T20:32:26Z", datetime(2019, 11, 12, 20, 32, 26, tzinfo=UTC)),
        ("2019-11-12T20:32:26.828+00:00", datetime(2019, 11, 12, 20, 32, 26, 828000, tzinfo=UTC)),
        ("2019-11-12T15:32:26-05:00", datetime(2019, 11, 12, 20, 32, 26, tzinfo=UTC)),
        ("not a date", None),
        ("", None),
        (None, None),
        (20191112, None),
        ("2019-13-01", None),
    ],
)
def test_fhir_dates_parse_to_aware_datetimes(text, expected):
    assert parse_fhir_datetime(text) == expected


@pytest.mark.parametrize(
    ("system", "code", "text", "implied"),
    [
        ("http://snomed.info/sct", "46177005", "End-stage renal disease", True),
        ("http://hl7.org/fhir/sid/icd-10-cm", "N18.6", "End stage renal disease", True),
        ("http://hl7.org/fhir/sid/icd-10-cm", "N18.5", "Chronic kidney disease, stage 5", False),
        (
            "http://snomed.info/sct",
            "236434000",
            "End stage renal failure untreated by renal replacement therapy",
            False,
        ),
        # "stage 5 CKD or ESRD": the code does not say which, so dialysis is not implied.
        (
            "http://hl7.org/fhir/sid/icd-10-cm",
            "I12.0",
            "Hypertensive chronic kidney disease with stage 5 chronic kidney disease or end stage renal disease",
            False,
        ),
        ("http://snomed.info/sct", "46177005", "ESRD, conservative management (declined dialysis)", False),
        (None, None, "CKD stage 5D", True),
        (None, None, "ESKD", True),
        (None, None, "CKD G5, pre-dialysis", False),
        (None, None, "CKD stage 5", False),
    ],
)
def test_which_kidney_failure_entries_imply_dialysis(system, code, text, implied):
    # Clinical review F03: CKD 5, kidney failure untreated by RRT or an eGFR alone is not dialysis.
    coding = {"system": system, "code": code, "display": text} if code else None
    resource = {
        "resourceType": "Condition",
        "id": "kf",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [coding] if coding else [], "text": text},
        "subject": {"reference": "Patient/p1"},
    }
    facts = [f for f in classify_condition(resource) if f.kind == "kidney_failure"]
    assert facts and facts[0].dialysis_implied is implied, [
        (f.kind, f.dialysis_implied) for f in classify_condition(resource)
    ]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Severe MS (MVA 0.9 cm2 on echo)", "mitral_stenosis"),
        ("Rheumatic mitral stenosis, severe", "mitral_stenosis"),
        ("MS - relapsing remitting, on ocrelizumab", None),  # multiple sclerosis
        ("Multiple sclerosis (MS)", None),
        ("Triple positive APS", "antiphospholipid_syndrome"),
        ("Lupus anticoagulant positive", "antiphospholipid_syndrome"),
        ("APS type 2 (autoimmune polyglandular)", None),
        ("Small bowel obstruction 2026", "bowel_obstruction"),
        ("Hungry bone syndrome after parathyroidectomy", "parathyroidectomy"),
        ("PTX 2024 (right pneumothorax)", None),  # pneumothorax, not parathyroidectomy
    ],
)
def test_apixaban_and_binder_exclusions_are_read_from_problem_list_words_with_false_friends_guarded(text, kind):
    resource = {
        "resourceType": "Condition",
        "id": "c",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"text": text},
        "subject": {"reference": "Patient/p1"},
    }
    kinds = {f.kind for f in classify_condition(resource)}
    wanted = {"mitral_stenosis", "antiphospholipid_syndrome", "bowel_obstruction", "parathyroidectomy"}
    assert kinds & wanted == ({kind} if kind else set())
