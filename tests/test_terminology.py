"""Code sets: the traps in terminology.md section 6 and clinical-rules.md, one test each."""

from __future__ import annotations

import pytest

from cds_service.patient import terminology as term
from cds_service.patient.model import DRUG_CLASSES


def rx(code):
    return term.drug_classes_for_code(term.RXNORM, code)


def atc(code):
    return term.drug_classes_for_code(term.ATC, code)


def test_every_class_in_the_tables_is_a_declared_drug_class():
    for table in (term.RXNORM_CLASSES, term.ATC_CLASSES, term.SNOMED_DRUG_CLASSES):
        for code, classes in table.items():
            assert classes <= set(DRUG_CLASSES), code
    for classes in term.brand_classes().values():
        assert classes <= set(DRUG_CLASSES)


def test_code_sets_are_hashed_not_lists():
    assert isinstance(term.RXNORM_CLASSES, dict)
    assert isinstance(term.DIALYSIS_PROCEDURE_CODES, frozenset)
    assert all(isinstance(v, frozenset) for v in term.LAB_LOINC.values())


def test_apixaban_and_rivaroxaban_ingredient_codes_are_not_swapped():
    # Trap 1: a public list labels 1114195 apixaban and 1364430 rivaroxaban.
    assert term.RXNORM_INGREDIENT_NAMES["1364430"] == "apixaban"
    assert term.RXNORM_INGREDIENT_NAMES["1114195"] == "rivaroxaban"
    assert rx("1364430") == rx("1114195") == {"doac"}


def test_calcium_acetate_capsule_and_tablet_codes_and_not_the_bogus_309966():
    # Trap 2
    assert rx("359296") == {"calcium_binder"}
    assert rx("197433") == {"calcium_binder"}
    assert rx("309966") is None


@pytest.mark.parametrize(
    "ingredient, precise",
    [("11289", "114194"), ("214824", "660890"), ("214824", "237125"), ("1546411", "36726")],
)
def test_ingredient_and_precise_ingredient_codes_both_classify(ingredient, precise):
    # Trap 4: warfarin, sevelamer (two salts), thiosulfate / sodium thiosulfate.
    assert rx(ingredient) and rx(ingredient) == rx(precise)


def test_calcium_combinations_and_antacids_are_calcium_loads():
    # Trap 5 (converse): calcium carbonate / famotidine / Mg(OH)2 is a real calcium load.
    assert "calcium_binder" in rx("283641")
    assert "calcium_binder" in rx("608343")  # calcium carbonate / cholecalciferol (MIN)
    assert "calcium_binder" in rx("817958")  # aspirin / calcium carbonate


def test_calcium_acetate_in_topical_aluminium_sulfate_solution_is_not_a_binder():
    # Trap 5: recognised by code, so text cannot re-add it.
    assert rx("1292923") == frozenset() and rx("1250234") == frozenset()


def test_sodium_thiosulfate_in_a_salicylic_acid_lotion_is_not_thiosulfate_therapy():
    assert rx("312877") == frozenset()
    assert term.drug_classes_for_text("salicylic acid / sodium thiosulfate lotion") == frozenset()


def test_v03ae_holds_potassium_binders_that_are_not_phosphate_binders():
    # Trap 6
    for code in ("V03AE01", "V03AE09", "V03AE10"):
        assert atc(code) == frozenset()
    assert atc("V03AE02") == {"non_calcium_binder"}
    assert atc("V03AE07") == {"calcium_binder"}


def test_calcium_carbonate_atc_is_a12aa04_or_a02ac01():
    assert atc("A12AA04") == {"calcium_binder"} and atc("A02AC01") == {"calcium_binder"}


def test_active_vitamin_d_spans_a11cc_and_h05bx_and_calcifediol_has_two_codes():
    for code in ("A11CC03", "A11CC04", "H05BX02", "H05BX03"):
        assert atc(code) == {"active_vitamin_d"}
    assert atc("A11CC06") == atc("H05BX05") == {"active_vitamin_d"}


def test_nutritional_vitamin_d_is_not_an_active_sterol():
    for code in ("A11CC05", "A11CC01"):
        assert atc(code) == {"nutritional_vitamin_d"}
    for code in ("2418", "4018", "199362", "1367410"):
        assert rx(code) == {"nutritional_vitamin_d"}


def test_ferric_sodium_citrate_oral_iron_is_not_the_binder_ferric_citrate():
    assert atc("B03AB01") == {"iron"}
    assert atc("V03AE08") == {"non_calcium_binder"}


def test_iron_oxide_nanoparticle_contrast_is_not_iron_therapy():
    assert atc("V08CB03") == frozenset()


def test_atc_codes_match_case_insensitively_and_under_the_german_uri():
    assert term.drug_classes_for_code("http://fhir.de/CodeSystem/bfarm/atc", "v03ae07") == {"calcium_binder"}


def test_unconfirmed_codes_are_not_shipped():
    # terminology.md section 7: acenocoumarol 154 and phenprocoumon 8150 (CPIC only).
    assert rx("154") is None and rx("8150") is None


def test_unknown_code_or_system_returns_none_so_text_can_be_consulted():
    assert rx("999999999") is None
    assert term.drug_classes_for_code("http://example.org/drugs", "197433") is None
    assert term.drug_classes_for_code(term.RXNORM, None) is None


@pytest.mark.parametrize(
    "text",
    [
        "leucovorin calcium 10 MG Oral Tablet",
        "calcium folinate 50 mg injection",
        "levomefolate calcium 1 MG",
        "rosuvastatin calcium 10 MG Oral Tablet",
        "docusate calcium 240 MG Oral Capsule",
        "calcium pantothenate 100 MG",
        "calcium polycarbophil 625 MG Oral Tablet",
        "patiromer sorbitex calcium 8.4 G",
        "Calcium",
    ],
)
def test_names_containing_calcium_that_are_not_calcium_loads(text):
    assert "calcium_binder" not in term.drug_classes_for_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "calcium acetate 667 MG Oral Capsule",
        "Calcium Carbonate 1250 MG Oral Tablet",
        "calcium citrate 950 MG Oral Tablet",
        "calcium carbonate / famotidine / magnesium hydroxide Chewable Tablet",
        "PhosLo 667 mg",
        "Tums 500 mg chewable",
    ],
)
def test_calcium_salts_and_antacids_are_calcium_loads_by_name(text):
    assert "calcium_binder" in term.drug_classes_for_text(text)


def test_aluminium_sulfate_calcium_acetate_topical_is_not_a_binder_by_name():
    assert "calcium_binder" not in term.drug_classes_for_text(
        "aluminum sulfate / calcium acetate Powder for Topical Solution"
    )


def test_microgram_doses_written_as_mg_decimals_still_classify_by_name():
    # Trap 3: "calcitriol 0.25 MCG" is "calcitriol 0.00025 MG Oral Capsule" (308867).
    assert rx("308867") == {"active_vitamin_d"}
    assert term.drug_classes_for_text("calcitriol 0.00025 MG Oral Capsule") == {"active_vitamin_d"}
    assert term.drug_classes_for_text("Calcitriol 0.25 mcg capsule") == {"active_vitamin_d"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Alfacalcidol 1 microgram capsules", "active_vitamin_d"),
        ("phenindione 10 mg tablets", "vka"),
        ("acenocoumarol 1 mg", "vka"),
        ("aluminium hydroxide 475 mg capsules", "aluminium_binder"),
        ("Sevelamer carbonate 800 MG Oral Tablet", "non_calcium_binder"),
        ("cinacalcet 30 MG Oral Tablet", "calcimimetic"),
        ("sodium thiosulfate 250 MG/ML Injection", "sodium_thiosulfate"),
        ("Venofer (iron sucrose) 100 mg", "iron"),
    ],
)
def test_drugs_without_confirmed_codes_are_caught_by_name(text, expected):
    assert expected in term.drug_classes_for_text(text)


def test_vitamin_d3_is_nutritional_but_an_active_sterol_name_wins():
    assert term.drug_classes_for_text("Vitamin D3 1000 IU") == {"nutritional_vitamin_d"}
    assert term.drug_classes_for_text("paricalcitol (vitamin D analog) 1 mcg") == {"active_vitamin_d"}


@pytest.mark.parametrize(
    "text",
    [
        "1,25-dihydroxycholecalciferol 0.25 mcg",
        "1-alpha-hydroxycholecalciferol 1 mcg",
        "1,25-dihydroxyvitamin D3 capsule",
    ],
)
def test_chemical_names_of_active_sterols_are_active_not_nutritional(text):
    assert term.drug_classes_for_text(text) == {"active_vitamin_d"}


def test_topical_calcitriol_is_not_a_systemic_sterol():
    assert atc("D05AX03") == frozenset()
    assert term.drug_classes_for_text("calcitriol 3 MCG/G Topical Ointment") == frozenset()


@pytest.mark.parametrize(
    "system, code, kind",
    [
        (term.SNOMED, "46177005", "kidney_failure"),
        (term.ICD10CM, "N18.6", "kidney_failure"),
        (term.ICD10CM, "N186", "kidney_failure"),  # undotted
        (term.SNOMED, "105502003", "dialysis"),
        (term.ICD10CM, "Z99.2", "dialysis"),
        (term.SNOMED, "49436004", "atrial_fibrillation"),
        (term.ICD10CM, "I48.91", "atrial_fibrillation"),
        (term.ICD10CM, "Z95.2", "prosthetic_valve"),
        ("urn:oid:2.16.840.1.113883.6.90", "N18.5", "kidney_failure"),
    ],
)
def test_condition_codes(system, code, kind):
    assert term.condition_kind_for_code(system, code) == kind


def test_bioprosthetic_valve_z95_3_is_not_a_prosthetic_valve_contraindication():
    assert term.condition_kind_for_code(term.ICD10CM, "Z95.3") == "bioprosthetic_valve"


def test_other_heart_valve_replacement_z95_4_counts_as_a_valve_of_unknown_type():
    assert term.condition_kind_for_code(term.ICD10CM, "Z95.4") == "prosthetic_valve"


def test_transplant_esrf_and_the_wrong_dialysis_dependence_code_are_not_dialysis():
    assert term.condition_kind_for_code(term.SNOMED, "236436003") == "kidney_transplant"
    assert term.condition_kind_for_code(term.ICD10CM, "Z94.0") == "kidney_transplant"
    assert term.condition_kind_for_code(term.SNOMED, "429451001") is None  # trap 12


def test_e83_59_alone_is_not_a_calciphylaxis_code():
    assert term.condition_kind_for_code(term.ICD10CM, "E83.59") is None
    assert term.is_calciphylaxis_catchall(term.ICD10CM, "E83.59")
    assert term.is_calciphylaxis_catchall(term.ICD10CM, "E8359")


@pytest.mark.parametrize(
    "system, code",
    [
        (term.SNOMED, "302497006"),
        (term.SNOMED, "265764009"),
        (term.CPT, "90935"),
        (term.ICD10PCS, "5A1D70Z"),
        ("http://hl7.org/fhir/sid/icd-10-pcs", "5A1D90Z"),
    ],
)
def test_dialysis_procedure_codes(system, code):
    assert term.is_dialysis_procedure_code(system, code)


def test_dialysis_procedures_are_icd10_pcs_not_icd10_cm():
    assert not term.is_dialysis_procedure_code(term.ICD10CM, "5A1D70Z")


def test_synthea_calcium_and_egfr_codes_are_read_but_not_added_to_the_prefetch_searches():
    assert term.LOINC_TO_ANALYTE["49765-1"] == "calcium"
    assert term.LOINC_TO_ANALYTE["33914-3"] == "egfr"
    assert "49765-1" not in term.LAB_LOINC["calcium"]


def test_ionized_calcium_in_blood_1994_3_is_not_total_calcium():
    # Trap 7: 1994-3 is ionized calcium in *blood*.
    assert term.LOINC_TO_ANALYTE["1994-3"] == "ionized_calcium"
