"""The generated RxNorm table: it matches its source, and it classes drugs the way we mean.

The drift test needs the third-party extract at ../shared/fhir-data/sandbox-rxnorm/ (outside
the repository) and is skipped without it. Every other test reads only the committed JSON or
calls the generator's pure functions on names written here, so it runs anywhere.

All RxCUIs below were looked up in medication-list.js. The extract holds oral solid drugs only
(no injectables, lotions or packs), so route rules are tested on RxNorm-style names instead of
codes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cds_service.patient import rxnorm_table
from cds_service.patient.rxnorm_table import brand_classes, generated_drug, provenance
from tests.conftest import skip_without_shared
from tests.patient.generator_support import load_generator

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO.parent / "shared" / "fhir-data" / "sandbox-rxnorm" / "medication-list.js"
COMMITTED = REPO / "cds_service" / "patient" / "data" / "rxnorm_generated.json"
GENERATOR = REPO / "tools" / "generate_rxnorm_table.py"

KNOWN_CLASSES = {
    "calcium_binder",
    "parenteral_calcium",
    "vka",
    "active_vitamin_d",
    "nutritional_vitamin_d",
    "non_calcium_binder",
    "aluminium_binder",
    "calcimimetic",
    "doac",
    "sodium_thiosulfate",
    "iron",
    "magnesium",
}


@pytest.fixture(scope="module")
def gen() -> Iterator[ModuleType]:
    """tools/generate_rxnorm_table.py as a module (tools/ is not a package)."""
    with load_generator(GENERATOR, "_generate_rxnorm_table_under_test") as module:
        yield module


def classes(rxcui: str) -> frozenset[str] | None:
    drug = generated_drug(rxcui)
    return None if drug is None else drug.classes


# --- (a) drift ----------------------------------------------------------------------------


def test_committed_table_is_exactly_what_the_generator_makes_from_the_source(gen):
    skip_without_shared(SOURCE, "the sandbox's RxNorm extract (drift of rxnorm_generated.json not checked)")
    regenerated = gen.generate(SOURCE)
    committed = COMMITTED.read_text(encoding="utf-8")
    assert regenerated == committed, "\n".join(gen.drift_summary(committed, regenerated))


def test_check_mode_exits_1_and_names_the_difference_when_the_committed_file_drifts(gen, tmp_path, capsys):
    skip_without_shared(SOURCE, "the sandbox's RxNorm extract (--check not exercised)")
    table = json.loads(COMMITTED.read_text(encoding="utf-8"))
    del table["entries"]["197433"]
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(table), encoding="utf-8")
    assert gen.main(["--source", str(SOURCE), "--output", str(stale), "--check"]) == 1
    assert "+ 197433" in capsys.readouterr().out


# --- (b) the committed table --------------------------------------------------------------


def test_provenance_records_the_source_hash_size_description_and_generator_version():
    prov = provenance()
    assert prov["source"] == (
        "RxNorm extract shipped with the public CDS Hooks sandbox (cds-hooks/sandbox, Apache-2.0), medication-list.js"
    )
    assert len(prov["source_sha256"]) == 64 and prov["source_size_bytes"] > 0
    assert prov["generator_version"] and prov["licence_note"]


def test_calcium_acetate_667_mg_tablet_is_a_calcium_binder():
    drug = generated_drug("197433")
    assert drug is not None
    assert drug.classes == {"calcium_binder"}
    assert drug.ingredients == ("calcium acetate",)
    assert (drug.tty_guess, drug.dose_form, drug.routes) == ("SCD", "Oral Tablet", ("oral",))


def test_oral_calcium_gluconate_is_a_calcium_binder():
    assert classes("199881") == {"calcium_binder"}  # Calcium Gluconate 500 MG Oral Capsule


def test_warfarin_5_mg_tablet_is_a_vka():
    assert classes("855332") == {"vka"}  # Warfarin Sodium 5 MG Oral Tablet


def test_older_vkas_are_vkas_but_coumarin_the_benzopyrone_is_not():
    assert classes("246019") == {"vka"}  # Acenocoumarol 4 MG Oral Tablet
    assert classes("312380") == {"vka"}  # Phenprocoumon 3 MG Oral Tablet
    assert classes("199500") == {"vka"}  # Phenindione 10 MG Oral Tablet
    assert classes("197369") == {"vka"}  # anisindione 50 MG Oral Tablet
    assert generated_drug("199570") is None  # coumarin 200 MG Oral Tablet


def test_calcitriol_and_zemplar_paricalcitol_are_active_vitamin_d():
    assert classes("308867") == {"active_vitamin_d"}  # Calcitriol 0.00025 MG Oral Capsule
    zemplar = generated_drug("606861")  # paricalcitol 0.004 MG Oral Capsule [Zemplar]
    assert zemplar is not None
    assert zemplar.classes == {"active_vitamin_d"}
    assert (zemplar.brand, zemplar.tty_guess) == ("Zemplar", "SBD")


def test_cholecalciferol_alone_is_nutritional_vitamin_d_only():
    assert classes("199362") == {"nutritional_vitamin_d"}  # Cholecalciferol 1000 UNT Oral Tablet


def test_calcium_with_vitamin_d_and_antacid_combinations_are_calcium_loads():
    # Calcium Carbonate 800 MG / Famotidine 10 MG / Magnesium Hydroxide 165 MG Chewable Tablet
    assert classes("283641") == {"calcium_binder", "magnesium"}
    # ... [Pepcid Complete]
    assert classes("688892") == {"calcium_binder", "magnesium"}
    # Calcium Carbonate 220 MG / Calcium Gluconate 5 MG / Vitamin D 40 UNT Oral Tablet
    assert classes("282760") == {"calcium_binder", "nutritional_vitamin_d"}


@pytest.mark.parametrize(
    "rxcui, what",
    [
        ("197863", "Leucovorin 5 MG Oral Tablet"),
        ("859750", "Rosuvastatin calcium 20 MG"),
        ("1233558", "levomefolate calcium 6 MG"),
        ("335485", "calcium polycarbophil 625 MG"),
        ("1248022", "Docusate Calcium 240 MG Oral Capsule [Surfak Stool Softener]"),
        ("835728", "Acamprosate calcium 333 MG Delayed Release Oral Tablet [Campral]"),
        ("891522", "B-complex with Calcium Pantothenate 5 MG Oral Capsule (Nephrocaps)"),
    ],
)
def test_drugs_that_are_only_calcium_salts_are_not_in_the_table(rxcui, what):
    assert generated_drug(rxcui) is None, what


def test_form_less_component_takes_its_route_from_the_drugs_built_on_it():
    drug = generated_drug("333819")  # Calcium Carbonate 265 MG
    assert drug is not None
    assert (drug.tty_guess, drug.dose_form, drug.routes) == ("SCDC", None, ("oral",))
    assert drug.classes == {"calcium_binder"}


def test_brand_pill_group_gets_its_ingredients_from_its_components():
    drug = generated_drug("1180634")  # Phoslo Pill
    assert drug is not None
    assert drug.tty_guess == "SBDG"
    assert (drug.brand, drug.ingredients) == ("Phoslo", ("calcium acetate",))
    assert drug.classes == {"calcium_binder"}


@pytest.mark.parametrize(
    "brand, expected",
    [
        ("phoslo", {"calcium_binder"}),
        ("renvela", {"non_calcium_binder"}),
        ("sensipar", {"calcimimetic"}),
        ("zemplar", {"active_vitamin_d"}),
        ("hectorol", {"active_vitamin_d"}),
        ("rocaltrol", {"active_vitamin_d"}),
        ("coumadin", {"vka"}),
        ("jantoven", {"vka"}),
        ("eliquis", {"doac"}),
    ],
)
def test_brands_clinicians_type_map_to_their_classes(brand, expected):
    assert brand_classes()[brand] == expected


def test_reformulated_brands_are_also_listed_under_their_plain_name():
    assert brand_classes()["rolaids reformulated aug 2006"] <= brand_classes()["rolaids"]


def test_ingredient_index_lists_the_codes_of_a_classed_ingredient():
    table = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert "197433" in table["ingredient_index"]["calcium acetate"]
    assert "calcium pantothenate" not in table["ingredient_index"]


def test_every_entry_has_known_classes_and_the_documented_fields():
    table = json.loads(COMMITTED.read_text(encoding="utf-8"))
    fields = {"name", "tty_guess", "ingredients", "brand", "dose_form", "classes", "routes"}
    for rxcui, row in table["entries"].items():
        assert rxcui.isdigit() and set(row) == fields, rxcui
        assert row["classes"] and set(row["classes"]) <= KNOWN_CLASSES, rxcui
        assert row["classes"] == sorted(row["classes"]), rxcui
    assert table["counts"]["entries"] == len(table["entries"])


def test_unknown_code_is_none_and_loads_are_cached():
    assert generated_drug("0") is None
    assert rxnorm_table.brand_classes() is rxnorm_table.brand_classes()


# --- the generator's rules, on RxNorm-style names the extract does not hold -------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Calcium Gluconate 100 MG/ML Injectable Solution", {"parenteral_calcium"}),
        ("Calcium Chloride 100 MG/ML Injectable Solution", {"parenteral_calcium"}),
        ("calcitriol 0.001 MG/ML Injectable Solution", {"active_vitamin_d"}),
        ("paricalcitol 0.005 MG/ML Injectable Solution [Zemplar]", {"active_vitamin_d"}),
        ("calcitriol 0.003 MG/ML Topical Ointment", set()),
        ("sodium thiosulfate 250 MG/ML Injectable Solution", {"sodium_thiosulfate"}),
        ("salicylic acid 20 MG/ML / sodium thiosulfate 80 MG/ML Topical Lotion", set()),
        ("leucovorin calcium 10 MG/ML Injectable Solution", set()),
        ("aluminum sulfate 1191 MG / calcium acetate 938 MG Powder for Topical Solution", set()),
        ("calcium acetate Oral Capsule", {"calcium_binder"}),
    ],
)
def test_route_and_false_friend_rules_class_names_right(gen, name, expected):
    assert gen.classify_name(name) == expected


def test_a_calcium_salt_nobody_reviewed_stops_the_generator(gen):
    with pytest.raises(gen.UnreviewedIngredientError, match="calcium orotate"):
        gen.classify_name("calcium orotate 500 MG Oral Tablet")


@pytest.mark.parametrize(
    "name, tty, ingredients, dose_form, brand",
    [
        ("calcium acetate 667 MG Oral Capsule [Phoslo]", "SBD", ["calcium acetate"], "Oral Capsule", "Phoslo"),
        ("Calcium Acetate 667 MG", "SCDC", ["calcium acetate"], None, None),
        ("calcium acetate 667 MG [Phoslo]", "SBDC", ["calcium acetate"], None, "Phoslo"),
        ("calcium acetate Oral Capsule", "SCDF", ["calcium acetate"], "Oral Capsule", None),
        ("Calcium Carbonate / Cholecalciferol Pill", "SCDG", ["calcium carbonate", "cholecalciferol"], "Pill", None),
        (
            "24 HR Calcium Carbonate 1500 MG / Cholecalciferol 500 UNT Extended Release Oral Tablet",
            "SCD",
            ["calcium carbonate", "cholecalciferol"],
            "Extended Release Oral Tablet",
            None,
        ),
        ("Vitamin B 12 0.012 MG Oral Tablet", "SCD", ["vitamin b 12"], "Oral Tablet", None),
        (
            "{21 (warfarin sodium 1 MG Oral Tablet) / 7 (Inert Ingredients 1 MG Oral Tablet) } Pack",
            "GPCK",
            ["warfarin sodium", "inert ingredients"],
            "Pack",
            None,
        ),
        ("calcitriol", "IN", ["calcitriol"], None, None),
    ],
)
def test_rxnorm_names_are_split_into_ingredients_form_brand_and_tty_guess(
    gen, name, tty, ingredients, dose_form, brand
):
    parsed = gen.parse_name(name)
    assert (parsed.tty_guess, list(parsed.ingredients), parsed.dose_form, parsed.brand) == (
        tty,
        ingredients,
        dose_form,
        brand,
    )


def test_js_parser_handles_escaped_quotes_comments_and_trailing_commas(gen):
    source = r"""// generated
    const rxnorm = {
      cuiToName: { 1: 'Devil\'s claw', '2': "say \"x\"", 3: 'tab\u0041', },
      /* groups */ pillToComponentSets: { 4: [['1', '2',],], },
      componentSetsToPrescribables: { '1,2': ['3'] },
    };
    export default rxnorm;
    """
    extract = gen.load_extract(source)
    assert extract.cui_to_name == {"1": "Devil's claw", "2": 'say "x"', "3": "tabA"}
    assert extract.pill_to_component_sets == {"4": [["1", "2"]]}
    assert extract.component_sets_to_prescribables == {"1,2": ["3"]}


def test_hand_verified_rxnorm_codes_and_the_generated_table_agree_on_every_shared_code():
    from cds_service.patient import terminology

    disagreements = {
        code: (sorted(classes), sorted(generated.classes))
        for code, classes in terminology.RXNORM_CLASSES.items()
        if (generated := generated_drug(code)) is not None and generated.classes != classes
    }
    assert disagreements == {}


def test_a_branded_or_component_code_known_only_to_the_generated_table_is_classed_by_code():
    from cds_service.patient import terminology

    # 197433 is hand-verified; a branded PhosLo code is not: it comes from the generated table.
    table = json.loads((Path(rxnorm_table.__file__).parent / "data" / "rxnorm_generated.json").read_text())
    phoslo = next(code for code, drug in table["entries"].items() if (drug["brand"] or "").lower() == "phoslo")
    assert phoslo not in terminology.RXNORM_CLASSES
    assert terminology.drug_classes_for_code(terminology.RXNORM, phoslo) == {"calcium_binder"}
