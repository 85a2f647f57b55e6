"""The generated WHO ATC table: it matches its source, and its drug families are complete.

The drift tests need the third-party CSV (``$ATC_SOURCE``, else
../shared/fhir-data/atc/WHO ATC-DDD 2026-04-25.csv, outside the repository) and are skipped
without it. Every other test reads only the committed JSON or calls the generator's pure
functions on rows written here, so it runs anywhere.

Every expected code and name below was read in ``WHO ATC-DDD 2026-04-25.csv`` of fabkury/atcd at
commit 1e92aec7c52c7e324080416294bb8e68cf686685 (names compared lower-cased; the table keeps WHO's case).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cds_service.patient import atc_table
from cds_service.patient.atc_table import atc_codes_under, atc_name, atc_parent_names, provenance
from tests.conftest import skip_without_shared
from tests.patient.generator_support import load_generator

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "cds_service" / "patient" / "data" / "atc_generated.json"
GENERATOR = REPO / "tools" / "generate_atc_table.py"

DECLARED_PREFIXES = [
    "B01AA",
    "B01AE",
    "B01AF",
    "A11CC",
    "A11CB",
    "H05BX",
    "H05BA",
    "V03AE",
    "V03AB",
    "A12AA",
    "A12AX",
    "A12CC",
    "B03A",
    "A02AA",
    "A02AB",
    "A02AC",
    "A02AD",
    "D05AX",
]

# Level 3 (B03A), 4 (B01AA) or 5 (B01AA03): letter, 2 digits, letter, [letter, [2 digits]].
ATC_SHAPE = re.compile(r"[A-Z]\d{2}[A-Z](?:[A-Z](?:\d{2})?)?")


@pytest.fixture(scope="module")
def gen() -> Iterator[ModuleType]:
    """tools/generate_atc_table.py as a module (tools/ is not a package)."""
    with load_generator(GENERATOR, "_generate_atc_table_under_test") as module:
        yield module


@pytest.fixture(scope="module")
def source(gen: ModuleType) -> Path:
    path: Path = gen.default_source()
    skip_without_shared(path, "the WHO ATC/DDD scrape, or ATC_SOURCE (drift of atc_generated.json not checked)")
    return path


def committed_table() -> dict[str, Any]:
    table: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return table


def _lower(name: str | None) -> str | None:
    return None if name is None else name.lower()


def family(prefix: str) -> dict[str, str]:
    return {code: name.lower() for code in atc_codes_under(prefix) if (name := atc_name(code)) is not None}


# --- (a) drift ----------------------------------------------------------------------------


def test_committed_table_is_exactly_what_the_generator_makes_from_the_source(gen: ModuleType, source: Path) -> None:
    regenerated = gen.generate(source)
    committed = COMMITTED.read_text(encoding="utf-8")
    assert regenerated == committed, "\n".join(gen.drift_summary(committed, regenerated))


def test_check_mode_exits_1_and_names_the_missing_code_when_the_committed_file_drifts(
    gen: ModuleType, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = committed_table()
    del table["codes"]["B01AA12"]
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(table), encoding="utf-8")
    assert gen.main(["--source", str(source), "--output", str(stale), "--check"]) == 1
    assert "+ B01AA12: 'fluindione'" in capsys.readouterr().out


def test_check_mode_exits_0_when_the_committed_file_is_up_to_date(
    gen: ModuleType, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gen.main(["--source", str(source), "--output", str(COMMITTED), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_drift_summary_lists_added_removed_and_renamed_codes(gen: ModuleType) -> None:
    old = json.dumps({"provenance": {"commit": "a"}, "codes": {"B01AA": "x", "B01AA03": "warfarin"}})
    new = json.dumps({"provenance": {"commit": "a"}, "codes": {"B01AA": "y", "B01AA12": "fluindione"}})
    assert gen.drift_summary(old, new) == [
        "codes: +1 -1 ~1",
        "  + B01AA12: 'fluindione'",
        "  - B01AA03: 'warfarin'",
        "  ~ B01AA: 'x' -> 'y'",
    ]
    assert gen.drift_summary("{not json", new)[0].startswith("committed file is not valid JSON")


def test_generator_refuses_a_source_that_is_not_the_file_read_at_the_recorded_commit(
    gen: ModuleType, tmp_path: Path
) -> None:
    other = tmp_path / "other.csv"
    other.write_text("atc_code,atc_name,ddd,uom,adm_r,note\nB01AA,Vitamin K antagonists,NA,NA,NA,NA\n")
    with pytest.raises(gen.SourceMismatchError, match=gen.SOURCE_COMMIT):
        gen.generate(other)
    assert gen.main(["--source", str(other), "--output", str(tmp_path / "out.json")]) == 2
    assert not (tmp_path / "out.json").exists()


def test_generator_exits_2_without_writing_when_the_source_is_missing(gen: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    assert gen.main(["--source", str(tmp_path / "absent.csv"), "--output", str(out)]) == 2
    assert not out.exists()


# --- (b) the generator's rules, on rows written here ---------------------------------------


def test_selection_keeps_the_group_and_its_substances_and_nothing_beside_them(gen: ModuleType) -> None:
    rows = [
        ("B01A", "ANTITHROMBOTIC AGENTS"),
        ("B01AA", "Vitamin K antagonists"),
        ("B01AA03", "warfarin"),
        ("B01AA03", "warfarin"),  # a second DDD row (parenteral) repeats the code
        ("B01AB", "Heparin group"),
        ("B01AB01", "heparin"),
        ("A11CA01", "retinol (vit A)"),
        ("A11CC55", "colecalciferol, combinations"),
        ("A11CC", "Vitamin D and analogues"),
    ]
    assert gen.select_codes(rows, ("B01AA", "A11CC")) == {
        "A11CC": "Vitamin D and analogues",
        "A11CC55": "colecalciferol, combinations",
        "B01AA": "Vitamin K antagonists",
        "B01AA03": "warfarin",
    }


def test_one_code_with_two_different_names_stops_the_generator(gen: ModuleType) -> None:
    rows = [("B01AA", "Vitamin K antagonists"), ("B01AA03", "warfarin"), ("B01AA03", "warfarin sodium")]
    with pytest.raises(gen.SourceFormatError, match="B01AA03 has two names"):
        gen.select_codes(rows, ("B01AA",))


def test_a_declared_prefix_absent_from_the_source_stops_the_generator(gen: ModuleType) -> None:
    with pytest.raises(gen.SourceFormatError, match="H05BX"):
        gen.select_codes([("B01AA", "Vitamin K antagonists")], ("B01AA", "H05BX"))


def test_csv_reader_keeps_quoted_commas_and_checks_header_and_code_shape(gen: ModuleType) -> None:
    text = (
        "atc_code,atc_name,ddd,uom,adm_r,note\n"
        'A11CC55,"colecalciferol, combinations",NA,NA,NA,NA\n'
        'B03AC,"Iron, parenteral preparations",0.1,g,P,NA\n'
    )
    assert gen.read_rows(text) == [
        ("A11CC55", "colecalciferol, combinations"),
        ("B03AC", "Iron, parenteral preparations"),
    ]
    with pytest.raises(gen.SourceFormatError, match="header"):
        gen.read_rows("code,name\nB01AA,x\n")
    with pytest.raises(gen.SourceFormatError, match="not an ATC code"):
        gen.read_rows("atc_code,atc_name,ddd,uom,adm_r,note\nB01A-A,x,NA,NA,NA,NA\n")


# --- (c) the committed table: provenance and shape ------------------------------------------


def test_provenance_names_the_repository_commit_file_hashes_licence_and_prefixes() -> None:
    prov = provenance()
    assert prov["repository"] == "fabkury/atcd"
    assert prov["commit"] == "1e92aec7c52c7e324080416294bb8e68cf686685"
    assert prov["file"] == "WHO ATC-DDD 2026-04-25.csv"
    assert "WHO ATC/DDD index" in prov["source"] and "fabkury/atcd" in prov["source"]
    assert re.fullmatch(r"[0-9a-f]{64}", prov["source_sha256"])
    assert re.fullmatch(r"[0-9a-f]{40}", prov["source_git_blob"])
    assert isinstance(prov["source_size_bytes"], int) and prov["source_size_bytes"] > 0
    assert "WHOCC" in prov["licence_note"] and "commercial" in prov["licence_note"]
    assert "WHO Collaborating Centre for Drug Statistics Methodology" in prov["licence_note"]
    assert prov["generator_version"] == "1.0.0"
    assert prov["prefixes"] == DECLARED_PREFIXES


def test_provenance_is_a_copy_the_caller_may_modify() -> None:
    provenance()["prefixes"].append("Z99ZZ")
    assert "Z99ZZ" not in provenance()["prefixes"]


def test_every_code_has_a_valid_atc_shape_and_a_name_as_who_writes_it() -> None:
    codes = committed_table()["codes"]
    for code, name in codes.items():
        assert ATC_SHAPE.fullmatch(code), code
        assert name and name == name.strip(), code
    # B03A is the only level-3 code: it is a declared prefix, the parent of B03AA..B03AE.
    assert [code for code in codes if len(code) == 4] == ["B03A"]


def test_table_holds_nothing_outside_the_declared_prefixes_and_every_prefix_is_a_code() -> None:
    codes = committed_table()["codes"]
    assert all(code.startswith(tuple(DECLARED_PREFIXES)) for code in codes)
    assert all(prefix in codes for prefix in DECLARED_PREFIXES)
    assert list(codes) == sorted(codes)


# --- (d) the committed table: the families are complete and right ----------------------------


def test_vitamin_k_antagonists_are_all_of_b01aa_including_fluindione() -> None:
    assert family("B01AA") == {
        "B01AA": "vitamin k antagonists",
        "B01AA01": "dicoumarol",
        "B01AA02": "phenindione",
        "B01AA03": "warfarin",
        "B01AA04": "phenprocoumon",
        "B01AA07": "acenocoumarol",
        "B01AA08": "ethyl biscoumacetate",
        "B01AA09": "clorindione",
        "B01AA10": "diphenadione",
        "B01AA11": "tioclomarol",
        "B01AA12": "fluindione",
    }


def test_vitamin_d_and_analogues_a11cc_hold_active_sterols_and_nutritional_vitamin_d() -> None:
    assert family("A11CC") == {
        "A11CC": "vitamin d and analogues",
        "A11CC01": "ergocalciferol",
        "A11CC02": "dihydrotachysterol",
        "A11CC03": "alfacalcidol",
        "A11CC04": "calcitriol",
        "A11CC05": "colecalciferol",
        "A11CC06": "calcifediol",
        "A11CC20": "combinations",
        "A11CC55": "colecalciferol, combinations",
    }


def test_other_anti_parathyroid_agents_h05bx_hold_calcimimetics_and_vitamin_d_analogues() -> None:
    assert family("H05BX") == {
        "H05BX": "other anti-parathyroid agents",
        "H05BX01": "cinacalcet",
        "H05BX02": "paricalcitol",
        "H05BX03": "doxercalciferol",
        "H05BX04": "etelcalcetide",
        "H05BX05": "calcifediol",
        "H05BX06": "evocalcet",
    }


def test_calcifediol_and_calcitriol_each_have_two_codes() -> None:
    assert (_lower(atc_name("A11CC06")), _lower(atc_name("H05BX05"))) == ("calcifediol", "calcifediol")
    assert (_lower(atc_name("A11CC04")), _lower(atc_name("D05AX03"))) == ("calcitriol", "calcitriol")
    assert atc_parent_names("D05AX03") == (("D05AX", "Other antipsoriatics for topical use"),)


def test_v03ae_holds_phosphate_binders_and_the_potassium_binders() -> None:
    assert family("V03AE") == {
        "V03AE": "drugs for treatment of hyperkalemia and hyperphosphatemia",
        "V03AE01": "polystyrene sulfonate",
        "V03AE02": "sevelamer",
        "V03AE03": "lanthanum carbonate",
        "V03AE04": "calcium acetate and magnesium carbonate",
        "V03AE05": "sucroferric oxyhydroxide",
        "V03AE06": "colestilan",
        "V03AE07": "calcium acetate",
        "V03AE08": "ferric citrate",
        "V03AE09": "patiromer calcium",
        "V03AE10": "sodium zirconium cyclosilicate",
    }


def test_calcium_salts_a12aa_are_complete() -> None:
    assert family("A12AA") == {
        "A12AA": "calcium",
        "A12AA01": "calcium phosphate",
        "A12AA02": "calcium glubionate",
        "A12AA03": "calcium gluconate",
        "A12AA04": "calcium carbonate",
        "A12AA05": "calcium lactate",
        "A12AA06": "calcium lactate gluconate",
        "A12AA07": "calcium chloride",
        "A12AA08": "calcium glycerylphosphate",
        "A12AA09": "calcium citrate lysine complex",
        "A12AA10": "calcium glucoheptonate",
        "A12AA11": "calcium pangamate",
        "A12AA13": "calcium citrate",
        "A12AA20": "calcium (different salts in combination)",
        "A12AA30": "calcium laevulate",
    }


def test_calcium_with_vitamin_d_and_vitamin_a_with_d_are_groups_without_substances() -> None:
    assert family("A12AX") == {"A12AX": "calcium, combinations with vitamin d and/or other drugs"}
    assert family("A11CB") == {"A11CB": "vitamin a and d in combination"}


def test_aluminium_antacids_a02ab_are_complete() -> None:
    assert family("A02AB") == {
        "A02AB": "aluminium compounds",
        "A02AB01": "aluminium hydroxide",
        "A02AB02": "algeldrate",
        "A02AB03": "aluminium phosphate",
        "A02AB04": "dihydroxialumini sodium carbonate",
        "A02AB05": "aluminium acetoacetate",
        "A02AB06": "aloglutamol",
        "A02AB07": "aluminium glycinate",
        "A02AB10": "combinations",
    }


def test_iron_preparations_b03a_are_complete_and_parenteral_iron_is_only_the_group_b03ac() -> None:
    assert family("B03A") == {
        "B03A": "iron preparations",
        "B03AA": "iron bivalent, oral preparations",
        "B03AA01": "ferrous glycine sulfate",
        "B03AA02": "ferrous fumarate",
        "B03AA03": "ferrous gluconate",
        "B03AA04": "ferrous carbonate",
        "B03AA05": "ferrous chloride",
        "B03AA06": "ferrous succinate",
        "B03AA07": "ferrous sulfate",
        "B03AA08": "ferrous tartrate",
        "B03AA09": "ferrous aspartate",
        "B03AA10": "ferrous ascorbate",
        "B03AA11": "ferrous iodine",
        "B03AA12": "ferrous sodium citrate",
        "B03AB": "iron trivalent, oral preparations",
        "B03AB01": "ferric sodium citrate",
        "B03AB02": "saccharated iron oxide",
        "B03AB03": "sodium feredetate",
        "B03AB04": "ferric hydroxide",
        "B03AB05": "ferric oxide polymaltose complexes",
        "B03AB07": "chondroitin sulfate-iron complex",
        "B03AB08": "ferric acetyl transferrin",
        "B03AB09": "ferric proteinsuccinylate",
        "B03AB10": "ferric maltol",
        "B03AC": "iron, parenteral preparations",
        "B03AD": "iron in combination with folic acid",
        "B03AD01": "ferrous amino acid complex and folic acid",
        "B03AD02": "ferrous fumarate and folic acid",
        "B03AD03": "ferrous sulfate and folic acid",
        "B03AD04": "ferric oxide polymaltose complexes and folic acid",
        "B03AD05": "ferrous gluconate and folic acid",
        "B03AE": "iron in other combinations",
        "B03AE01": "iron, vitamin b12 and folic acid",
        "B03AE02": "iron, multivitamins and folic acid",
        "B03AE03": "iron and multivitamins",
        "B03AE04": "iron, multivitamins and minerals",
        "B03AE10": "various combinations",
    }
    assert atc_name("B03AC02") is None  # retired 5th-level code, still in national drug files


def test_doac_and_thrombin_inhibitor_substitutes_are_listed() -> None:
    assert (_lower(atc_name("B01AF01")), _lower(atc_name("B01AF02")), _lower(atc_name("B01AF03"))) == (
        "rivaroxaban",
        "apixaban",
        "edoxaban",
    )
    assert _lower(atc_name("B01AE07")) == "dabigatran etexilate"


def test_thiosulfate_is_the_antidote_v03ab06() -> None:
    assert _lower(atc_name("V03AB06")) == "thiosulfate"
    assert atc_parent_names("V03AB06") == (("V03AB", "Antidotes"),)


def test_calcitonin_look_alikes_are_their_own_group() -> None:
    assert family("H05BA") == {
        "H05BA": "calcitonin preparations",
        "H05BA01": "calcitonin (salmon synthetic)",
        "H05BA02": "calcitonin (pork natural)",
        "H05BA03": "calcitonin (human synthetic)",
        "H05BA04": "elcatonin",
    }


def test_topical_vitamin_d_analogues_are_in_d05ax() -> None:
    assert (_lower(atc_name("D05AX02")), _lower(atc_name("D05AX04")), _lower(atc_name("D05AX52"))) == (
        "calcipotriol",
        "tacalcitol",
        "calcipotriol, combinations",
    )


# --- (e) the lookup functions ---------------------------------------------------------------


def test_atc_name_ignores_case_and_surrounding_spaces_and_unknown_codes_are_none() -> None:
    assert _lower(atc_name(" b01aa12 ")) == "fluindione"
    assert atc_name("B01AB01") is None  # heparin: a group the table does not cover
    assert atc_name("") is None


def test_codes_under_a_prefix_are_sorted_include_the_group_and_a_blank_prefix_gives_none() -> None:
    under = atc_codes_under(" b01aa")
    assert under[0] == "B01AA" and list(under) == sorted(under)
    assert atc_codes_under("B01AA12") == ("B01AA12",)
    assert atc_codes_under("B01AB") == ()
    assert atc_codes_under("  ") == ()


def test_parent_names_list_known_ancestors_shortest_first_without_the_code_itself() -> None:
    assert atc_parent_names("B01AA12") == (("B01AA", "Vitamin K antagonists"),)
    assert atc_parent_names("b03aa07") == (
        ("B03A", "IRON PREPARATIONS"),
        ("B03AA", "Iron bivalent, oral preparations"),
    )
    assert atc_parent_names("B01AA99") == (("B01AA", "Vitamin K antagonists"),)  # a future substance
    assert atc_parent_names("B01AA") == ()
    assert atc_parent_names("N02BE01") == ()


def test_the_table_is_loaded_once_and_cached() -> None:
    assert atc_table._table() is atc_table._table()
