"""The generated NDC table: it matches its source, reads every NDC shape, and never guesses.

The drift tests need the third-party source directory (``$NDC_SOURCE``, else
../shared/fhir-data/ndc/rxnorm-ingredients/, outside the repository) and are skipped without it.
Every other test reads only the committed JSON, or runs the generator's pure functions on names
written here, or on a small source directory the test writes itself, so it runs anywhere.

Every NDC below was read in the source: web/data/<letter>.json of davidanderson3/rxnorm-ingredients
at commit a8fcf13a679fa37073e8fa83e11d5e0d8cc07276 (NLM RxNorm Current Prescribable Content of
2025-10-06), where RxNorm writes NDCs as 11 digits. The 10-digit hyphenated forms used below are
the ones the 11 digits allow without doubt (a leading 0 means a 4-digit labeler, 4-4-2; a package
part whose first digit is not 0 rules out 5-4-1).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_service.patient import ndc_table
from cds_service.patient.ndc_table import NdcProduct, ndc_product, normalise_ndc, provenance
from tests.conftest import skip_without_shared
from tests.patient.generator_support import load_generator

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "cds_service" / "patient" / "data" / "ndc_generated.json"
GENERATOR = REPO / "tools" / "generate_ndc_table.py"


def source_dir() -> Path:
    configured = os.environ.get("NDC_SOURCE", "").strip()
    return Path(configured) if configured else REPO.parent / "shared" / "fhir-data" / "ndc" / "rxnorm-ingredients"


@pytest.fixture(scope="module")
def gen() -> Iterator[ModuleType]:
    """tools/generate_ndc_table.py as a module (tools/ is not a package)."""
    with load_generator(GENERATOR, "_generate_ndc_table_under_test") as module:
        yield module


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return loaded


def product(code: str) -> NdcProduct:
    found = ndc_product(code)
    assert found is not None, code
    return found


# --- (a) drift ----------------------------------------------------------------------------


def test_committed_table_is_exactly_what_the_generator_makes_from_the_source(gen):
    source = source_dir()
    skip_without_shared(source, "the RxNorm NDC extract, or NDC_SOURCE (drift of ndc_generated.json not checked)")
    regenerated = gen.generate(source)
    committed = COMMITTED.read_text(encoding="utf-8")
    assert regenerated == committed, "\n".join(gen.drift_summary(committed, regenerated))


def test_check_mode_exits_1_and_names_the_product_key_that_drifted(gen, tmp_path, capsys):
    source = source_dir()
    skip_without_shared(source, "the RxNorm NDC extract (--check not exercised)")
    stale_table = json.loads(COMMITTED.read_text(encoding="utf-8"))
    del stale_table["products"]["000540088"]
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(stale_table), encoding="utf-8")
    assert gen.main(["--source", str(source), "--output", str(stale), "--check"]) == 1
    assert "+ 000540088" in capsys.readouterr().out
    assert gen.main(["--source", str(source), "--output", str(COMMITTED), "--check"]) == 0


def test_drift_summary_names_added_removed_and_changed_rows(gen):
    old = json.dumps({"products": {"1": {"rxcui": "a"}, "2": {"rxcui": "b"}}, "other_keys": ["x"]})
    new = json.dumps({"products": {"2": {"rxcui": "c"}, "3": {"rxcui": "d"}}, "other_keys": ["x", "y"]})
    lines = gen.drift_summary(old, new)
    assert "products: +1 -1 ~1" in lines and "  + 3" in lines and "  - 1" in lines
    assert "other_keys: +1 -0 ~0" in lines and "  + y" in lines
    assert gen.drift_summary("not json", new)[0].startswith("committed file is not valid JSON")


# --- (b) provenance and shape of the committed table ---------------------------------------


def test_provenance_names_the_public_source_commit_data_date_hashes_and_licence():
    prov = provenance()
    assert prov["repository"] == "https://github.com/davidanderson3/rxnorm-ingredients"
    assert prov["commit"] == "a8fcf13a679fa37073e8fa83e11d5e0d8cc07276"
    assert prov["data_date"] == "2025-10-06"
    assert len(prov["source_sha256"]) == 64 and prov["source_size_bytes"] > 0
    assert all(len(entry["sha256"]) == 64 for entry in prov["source_files"].values())
    assert "National Library of Medicine" in prov["licence_note"]
    assert prov["generator_version"]
    prov["commit"] = "changed"
    assert provenance()["commit"] == "a8fcf13a679fa37073e8fa83e11d5e0d8cc07276"  # a copy


def test_provenance_declares_the_missing_a_file_so_the_apixaban_gap_is_visible(table):
    assert table["provenance"]["files_missing"] == ["A.json"]
    assert table["counts"]["product_keys_per_ingredient"]["apixaban"] == 0


def test_every_row_points_at_a_drug_and_every_drug_has_the_documented_fields(table):
    fields = {"name", "nonproprietary", "substances", "strength", "dosage_form", "route", "tty", "watched"}
    for rxcui, drug in table["drugs"].items():
        assert rxcui.isdigit() and set(drug) == fields, rxcui
        assert drug["watched"] and set(drug["watched"]) <= set(table["provenance"]["ingredients_kept"]), rxcui
        assert drug["substances"] == [s.upper() for s in drug["substances"]], rxcui
    for key, row in table["products"].items():
        assert len(key) == 9 and key.isdigit() and row["ndc"] == f"{key[:5]}-{key[5:]}", key
        assert row["rxcui"] in table["drugs"], key
    for ndc, row in table["packages"].items():
        assert len(ndc) == 11 and ndc[:9] in table["ambiguous_keys"] and row["rxcui"] in table["drugs"], ndc
    assert not set(table["other_keys"]) & (set(table["products"]) | set(table["ambiguous_keys"]))
    assert table["counts"]["products"] == len(table["products"])


def test_committed_table_stays_well_under_one_megabyte():
    assert COMMITTED.stat().st_size < 600_000


# --- (c) normalisation of every NDC shape --------------------------------------------------


@pytest.mark.parametrize(
    "code, keys",
    [
        ("0054-0088-13", ("000540088",)),  # 4-4-2
        ("55513-073-30", ("555130073",)),  # 5-3-2
        ("58468-0130-1", ("584680130",)),  # 5-4-1
        ("00054-0088-13", ("000540088",)),  # 11-digit 5-4-2, hyphenated
        ("00054008813", ("000540088",)),  # 11 digits
        ("0054-0088", ("000540088",)),  # product NDC 4-4
        ("55513-073", ("555130073",)),  # product NDC 5-3
        ("58468-0130", ("584680130",)),  # product NDC 5-4
        (" 0054-0088-13 ", ("000540088",)),
        ("0054 0088 13", ("000540088", "005400088", "005400881")),  # spaces removed: 10 digits
        ("55513-*073-30", ("555130073",)),
        ("0054008813", ("000540088", "005400088", "005400881")),  # 4-4-2, 5-3-2, 5-4-1
    ],
)
def test_every_ndc_shape_normalises_to_its_9_digit_product_keys(code, keys):
    assert normalise_ndc(code) == keys


@pytest.mark.parametrize(
    "code",
    ["", "abc", "0054-0088-13-1", "054-0088-13", "00054-00088-13", "123456789", "123456789012", "0054-0088-1x", "-"],
)
def test_anything_that_is_not_an_ndc_normalises_to_nothing(code):
    assert normalise_ndc(code) == ()
    assert ndc_product(code) is None


def test_a_9_digit_key_is_the_first_9_digits_of_the_11_digit_form_of_all_three_10_digit_shapes():
    assert normalise_ndc("1234-5678-90") == normalise_ndc("01234567890") == ("012345678",)
    assert normalise_ndc("12345-678-90") == normalise_ndc("12345067890") == ("123450678",)
    assert normalise_ndc("12345-6789-0") == normalise_ndc("12345678900") == ("123456789",)


@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_any_11_digit_ndc_and_its_5_4_2_hyphenation_give_the_same_single_key(ndc):
    assert normalise_ndc(ndc) == normalise_ndc(f"{ndc[:5]}-{ndc[5:9]}-{ndc[9:]}") == (ndc[:9],)


@given(
    st.sampled_from([(4, 4, 2), (5, 3, 2), (5, 4, 1)]).flatmap(
        lambda shape: st.tuples(*(st.text(alphabet="0123456789", min_size=n, max_size=n) for n in shape))
    )
)
def test_a_hyphenated_10_digit_ndc_is_one_of_the_readings_of_the_same_digits_without_hyphens(parts):
    hyphenated_keys = normalise_ndc("-".join(parts))
    assert len(hyphenated_keys) == 1
    assert hyphenated_keys[0] in normalise_ndc("".join(parts))
    labeler, product_code, _package = parts
    assert hyphenated_keys[0] == labeler.zfill(5) + product_code.zfill(4)


@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_10_digits_without_hyphens_give_between_one_and_three_distinct_keys(ten):
    keys = normalise_ndc(ten)
    assert 1 <= len(keys) <= 3 and len(set(keys)) == len(keys)
    assert all(len(key) == 9 and key.isdigit() for key in keys)
    assert keys[0] == "0" + ten[:8]  # 4-4-2 reading first


@given(
    st.text(alphabet="0123456789-", min_size=1, max_size=14), st.lists(st.sampled_from([" ", "*", "\t"]), max_size=3)
)
def test_spaces_and_asterisks_never_change_the_reading(code, noise):
    noisy = "".join(noise) + code + "".join(noise)
    assert normalise_ndc(noisy) == normalise_ndc(code)


@given(st.text(max_size=20))
def test_arbitrary_text_never_raises(text):
    keys = normalise_ndc(text)
    assert all(len(key) == 9 and key.isdigit() for key in keys)
    result = ndc_product(text)
    assert result is None or isinstance(result, NdcProduct)


@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_the_reader_and_the_generator_read_10_digit_ndcs_the_same_way(gen, ten):
    assert normalise_ndc(ten) == tuple(dict.fromkeys(ndc[:9] for ndc in gen.readings_of_ten_digits(ten)))


# --- (d) real NDCs, as the source has them --------------------------------------------------


def test_calcium_acetate_667_mg_capsule_ndc_is_found_in_every_form():
    for code in ("0054-0088-13", "00054-0088-13", "00054008813", "0054-0088", "0054-0088-26", "0054008813"):
        capsule = product(code)
        assert (capsule.ndc, capsule.rxcui) == ("00054-0088", "359296"), code
    assert capsule.substances == ("CALCIUM ACETATE",)
    assert (capsule.strength, capsule.dosage_form, capsule.route) == ("667 MG", "Oral Capsule", "ORAL")
    assert capsule.name is None and capsule.watched == ("calcium acetate",)


def test_calcium_acetate_brands_tablet_and_oral_solution_are_calcium_acetate():
    phoslo = product("55289-0128-30")
    assert (phoslo.name, phoslo.nonproprietary, phoslo.tty) == ("Phoslo", "calcium acetate 667 MG Oral Capsule", "SBD")
    assert product("00536-1336-32").nonproprietary == "calcium acetate 667 MG Oral Tablet"
    phoslyra = product("49230-0643-31")
    assert (phoslyra.name, phoslyra.strength, phoslyra.dosage_form) == ("Phoslyra", "133 MG/ML", "Oral Solution")


def test_warfarin_5_mg_of_several_labelers_is_warfarin():
    teva = product("0093-1721-01")
    assert (teva.nonproprietary, teva.rxcui, teva.substances) == (
        "warfarin sodium 5 MG Oral Tablet",
        "855332",
        ("WARFARIN SODIUM",),
    )
    assert product("00378-8805-01").rxcui == "855332"  # Mylan
    jantoven = product("0832-1216-00")
    assert (jantoven.name, jantoven.rxcui, jantoven.watched) == ("Jantoven", "855336", ("warfarin",))
    assert product("0093-1712-01").nonproprietary == "warfarin sodium 1 MG Oral Tablet"


def test_calcitriol_capsule_solution_injection_and_ointment_keep_their_route():
    assert product("0093-0657-01").nonproprietary == "calcitriol 0.00025 MG Oral Capsule"
    rocaltrol = product("30698-0143-01")
    assert (rocaltrol.name, rocaltrol.strength, rocaltrol.route) == ("Rocaltrol", "0.00025 MG", "ORAL")
    assert product("63323-0731").route == "INJECTABLE"
    vectical = product("0299-2012-05")
    assert (vectical.name, vectical.dosage_form, vectical.route) == ("Vectical", "Topical Ointment", "TOPICAL")


def test_paricalcitol_capsules_and_injection_are_paricalcitol():
    injection = product("0074-4637-01")
    assert (injection.name, injection.nonproprietary, injection.route) == (
        "Zemplar",
        "1 ML paricalcitol 0.002 MG/ML Injection",
        "INJECTABLE",
    )
    assert product("00074-4314").nonproprietary == "paricalcitol 0.002 MG Oral Capsule"
    assert product("00143-9625-01").watched == ("paricalcitol",)


def test_doxercalciferol_hectorol_injection_is_doxercalciferol():
    hectorol = product("58468-0127")
    assert (hectorol.name, hectorol.substances, hectorol.route) == ("Hectorol", ("DOXERCALCIFEROL",), "INJECTABLE")


def test_cinacalcet_30_mg_sensipar_and_generic_are_cinacalcet():
    sensipar = product("55513-073-30")
    assert (sensipar.name, sensipar.nonproprietary, sensipar.rxcui) == (
        "Sensipar",
        "cinacalcet 30 MG Oral Tablet",
        "656137",
    )
    assert product("00378-6197-93").rxcui == "432402"
    assert product("55513-0740-01").name == "Parsabiv"  # etelcalcetide
    assert product("55513-0740-01").watched == ("etelcalcetide",)


def test_sevelamer_carbonate_800_mg_and_lanthanum_are_calcium_free_binders():
    renvela = product("58468-0130-01")
    assert (renvela.name, renvela.nonproprietary) == ("Renvela", "sevelamer carbonate 800 MG Oral Tablet")
    assert product("58468-0130-1") == renvela == product("58468-130-01")
    assert product("00955-1050-27").substances == ("SEVELAMER CARBONATE",)
    assert product("54092-0252-45").name == "Fosrenol"


def test_sodium_thiosulfate_injections_and_acne_lotion_are_kept_with_their_route():
    vial = product("60267-0705-50")
    assert (vial.nonproprietary, vial.route) == ("50 ML sodium thiosulfate 250 MG/ML Injection", "INJECTABLE")
    assert product("73077-0010-01").name == "Pedmark"
    lotion = product("60267-0531")
    assert (lotion.substances, lotion.route) == (("SALICYLIC ACID", "SODIUM THIOSULFATE"), "TOPICAL")


def test_combination_products_list_every_substance_and_every_watched_ingredient():
    # Baxter lactated Ringer's irrigation: calcium chloride with other electrolytes.
    ringer = product("0338-0114-04")
    assert ringer.route == "IRRIGATION" and "CALCIUM CHLORIDE" in ringer.substances
    tums = product("00135-0070")
    assert (tums.name, tums.substances) == ("Tums", ("CALCIUM CARBONATE",))


# --- (e) false friends and ambiguity --------------------------------------------------------


@pytest.mark.parametrize(
    "code, what",
    [
        ("0054-4497-05", "leucovorin 10 MG Oral Tablet"),
        ("00378-2204-77", "rosuvastatin calcium 20 MG Oral Tablet"),
        ("0005-2500-02", "calcium polycarbophil 625 MG Oral Tablet [FiberCon]"),
    ],
)
def test_drugs_whose_salt_is_only_calcium_are_not_in_the_table(code, what):
    assert ndc_product(code) is None, what


def test_no_drug_is_kept_because_of_a_counter_ion_salt(table):
    counter_ions = ("LEUCOVORIN", "ROSUVASTATIN", "ATORVASTATIN", "PITAVASTATIN", "MONTELUKAST", "ESOMEPRAZOLE")
    for rxcui, drug in table["drugs"].items():
        assert not any(s.startswith(counter_ions) for s in drug["substances"]), rxcui
        assert "DOCUSATE CALCIUM" not in drug["substances"], rxcui
        if drug["substances"] in (["CALCIUM PANTOTHENATE"], ["CALCIUM POLYCARBOPHIL"], ["MAGNESIUM SALICYLATE"]):
            pytest.fail(f"{rxcui} is only a counter-ion salt")


def test_10_digits_without_hyphens_that_read_as_two_products_give_none():
    # 0033811420 read 5-3-2 is 00338-0114-20 (key of Baxter's lactated Ringer's irrigation,
    # 0338-0114-04) and read 5-4-1 is 00338-1142-00 (key of Clinimix E, 0338-1142-03): both
    # contain calcium chloride, but the code cannot say which one it is.
    assert normalise_ndc("0033811420") == ("000338114", "003380114", "003381142")
    assert ndc_product("0033811420") is None
    assert product("0338-0114-04").route == "IRRIGATION"
    assert product("0338-1142-03").route == "INJECTABLE"


def test_10_digits_without_hyphens_that_may_be_another_drug_give_none():
    # 5551307301: 5-3-2 would be Sensipar 30 mg (55513-073-01); 5-4-1 is 55513-0730-01, Xgeva
    # (denosumab) in the source, so the code cannot be trusted to be cinacalcet.
    assert "555130073" in normalise_ndc("5551307301")
    assert ndc_product("5551307301") is None
    assert product("55513-073-01").name == "Sensipar"


def test_10_digits_without_hyphens_with_a_single_known_reading_are_found():
    assert product("0093172101").rxcui == "855332"  # 0093-1721-01, warfarin 5 mg
    assert product("5846801301").name == "Renvela"  # 58468-0130-1


def test_a_reused_product_code_is_decided_by_the_package_only(table):
    # 68016-017: the labeler's product code 017 carries ten different drugs in RxNorm.
    assert "680160017" in table["ambiguous_keys"]
    assert ndc_product("68016-017") is None  # product NDC only: cannot tell
    assert product("68016-017-87").nonproprietary == "calcium citrate 1500 MG / cholecalciferol 200 UNT Oral Tablet"
    assert ndc_product("68016-017-94") is None  # same product code, ubidecarenone
    # Zemplar injection: two package sizes of one product code are two RxNorm concepts.
    assert product("00074-1658-01").rxcui == "1736921"
    assert product("00074-1658-05").rxcui == "213298"
    assert ndc_product("0074-1658") is None


def test_an_unknown_ndc_is_none_and_loads_are_cached():
    assert ndc_product("99999-9999-99") is None
    assert ndc_table._table() is ndc_table._table()


# --- (f) the generator's rules, on names and a source written here ---------------------------


@pytest.mark.parametrize(
    "name, substances, strengths, form, brand",
    [
        ("calcium acetate 667 MG Oral Capsule [Phoslo]", ("calcium acetate",), ("667 MG",), "Oral Capsule", "Phoslo"),
        ("1 ML paricalcitol 0.002 MG/ML Injection", ("paricalcitol",), ("0.002 MG/ML",), "Injection", None),
        (
            "calcium carbonate 1500 MG / cholecalciferol 0.01 MG Oral Tablet",
            ("calcium carbonate", "cholecalciferol"),
            ("1500 MG", "0.01 MG"),
            "Oral Tablet",
            None,
        ),
        (
            "polyethylene glycol 3350 17000 MG Powder for Oral Solution",
            ("polyethylene glycol 3350",),
            ("17000 MG",),
            "Powder for Oral Solution",
            None,
        ),
        (
            "{1 (10 ML sodium nitrite 30 MG/ML Injection) / 1 (50 ML sodium thiosulfate 250 MG/ML Injection) } Pack [Nithiodote]",
            ("sodium nitrite", "sodium thiosulfate"),
            ("30 MG/ML", "250 MG/ML"),
            "Pack",
            "Nithiodote",
        ),
    ],
)
def test_rxnorm_names_split_into_substances_strengths_form_and_brand(gen, name, substances, strengths, form, brand):
    parsed = gen.parse_name(name)
    assert (parsed.substances, parsed.strengths, parsed.dose_form, parsed.brand) == (substances, strengths, form, brand)


def test_a_name_outside_the_grammar_parses_to_none(gen):
    assert gen.parse_name("Sensor 60 ACTUAT fluticasone propionate 0.055 MG/ACTUAT Dry Powder Inhaler") is None
    assert gen.parse_name("calcium acetate") is None


@pytest.mark.parametrize(
    "substance, label",
    [
        ("calcium acetate", "calcium acetate"),
        ("Calcium Carbonate", "calcium carbonate"),
        ("warfarin sodium", "warfarin"),
        ("iron-dextran complex", "iron dextran"),
        ("magnesium oxide", "magnesium"),
        ("thiosulfate", "sodium thiosulfate"),
        ("leucovorin calcium", None),
        ("rosuvastatin calcium", None),
        ("esomeprazole magnesium", None),
        ("calcium pantothenate", None),
        ("magnesium salicylate", None),
        ("ferrous sulfate", None),
    ],
)
def test_substances_map_to_watched_ingredients_and_counter_ion_salts_do_not(gen, substance, label):
    assert gen.watched_label(substance) == label


def test_a_calcium_salt_nobody_reviewed_stops_the_generator(gen):
    with pytest.raises(gen.UnreviewedSubstanceError, match="calcium orotate"):
        gen.watched_label("calcium orotate")


def test_a_watched_product_with_an_unplaced_dose_form_stops_the_generator(gen):
    with pytest.raises(gen.UnknownDoseFormError, match="Hemofilter Cartouche"):
        gen.route_for_form("Hemofilter Cartouche")


def test_alternative_keys_are_the_other_readings_of_10_digit_codes_reaching_a_key(gen):
    # 0054008813 (4-4-2 -> 000540088) can also be read 5-3-2 (005400088) or 5-4-1 (005400881).
    assert {"005400088", "005400881"} <= gen.alternative_keys("000540088")
    assert "000540088" not in gen.alternative_keys("000540088")


def _write_source(directory: Path, records: list[dict[str, Any]], letters: tuple[str, ...] = ("C", "D")) -> None:
    manifest = [{"key": letter, "file": f"data/{letter}.json"} for letter in letters]
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (directory / "C.json").write_text(json.dumps(records), encoding="utf-8")


def _ingredient(name: str, scds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Name": name,
        "RXCUI": "1",
        "TTY": "IN",
        "SCDCs": [{"Name": name, "RXCUI": "2", "TTY": "SCDC", "SCDs": scds}],
    }


def test_generation_from_a_small_source_keeps_watched_keys_and_sends_shared_keys_to_packages(gen, tmp_path):
    scds = [
        {
            "Name": "calcium acetate 667 MG Oral Capsule",
            "RXCUI": "10",
            "TTY": "SCD",
            "NDCs": ["11111000101", "22222000301"],
            "SBDs": [
                {
                    "Name": "calcium acetate 667 MG Oral Capsule [Phoslo]",
                    "RXCUI": "11",
                    "TTY": "SBD",
                    "NDCs": ["11111000201"],
                    "BNs": [{"Name": "Phoslo", "RXCUI": "12", "TTY": "BN"}],
                }
            ],
        },
        {"Name": "caffeine 200 MG Oral Tablet", "RXCUI": "20", "TTY": "SCD", "NDCs": ["22222000399", "33333000101"]},
    ]
    _write_source(tmp_path, [_ingredient("calcium acetate", scds)])
    table = json.loads(gen.generate(tmp_path))
    assert table["provenance"]["files_missing"] == ["D.json"]
    assert table["products"] == {
        "111110001": {"ndc": "11111-0001", "rxcui": "10"},
        "111110002": {"ndc": "11111-0002", "rxcui": "11"},
    }
    assert table["drugs"]["11"]["name"] == "Phoslo" and "20" not in table["drugs"]
    assert table["ambiguous_keys"] == {"222220003": ["10", "20"]}
    assert table["packages"] == {"22222000301": {"ndc": "22222-0003-01", "rxcui": "10"}}
    assert gen.generate(tmp_path) == gen.generate(tmp_path)  # deterministic


def test_generation_refuses_a_directory_without_manifest_or_letter_files(gen, tmp_path):
    with pytest.raises(gen.SourceError, match="manifest.json"):
        gen.load_source(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps([{"file": "data/C.json"}]), encoding="utf-8")
    with pytest.raises(gen.SourceError, match="no per-letter file"):
        gen.load_source(tmp_path)
    assert gen.main(["--source", str(tmp_path / "absent"), "--output", str(tmp_path / "out.json")]) == 2
