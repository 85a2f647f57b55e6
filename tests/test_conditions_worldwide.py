"""Condition names from European and Japanese problem lists (synonyms_international.toml)."""

from __future__ import annotations

import pytest

from cds_service.patient.terminology import match_condition_text


def _present(text: str) -> set[str]:
    return {match.kind for match in match_condition_text(text) if not match.negated}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Kalziphylaxie beider Unterschenkel", "calciphylaxis"),
        ("V.a. Calciphylaxie am Oberschenkel", "calciphylaxis"),
        ("Calciphylaxie abdominale, sous thiosulfate de sodium", "calciphylaxis"),
        ("Calcifilaxis en muslo derecho", "calciphylaxis"),
        ("Calcifilaxia distal", "calciphylaxis"),
        ("Calcifilassi degli arti inferiori", "calciphylaxis"),
        ("Kalcifylaksi, hæmodialysepatient", "calciphylaxis"),
        ("カルシフィラキシス(下腿)", "calciphylaxis"),
        ("カルシフィラキシー疑い", "calciphylaxis"),
        ("Chronische Dialyse seit 2019", "dialysis"),
        ("Hämodialyse Mo/Mi/Fr", "dialysis"),
        ("Hamodialyse ueber Shunt", "dialysis"),
        ("Peritonealdialyse (CAPD)", "dialysis"),
        ("Patient en hémodialyse chronique", "dialysis"),
        ("Dialyse péritonéale depuis 2021", "dialysis"),
        ("Diálisis desde 2020", "dialysis"),
        ("Hemodiálisis trisemanal", "dialysis"),
        ("Diálisis peritoneal automatizada", "dialysis"),
        ("In dialisi dal 2018", "dialysis"),
        ("Emodialisi trisettimanale", "dialysis"),
        ("Dialisi peritoneale domiciliare", "dialysis"),
        ("Em diálise desde 2015", "dialysis"),
        ("Hemodiálise 3x/semana", "dialysis"),
        ("Diálise peritoneal", "dialysis"),
        ("Hemodialyse via AV-fistel", "dialysis"),
        ("Peritoneale dialyse sinds 2020", "dialysis"),
        ("Buikdialyse", "dialysis"),
        ("慢性腎臓病、透析", "dialysis"),
        ("人工透析(週3回)", "dialysis"),
        ("血液透析", "dialysis"),
        ("腹膜透析", "dialysis"),
        ("Terminale Niereninsuffizienz bei diabetischer Nephropathie", "kidney_failure"),
        ("Zustand bei terminaler Niereninsuffizienz", "kidney_failure"),
        ("Insuffisance rénale chronique terminale", "kidney_failure"),
        ("Insuffisance renale terminale", "kidney_failure"),
        ("IRCT sur néphropathie diabétique", "kidney_failure"),
        ("Enfermedad renal crónica terminal", "kidney_failure"),
        ("Insuficiencia renal terminal", "kidney_failure"),
        ("Insufficienza renale cronica terminale", "kidney_failure"),
        ("Doença renal crônica terminal", "kidney_failure"),
        ("末期腎不全(糖尿病性腎症)", "kidney_failure"),
        ("末期腎臓病", "kidney_failure"),
        ("Vorhofflimmern, paroxysmal", "atrial_fibrillation"),
        ("Fibrillation auriculaire permanente", "atrial_fibrillation"),
        ("Fibrilación auricular no valvular", "atrial_fibrillation"),
        ("Fibrillazione atriale parossistica", "atrial_fibrillation"),
        ("Fibrilação atrial permanente", "atrial_fibrillation"),
        ("Atriumfibrilleren", "atrial_fibrillation"),
        ("Paroxysmaal boezemfibrilleren", "atrial_fibrillation"),
        ("心房細動(発作性)", "atrial_fibrillation"),
        ("心房細動", "atrial_fibrillation"),
    ],
)
def test_condition_names_in_other_languages_are_recognised(text: str, kind: str) -> None:
    assert kind in _present(text)


def test_a_problem_list_in_german_names_every_kind() -> None:
    text = "Terminale Niereninsuffizienz; Hämodialyse; Kalziphylaxie; Vorhofflimmern"
    assert _present(text) >= {"kidney_failure", "dialysis", "calciphylaxis", "atrial_fibrillation"}


def test_a_japanese_problem_list_names_every_kind() -> None:
    text = "末期腎不全、血液透析、カルシフィラキシス、心房細動"
    assert _present(text) >= {"kidney_failure", "dialysis", "calciphylaxis", "atrial_fibrillation"}


@pytest.mark.parametrize(
    "text",
    [
        "Prädialyse",
        "Prä-Dialyse Sprechstunde",
        "prädialytische Niereninsuffizienz",
        "keine Dialyse",
        "consultation de pré-dialyse",
        "Prédialyse",
        "ERC pre-diálisis",
        "Consulta prediálisis",
        "非透析",
    ],
)
def test_before_or_without_dialysis_is_not_dialysis(text: str) -> None:
    assert "dialysis" not in _present(text)


def test_pre_terminal_kidney_failure_is_not_kidney_failure() -> None:
    assert "kidney_failure" not in _present("präterminale Niereninsuffizienz")


def test_lower_case_irct_is_not_kidney_failure() -> None:
    assert "kidney_failure" not in _present("irct")


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("ESRD on haemodialysis", {"kidney_failure", "dialysis"}),
        ("calciphylaxis", {"calciphylaxis"}),
        ("paroxysmal atrial fibrillation", {"atrial_fibrillation"}),
        ("pre-dialysis CKD 4", set()),
        ("atrial flutter", set()),
    ],
)
def test_english_names_behave_as_before(text: str, kinds: set[str]) -> None:
    assert _present(text) == kinds


@pytest.mark.parametrize(
    "text, kind",
    [
        ("透析なし", "dialysis"),
        ("sans dialyse", "dialysis"),
        ("sin diálisis", "dialysis"),
        ("ohne Vorhofflimmern", "atrial_fibrillation"),
        ("senza fibrillazione atriale", "atrial_fibrillation"),
    ],
)
def test_other_languages_negations_say_the_condition_is_absent(text, kind):
    found = [m for m in match_condition_text(text) if m.kind == kind]
    assert found and all(m.negated for m in found), text
