"""Free-text recognition of drugs and conditions (cds_service/patient/text_match.py).

Run alone: .venv/bin/python -m pytest --noconftest -q tests/patient/test_text_match.py
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.patient.text_match import (
    ConditionTextMatch,
    DrugTextMatch,
    match_condition_text,
    match_drug_text,
)

CALCIUM = frozenset({"calcium_binder"})
VKA = frozenset({"vka"})
ACTIVE_D = frozenset({"active_vitamin_d"})
NUTRITIONAL_D = frozenset({"nutritional_vitamin_d"})
NON_CALCIUM = frozenset({"non_calcium_binder"})


def drug(text: str) -> DrugTextMatch:
    match = match_drug_text(text)
    assert match is not None, text
    return match


def kinds(text: str) -> dict[str, bool]:
    """kind -> negated, for the matches of a condition text."""
    return {m.kind: m.negated for m in match_condition_text(text)}


def present(text: str) -> set[str]:
    return {m.kind for m in match_condition_text(text) if not m.negated}


# ==========================================================================================
# Drugs: exact names, brands, abbreviations
# ==========================================================================================


@pytest.mark.parametrize(
    ("text", "classes", "concept"),
    [
        ("calcium acetate 667 mg capsule", CALCIUM, "calcium_acetate"),
        ("Calcium Carbonate 1250 MG Oral Tablet", CALCIUM, "calcium_carbonate"),
        ("calcium citrate 950 mg", CALCIUM, "calcium_citrate"),
        ("warfarin sodium 5 MG Oral Tablet", VKA, "warfarin"),
        ("acenocoumarol 1 mg", VKA, "acenocoumarol"),
        ("phenprocoumon 3 mg", VKA, "phenprocoumon"),
        ("phenindione 25 mg", VKA, "phenindione"),
        ("calcitriol 0.25 mcg capsule", ACTIVE_D, "calcitriol"),
        ("alfacalcidol 1 microgram", ACTIVE_D, "alfacalcidol"),
        ("1α-hydroxycholecalciferol", ACTIVE_D, "alfacalcidol"),
        ("paricalcitol 1 mcg", ACTIVE_D, "paricalcitol"),
        ("doxercalciferol 2.5 mcg", ACTIVE_D, "doxercalciferol"),
        ("calcifediol 30 mcg ER", ACTIVE_D, "calcifediol"),
        ("sevelamer carbonate 800 mg", NON_CALCIUM, "sevelamer"),
        ("lanthanum carbonate 500 mg chewable", NON_CALCIUM, "lanthanum_carbonate"),
        ("sucroferric oxyhydroxide 500 mg", NON_CALCIUM, "sucroferric_oxyhydroxide"),
        ("ferric citrate 1 g", NON_CALCIUM, "ferric_citrate"),
        ("cinacalcet 30 mg", frozenset({"calcimimetic"}), "cinacalcet"),
        ("etelcalcetide 5 mg", frozenset({"calcimimetic"}), "etelcalcetide"),
        ("apixaban 2.5 mg", frozenset({"doac"}), "apixaban"),
        ("aluminium hydroxide 475 mg", frozenset({"aluminium_binder"}), "aluminium_hydroxide"),
        ("aluminum hydroxide gel", frozenset({"aluminium_binder"}), "aluminium_hydroxide"),
        ("sodium thiosulfate 25 g IV", frozenset({"sodium_thiosulfate"}), "sodium_thiosulfate"),
        ("sodium thiosulphate", frozenset({"sodium_thiosulfate"}), "sodium_thiosulfate"),
        ("cholecalciferol 1000 IU", NUTRITIONAL_D, "cholecalciferol"),
        ("colecalciferol", NUTRITIONAL_D, "cholecalciferol"),
        ("ergocalciferol 50,000 units", NUTRITIONAL_D, "ergocalciferol"),
    ],
)
def test_ingredient_names_match_their_class(text: str, classes: frozenset[str], concept: str) -> None:
    match = drug(text)
    assert match.classes == classes
    assert match.concept == concept
    assert match.how == "name"
    assert match.score is None


@pytest.mark.parametrize(
    ("text", "classes", "concept"),
    [
        ("PhosLo 667 mg", CALCIUM, "calcium_acetate"),
        ("Phoslyra 667 mg/5 mL", CALCIUM, "calcium_acetate"),
        ("Phosex", CALCIUM, "calcium_acetate"),
        ("Tums Ultra", CALCIUM, "calcium_carbonate"),
        ("Os-Cal 500", CALCIUM, "calcium_carbonate"),
        ("OsCal", CALCIUM, "calcium_carbonate"),
        ("Caltrate 600", CALCIUM, "calcium_carbonate"),
        ("Calcichew 500 mg", CALCIUM, "calcium_carbonate"),
        ("Adcal", CALCIUM, "calcium_carbonate"),
        ("Citracal", CALCIUM, "calcium_citrate"),
        ("Rolaids", frozenset({"calcium_binder", "magnesium"}), "calcium_carbonate_magnesium_hydroxide"),
        ("Coumadin 5 mg", VKA, "warfarin"),
        ("Jantoven", VKA, "warfarin"),
        ("Marevan 1mg", VKA, "warfarin"),
        ("Sintrom 4 mg", VKA, "acenocoumarol"),
        ("Sinthrome 1mg", VKA, "acenocoumarol"),
        ("Marcoumar", VKA, "phenprocoumon"),
        ("Falithrom", VKA, "phenprocoumon"),
        ("Dindevan 10 mg", VKA, "phenindione"),
        ("Rocaltrol 0.25 mcg", ACTIVE_D, "calcitriol"),
        ("One-Alpha 1 microgram", ACTIVE_D, "alfacalcidol"),
        ("Alpha D3 0.5 mcg", ACTIVE_D, "alfacalcidol"),
        ("AlfaD", ACTIVE_D, "alfacalcidol"),
        ("Zemplar 1 mcg capsule", ACTIVE_D, "paricalcitol"),
        ("Hectorol 0.5 mcg", ACTIVE_D, "doxercalciferol"),
        ("Rayaldee", ACTIVE_D, "calcifediol"),
        ("Renvela", NON_CALCIUM, "sevelamer"),
        ("Renagel 800 mg", NON_CALCIUM, "sevelamer"),
        ("Fosrenol 750 mg", NON_CALCIUM, "lanthanum_carbonate"),
        ("Velphoro", NON_CALCIUM, "sucroferric_oxyhydroxide"),
        ("Auryxia 210 mg", NON_CALCIUM, "ferric_citrate"),
        ("Riona", NON_CALCIUM, "ferric_citrate"),
        ("Sensipar 30 mg", frozenset({"calcimimetic"}), "cinacalcet"),
        ("Mimpara", frozenset({"calcimimetic"}), "cinacalcet"),
        ("Parsabiv 5 mg", frozenset({"calcimimetic"}), "etelcalcetide"),
        ("Eliquis 2.5 mg", frozenset({"doac"}), "apixaban"),
        ("Xarelto 15 mg", frozenset({"doac"}), "rivaroxaban"),
        ("Savaysa", frozenset({"doac"}), "edoxaban"),
        ("Lixiana 30 mg", frozenset({"doac"}), "edoxaban"),
        ("Pradaxa 110 mg", frozenset({"doac"}), "dabigatran"),
        ("Alu-Cap 475 mg", frozenset({"aluminium_binder"}), "aluminium_hydroxide"),
        ("Amphojel", frozenset({"aluminium_binder"}), "aluminium_hydroxide"),
        ("Drisdol 50,000 units", NUTRITIONAL_D, "ergocalciferol"),
    ],
)
def test_brand_names_match_their_ingredient_class(text: str, classes: frozenset[str], concept: str) -> None:
    match = drug(text)
    assert match.classes == classes
    assert match.concept == concept
    assert match.how == "brand"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Renvela 800mg tab", "Renvela"),
        ("Renvela® 800 mg tablet", "Renvela"),
        ("  RENVELA™   800 MG ", "RENVELA"),
        ("PhosLo(R) gelcap", "PhosLo"),
        ("Os Cal 500", "Os Cal"),
        ("calcium  -  acetate 667mg", "calcium  -  acetate"),
        ("Calcium-Acetate", "Calcium-Acetate"),
    ],
)
def test_exact_match_tolerates_signs_spacing_and_strength_and_quotes_the_input(text: str, words: str) -> None:
    match = drug(text)
    assert match.matched_words == words
    assert match.matched_words in text


@pytest.mark.parametrize(
    ("text", "classes", "concept"),
    [
        ("CaCO3 500 mg", CALCIUM, "calcium_carbonate"),
        ("Ca acetate 667", CALCIUM, "calcium_acetate"),
        ("calc carb 1.25 g", CALCIUM, "calcium_carbonate"),
        ("1,25-(OH)2D3 0.25 mcg", ACTIVE_D, "calcitriol"),
        ("1-OHD3 0.25 mcg", ACTIVE_D, "alfacalcidol"),
        ("1-alpha 0.25 micrograms", ACTIVE_D, "alfacalcidol"),
        ("1α-OH-D2", ACTIVE_D, "doxercalciferol"),
        ("STS 25 g IV post HD", frozenset({"sodium_thiosulfate"}), "sodium_thiosulfate"),
        ("Al(OH)3 suspension", frozenset({"aluminium_binder"}), "aluminium_hydroxide"),
        ("vit D3 1000 IU", NUTRITIONAL_D, "cholecalciferol"),
        ("D3 1000 IU", NUTRITIONAL_D, "cholecalciferol"),
        ("VKA per anticoagulation clinic", VKA, "vka_unspecified"),
    ],
)
def test_abbreviations_match_as_whole_words(text: str, classes: frozenset[str], concept: str) -> None:
    match = drug(text)
    assert match.classes == classes
    assert match.concept == concept
    assert match.how == "abbreviation"


def test_one_alpha_shorthand_is_not_interleukin_or_hydroxylase() -> None:
    assert match_drug_text("IL-1 alpha antagonist") is None
    assert match_drug_text("1-alpha hydroxylase deficiency") is None


def test_case_sensitive_abbreviations_need_capitals() -> None:
    assert match_drug_text("sts") is None
    assert match_drug_text("vka") is None


# ==========================================================================================
# Drugs: IV products
# ==========================================================================================


@pytest.mark.parametrize(
    "text",
    [
        "paricalcitol 5 mcg/mL inj",
        "Zemplar IV 2 mcg/mL",
        "Calcijex 1 mcg/mL",
        "calcitriol 1 mcg/mL injection",
        "doxercalciferol injection 4 mcg/2 mL",
        "Hectorol injection",
    ],
)
def test_intravenous_active_vitamin_d_products_are_active_sterols(text: str) -> None:
    assert drug(text).classes == ACTIVE_D


def test_etelcalcetide_intravenous_is_a_calcimimetic() -> None:
    assert drug("Parsabiv 5 mg IV three times weekly after HD").classes == frozenset({"calcimimetic"})


# ==========================================================================================
# Drugs: misspellings and truncations
# ==========================================================================================


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("calcitirol 0.25 mcg", "calcitriol"),
        ("calcitrol", "calcitriol"),
        ("paracalcitol 2 mcg", "paricalcitol"),
        ("warfrin 5mg", "warfarin"),
        ("sevelemer 800", "sevelamer"),
        ("cinacalet 30 mg", "cinacalcet"),
        ("lanthenum carbonate", "lanthanum_carbonate"),
        ("Sensipr", "cinacalcet"),
    ],
)
def test_misspellings_match_by_strict_fuzzy_ratio(text: str, concept: str) -> None:
    match = drug(text)
    assert match.concept == concept
    assert match.how == "fuzzy"
    assert match.score is not None and match.score >= 88
    assert match.matched_words in text


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("paricalc 1 mcg", "paricalcitol"),
        ("calcitr 0.25", "calcitriol"),
        ("sevel 800 mg", "sevelamer"),
        ("cinacal", "cinacalcet"),
        ("apixa 2.5", "apixaban"),
    ],
)
def test_truncated_stems_match_the_one_name_they_start(text: str, concept: str) -> None:
    match = drug(text)
    assert match.concept == concept
    assert match.how == "fuzzy"


def test_misspelt_word_inside_a_multiword_name_matches_the_whole_name() -> None:
    match = drug("calcium acettate 667 mg")
    assert match.concept == "calcium_acetate"
    assert match.how == "fuzzy"
    assert match.matched_words == "calcium acettate"
    assert drug("sucroferic oxyhydroxide").matched_words == "sucroferic oxyhydroxide"


@pytest.mark.parametrize(
    "text",
    [
        "calcium",  # never a drug on its own
        "calcitonin 200 units nasal",  # a hormone, a fuzzy neighbour of calcitriol
        "calcipotriol 50 mcg/g ointment",  # topical psoriasis drug, 91% like calcitriol
        "calcipotriene",
        "calcit",  # stem of calcitriol AND calcitonin
        "calcif",  # stem of calcifediol, calciferol, calcification
        "warf",  # stem too short
        "Tmus",  # short brand: never fuzzy
        "Eliq",
        "lanthanide",
        "heparin 5000 units",
    ],
)
def test_lookalikes_stems_and_short_brands_never_fuzzy_match(text: str) -> None:
    assert match_drug_text(text) is None


@pytest.mark.parametrize(
    "text",
    ["Pramipexole dihydrochloride 0.375 MG", "hydroxyzine hydrochloride 25 mg", "sertraline hydrochloride 50 mg"],
)
def test_salt_words_of_a_multiword_name_never_fuzzy_match_alone(text: str) -> None:
    # "sevelamer hydrochloride" must not make every hydrochloride salt a phosphate binder.
    assert match_drug_text(text) is None


def test_cholecalciferol_is_nutritional_never_an_active_sterol() -> None:
    assert drug("cholecalciferol").classes == NUTRITIONAL_D
    assert drug("cholecalciferl 1000 IU").classes == NUTRITIONAL_D
    assert drug("calcifediol").classes == ACTIVE_D
    assert drug("calcifediol").how == "name"


# ==========================================================================================
# Drugs: false friends
# ==========================================================================================


@pytest.mark.parametrize(
    "text",
    [
        "leucovorin calcium 15 mg",
        "calcium folinate 50 mg injection",
        "levoleucovorin calcium",
        "levomefolate calcium",
        "rosuvastatin calcium 10 mg",
        "atorvastatin calcium 40 mg",
        "pitavastatin calcium 2 mg",
        "docusate calcium 240 mg",
        "calcium pantothenate",
        "calcium polycarbophil 625 mg",
        "amlodipine 5 mg",
        "CCB",
        "calcium channel blocker",
        "calcium-free dialysate",
        "calcium level",
        "serum calcium 10.4 mg/dL",
        "low calcium diet",
        "check calcium in 1 week",
        "dialysate calcium 2.5 mEq/L",
        "calcium 9.8 mg/dL",
        "calcitriol ointment 3 mcg/g",
        "calcitriol topical",
        "Vectical",
        "Silkis ointment",
        "calcipotriol cream",
        "Dovonex",
        "salicylic acid / sodium thiosulfate lotion",
        "vitamin K 10 mg",
        "phytonadione 10 mg IV",
        "Konakion",
        "vitamin D level",
        "25-OH vitamin D",
        "patiromer 8.4 g",
    ],
)
def test_false_friends_yield_no_class(text: str) -> None:
    assert match_drug_text(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "calcium gluconate 10% injection",
        "Calcium Gluconate in Sodium Chloride Injection 1 g/50 mL",
        "calcium chloride 10% syringe",
        "calcium acetate in parenteral nutrition",
    ],
)
def test_parenteral_calcium_is_its_own_class_not_a_binder(text: str) -> None:
    assert drug(text).classes == frozenset({"parenteral_calcium"})


def test_oral_calcium_gluconate_is_a_calcium_supplement() -> None:
    assert drug("calcium gluconate 500 mg tablet").classes == CALCIUM


def test_aluminium_sulfate_topical_solution_with_calcium_acetate_is_not_a_calcium_load() -> None:
    assert match_drug_text("aluminum sulfate and calcium acetate powder for topical solution") is None


def test_ferric_sodium_citrate_is_oral_iron_not_the_binder_ferric_citrate() -> None:
    assert drug("ferric sodium citrate 100 mg").classes == frozenset({"iron"})
    assert drug("ferric citrate").classes == NON_CALCIUM


def test_vitamin_k_antagonist_is_a_vka_but_vitamin_k_is_not() -> None:
    assert drug("vitamin K antagonist").classes == VKA
    assert match_drug_text("vitamin K1 (phytomenadione)") is None


def test_calcium_free_binder_wording_names_the_non_calcium_class() -> None:
    assert drug("non-calcium phosphate binder").classes == NON_CALCIUM
    assert drug("calcium-free binder").classes == NON_CALCIUM


def test_bare_calcium_with_a_strength_is_a_supplement_only_as_the_product_name() -> None:
    match = drug("Calcium 600 mg + D3 tablet")
    assert match.classes == frozenset({"calcium_binder", "nutritional_vitamin_d"})
    assert match.matched_words == "Calcium 600 mg"
    assert match_drug_text("pitavastatin calcium 2 mg") is None
    assert match_drug_text("calcium 10 mg/dL") is None


# ==========================================================================================
# Drugs: several classes in one text
# ==========================================================================================


def test_multiclass_text_returns_the_union_and_the_first_matched_words() -> None:
    match = drug("calcium carbonate 1250 mg + vitamin D3 400 IU")
    assert match.classes == frozenset({"calcium_binder", "nutritional_vitamin_d"})
    assert match.concept == "calcium_carbonate"
    assert match.matched_words == "calcium carbonate"
    assert drug("Calcichew-D3 Forte").classes == frozenset({"calcium_binder", "nutritional_vitamin_d"})


@pytest.mark.parametrize("text", ["Calcium Plus D Pill", "Calcium with vitamin D3 600 mg", "calcium + vitamin D"])
def test_calcium_named_with_vitamin_d_is_both_classes(text: str) -> None:
    assert drug(text).classes == frozenset({"calcium_binder", "nutritional_vitamin_d"})


def test_calcium_and_vitamin_d_levels_are_lab_text() -> None:
    assert match_drug_text("check calcium and vitamin D levels") is None


def test_vitamin_d_words_describing_an_active_sterol_do_not_add_the_nutritional_class() -> None:
    assert drug("calcitriol (active vitamin D3) 0.25 mcg").classes == ACTIVE_D
    assert drug("Alpha D3 0.25 mcg").classes == ACTIVE_D


def test_nutritional_vitamin_d_shorthand_is_its_own_class() -> None:
    assert drug("vitamin D 50000 IU weekly").classes == NUTRITIONAL_D
    assert drug("Vitamin D 50000 IU weekly, repeat level in 3 months").classes == NUTRITIONAL_D
    assert drug("vitamin D2 50,000 units").classes == NUTRITIONAL_D


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_blank_text_matches_nothing(value: str) -> None:
    assert match_drug_text(value) is None
    assert match_condition_text(value) == ()


# ==========================================================================================
# Conditions: calciphylaxis
# ==========================================================================================


@pytest.mark.parametrize(
    "text",
    [
        "Calciphylaxis",
        "calciphylaxis of both thighs",
        "Calcific uremic arteriolopathy",
        "calcific uraemic arteriolopathy",
        "calcific uremic arteriopathy",
        "calciphylactic ulcer",
        "Other disorders of calcium metabolism (calciphylaxis)",
    ],
)
def test_calciphylaxis_names(text: str) -> None:
    assert present(text) == {"calciphylaxis"}


def test_cua_is_calciphylaxis_only_as_a_capitalised_whole_word() -> None:
    (match,) = match_condition_text("CUA left calf")
    assert (match.kind, match.matched_words, match.how) == ("calciphylaxis", "CUA", "abbreviation")
    assert match_condition_text("cua") == ()
    assert match_condition_text("ACUAL") == ()


@pytest.mark.parametrize("text", ["calciphalaxis", "calcifylaxis", "calcipylaxis left leg", "calciphylaxsis"])
def test_calciphylaxis_misspellings_match_as_fuzzy(text: str) -> None:
    (match,) = match_condition_text(text)
    assert match.kind == "calciphylaxis"
    assert match.how == "fuzzy"
    assert not match.negated


@pytest.mark.parametrize("text", ["anaphylaxis", "DVT prophylaxis", "calcification"])
def test_calciphylaxis_lookalikes_do_not_match(text: str) -> None:
    assert "calciphylaxis" not in kinds(text)


# ==========================================================================================
# Conditions: negation and suspicion
# ==========================================================================================


@pytest.mark.parametrize(
    "text",
    [
        "no calciphylaxis",
        "negative for calciphylaxis",
        "without calciphylaxis",
        "denies AF",
        "calciphylaxis ruled out",
        "calciphylaxis, ruled out on biopsy",
        "calciphylaxis excluded",
        "calciphylaxis not confirmed",
        "calciphylaxis unlikely",
        "no evidence of calciphylaxis",
    ],
)
def test_explicit_negation_is_flagged_not_dropped(text: str) -> None:
    matches = match_condition_text(text)
    assert matches, text
    assert all(m.negated for m in matches)


@pytest.mark.parametrize(
    "text",
    [
        "r/o calciphylaxis",
        "?calciphylaxis",
        "? calciphylaxis",
        "suspected calciphylaxis",
        "possible calciphylaxis",
        "calciphylaxis not excluded",
        "cannot exclude calciphylaxis",
        "query CUA",
        "history of calciphylaxis",
    ],
)
def test_suspected_calciphylaxis_counts_as_present(text: str) -> None:
    assert present(text) == {"calciphylaxis"}


def test_negation_stops_at_the_clause() -> None:
    assert kinds("No AF; ESRD on HD") == {"atrial_fibrillation": True, "kidney_failure": False, "dialysis": False}
    assert kinds("No history of bleeding, ESRD on HD") == {"kidney_failure": False, "dialysis": False}


def test_a_text_with_both_polarities_returns_both() -> None:
    matches = match_condition_text("no calciphylaxis in 2019. Calciphylaxis confirmed on biopsy 2024")
    assert [(m.kind, m.negated) for m in matches] == [("calciphylaxis", True), ("calciphylaxis", False)]


# ==========================================================================================
# Conditions: dialysis, HD / PD and friends
# ==========================================================================================


@pytest.mark.parametrize(
    "text",
    [
        "Hemodialysis",
        "haemodialysis MWF",
        "Peritoneal dialysis",
        "Dependence on renal dialysis",
        "on dialysis",
        "dialysis-dependent",
        "home haemodialysis",
        "continuous ambulatory peritoneal dialysis",
        "renal replacement therapy",
        "CRRT",
    ],
)
def test_dialysis_names(text: str) -> None:
    assert "dialysis" in present(text)


@pytest.mark.parametrize(
    "text",
    [
        "ESRD on HD",
        "HD via L arm AVF",
        "HD-dependent",
        "ESKD on PD",
        "PD catheter in situ",
        "on PD",
        "HHD, ESRD",
        "CAPD for ESKD",
        "APD overnight cycler",
        "CCPD, renal failure",
        "ESRD, RRT via AVF",
    ],
)
def test_dialysis_abbreviations_count_with_a_dialysis_context(text: str) -> None:
    assert "dialysis" in present(text)


@pytest.mark.parametrize(
    "text",
    [
        "HD",  # no context
        "PD",
        "Huntington disease (HD), on dialysis",  # the other meaning is named
        "Parkinson disease (PD), CKD 3",
        "PD on levodopa, ESRD",
        "PD-1 inhibitor; kidney function normal",
        "hd",  # lower case
        "HHD",  # hypertensive heart disease without context
        "CAPD",  # central auditory processing disorder without context
        "RRT called for hypotension",  # rapid response team
    ],
)
def test_hd_pd_and_other_abbreviations_without_dialysis_context_do_not_count(text: str) -> None:
    assert not any(
        m.kind == "dialysis" and m.matched_words.upper() in {"HD", "PD", "HHD", "CAPD", "RRT"}
        for m in match_condition_text(text)
    ), text


@pytest.mark.parametrize("text", ["pre-dialysis CKD", "predialysis clinic", "non-dialysis-dependent CKD"])
def test_pre_dialysis_is_not_dialysis(text: str) -> None:
    assert "dialysis" not in kinds(text)


@pytest.mark.parametrize("text", ["not on dialysis", "awaiting dialysis", "dialysis planning", "declined dialysis"])
def test_not_yet_on_dialysis_is_negated(text: str) -> None:
    assert kinds(text) == {"dialysis": True}


# ==========================================================================================
# Conditions: kidney failure, transplant, calcification, AF
# ==========================================================================================


@pytest.mark.parametrize(
    "text",
    [
        "ESRD",
        "ESKD",
        "esrd",
        "End-stage renal disease",
        "end stage kidney disease",
        "End stage renal failure",
        "CKD 5",
        "CKD5",
        "CKD stage 5",
        "CKD stage V",
        "CKD G5",
        "CKD G5A3",
        "CKD 5D",
        "CKD-5D",
        "Chronic kidney disease, stage 5",
        "stage 5 chronic kidney disease",
    ],
)
def test_kidney_failure_names(text: str) -> None:
    assert present(text) == {"kidney_failure"}


@pytest.mark.parametrize("text", ["CKD 3-5", "CKD stage 4", "CKD 3b", "CKD 50", "acute kidney failure"])
def test_earlier_ckd_stages_are_not_kidney_failure(text: str) -> None:
    assert "kidney_failure" not in kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "Kidney transplant 2015",
        "s/p renal transplant",
        "renal transplant recipient",
        "transplanted kidney",
        "renal allograft",
        "DDRT 2019",
        "deceased donor kidney transplant",
        "simultaneous pancreas-kidney transplant",
    ],
)
def test_kidney_transplant_names(text: str) -> None:
    assert present(text) == {"kidney_transplant"}


@pytest.mark.parametrize(
    "text",
    [
        "awaiting kidney transplant",
        "kidney transplant candidate",
        "renal transplant evaluation",
        "referred for renal transplant",
        "failed renal transplant",
        "kidney transplant failure",
    ],
)
def test_awaited_or_failed_transplant_is_negated(text: str) -> None:
    assert kinds(text) == {"kidney_transplant": True}


def test_failed_transplant_back_on_dialysis() -> None:
    assert kinds("failed renal transplant, now on HD") == {"kidney_transplant": True, "dialysis": False}


def test_other_organ_transplants_are_not_kidney_transplants() -> None:
    assert kinds("liver transplant 2010") == {}


@pytest.mark.parametrize(
    "text",
    [
        "vascular calcification",
        "severe arterial calcifications",
        "medial arterial calcification",
        "Mönckeberg sclerosis",
        "Monckeberg's arteriosclerosis",
        "medial calcific sclerosis",
        "soft-tissue calcification",
        "calcinosis cutis",
        "calcific vasculopathy",
    ],
)
def test_vascular_calcification_names(text: str) -> None:
    assert present(text) == {"vascular_calcification"}


def test_diacritics_are_folded_but_matched_words_keep_them() -> None:
    (match,) = match_condition_text("Mönckeberg sclerosis")
    assert match.matched_words == "Mönckeberg sclerosis"


@pytest.mark.parametrize(
    "text",
    [
        "atrial fibrillation",
        "AF",
        "AFib",
        "A-fib",
        "A fib",
        "afib",
        "paroxysmal AF",
        "PAF",
        "AF/AFL",
        "permanent atrial fibrillation",
        "non-valvular AF",
    ],
)
def test_atrial_fibrillation_names(text: str) -> None:
    assert present(text) == {"atrial_fibrillation"}


@pytest.mark.parametrize("text", ["atrial flutter", "AFL", "ventricular fibrillation", "AFB smear", "af"])
def test_flutter_and_other_lookalikes_are_not_atrial_fibrillation(text: str) -> None:
    assert "atrial_fibrillation" not in kinds(text)


# ==========================================================================================
# Conditions: heart valves
# ==========================================================================================


@pytest.mark.parametrize(
    "text",
    [
        "mechanical heart valve",
        "Mechanical AVR 2010",
        "St. Jude mechanical AVR",
        "AVR (St. Jude mechanical)",
        "On-X aortic valve",
        "Carbomedics mitral valve",
        "Medtronic Hall valve",
        "Björk-Shiley valve",
        "Bjork-Shiley valve",
        "Starr-Edwards caged ball valve",
        "ATS Open Pivot valve",
        "SJM Regent AVR",
        "bileaflet mechanical valve",
        "tilting disc valve",
        "MAVR",
    ],
)
def test_mechanical_valve_names_and_brands(text: str) -> None:
    assert present(text) == {"mechanical_valve"}


@pytest.mark.parametrize(
    "text",
    [
        "bioprosthetic AVR",
        "tissue valve",
        "porcine valve",
        "bovine pericardial valve",
        "Carpentier-Edwards Perimount AVR",
        "Perimount Magna Ease aortic valve",
        "Hancock II porcine bioprosthesis",
        "Mosaic porcine valve",
        "St Jude Trifecta AVR",
        "TAVR 2020",
        "TAVI",
        "homograft",
        "Presence of xenogenic heart valve",
    ],
)
def test_bioprosthetic_valve_names_and_brands(text: str) -> None:
    assert present(text) == {"bioprosthetic_valve"}


@pytest.mark.parametrize(
    "text",
    [
        "s/p AVR",
        "s/p MVR",
        "prosthetic heart valve",
        "Presence of prosthetic heart valve",
        "aortic valve replacement",
        "St Jude AVR",
        "SAVR 2018",
    ],
)
def test_prosthetic_valve_of_unknown_type(text: str) -> None:
    (match,) = match_condition_text(text)
    assert match.kind == "prosthetic_valve_unspecified"
    assert not match.negated


def test_abbreviated_valve_procedures_report_abbreviation() -> None:
    (match,) = match_condition_text("s/p AVR")
    assert (match.matched_words, match.how) == ("AVR", "abbreviation")


def test_a_text_naming_two_valves_returns_both_kinds() -> None:
    matches = match_condition_text("bioprosthetic AVR, mechanical MVR")
    assert [(m.kind, m.matched_words) for m in matches] == [
        ("bioprosthetic_valve", "bioprosthetic AVR"),
        ("mechanical_valve", "mechanical MVR"),
    ]


def test_the_most_specific_valve_type_wins_within_a_mention() -> None:
    assert present("AVR with St. Jude mechanical prosthesis") == {"mechanical_valve"}
    assert present("St Jude Trifecta AVR") == {"bioprosthetic_valve"}


@pytest.mark.parametrize(
    "text",
    [
        "mitral valve repair with Carpentier-Edwards ring",  # annuloplasty ring, not a replacement
        "bileaflet mitral valve prolapse",
        "bovine pericardial patch",
        "ST elevation in lead AVR",  # the ECG lead aVR
        "ST depression in AVR",
        "chest On X-ray clear",
        "Mosaic attenuation on CT",  # brands need a valve word
        "cisterna magna",
        "ATS guidelines",
        "St Jude Children's Research Hospital",
        "mechanical ventilation",
        "metallic hip prosthesis",
    ],
)
def test_valve_lookalikes_do_not_match(text: str) -> None:
    assert not {"mechanical_valve", "bioprosthetic_valve", "prosthetic_valve_unspecified"} & set(kinds(text))


def test_qualifiers_must_sit_next_to_the_valve() -> None:
    assert present("pericardial effusion post AVR") == {"prosthetic_valve_unspecified"}
    assert present("mechanical ventilation s/p AVR") == {"prosthetic_valve_unspecified"}


def test_negated_valve_is_flagged() -> None:
    assert kinds("no prosthetic valve") == {"prosthetic_valve_unspecified": True}


@pytest.mark.parametrize("text", ["referred for TAVR", "TAVR evaluation", "candidate for AVR", "AVR planned"])
def test_planned_valve_procedures_are_negated(text: str) -> None:
    assert all(negated for negated in kinds(text).values())
    assert kinds(text)


# ==========================================================================================
# Properties
# ==========================================================================================

_FRAGMENTS = [
    "calcium",
    "acetate",
    "Renvela",
    "®",
    "HD",
    "PD",
    "ESRD",
    "no",
    "r/o",
    "?",
    "AVR",
    "St. Jude",
    "mechanical",
    "valve",
    "calcitriol",
    "ointment",
    "CUA",
    "AF",
    "1,25-(OH)2D3",
    "α",
    "Mönckeberg",
    "calciphylaxis",
    ",",
    ";",
    "-",
    "  ",
    "\n",
    "injection",
    "CKD 5",
    "ﬁ",
    "™",
    "transplant",
    "awaiting",
    "paricalc",
    "sevelemer",
]


def _check_drug(text: str) -> None:
    match = match_drug_text(text)
    if match is not None:
        assert isinstance(match, DrugTextMatch)
        assert match.classes
        assert match.matched_words and match.matched_words in text
        assert match.how in ("name", "brand", "abbreviation", "fuzzy", "spelling")


def _check_conditions(text: str) -> None:
    matches = match_condition_text(text)
    assert isinstance(matches, tuple)
    for match in matches:
        assert isinstance(match, ConditionTextMatch)
        assert match.matched_words and match.matched_words in text
        assert match.how in ("name", "abbreviation", "fuzzy")


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_matchers_never_raise_on_arbitrary_unicode(text: str) -> None:
    _check_drug(text)
    _check_conditions(text)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=5)), max_size=40).map(" ".join))
def test_matchers_never_raise_on_text_built_from_synonym_fragments(text: str) -> None:
    _check_drug(text)
    _check_conditions(text)


@settings(max_examples=20, deadline=None, database=None)
@given(st.text(min_size=2000, max_size=5000))
def test_matchers_handle_long_texts(text: str) -> None:
    _check_drug(text)
    _check_conditions(text)
