"""`calciphylaxis-cds evaluate REQUEST.json`: the cards of a request file, readable in a terminal."""

from __future__ import annotations

import json

import pytest

from cds_service import cli
from tests.conftest import FIXTURES, FROZEN_NOW


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch, tmp_path):
    # The fixtures are dated around FROZEN_NOW; the command uses the wall clock.
    monkeypatch.setattr("cds_service.pipeline._utcnow", lambda: FROZEN_NOW)
    monkeypatch.setenv("CDS_FEEDBACK_DB", str(tmp_path / "f.db"))


def test_evaluate_prints_each_card_with_its_rule_data_and_suggestions(capsys):
    assert cli.main(["evaluate", str(FIXTURES / "c1-calcium-acetate-calciphylaxis.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "[1] !! CRITICAL: Stop calcium acetate 667 MG Oral Tablet: calcium-based binders are contraindicated"
    )
    assert "    rule: C1-calcium-binder-calciphylaxis" in out
    assert "Corrected calcium: 9.7 mg/dL on 2026-11-16" in out
    assert "suggestion: Replace with sevelamer carbonate 800 mg three times daily with meals (recommended)" in out
    assert "- delete MedicationRequest/draft-ca: Remove the draft order" in out
    assert "- create MedicationRequest sevelamer carbonate 800 MG Oral Tablet" in out
    assert "**" not in out, "markdown bold markers are dropped for the terminal"
    assert max(len(line) for line in out.splitlines() if not line.lstrip().startswith(("link:", "<"))) <= 130


def test_evaluate_shows_a_results_table_without_markdown_rules(capsys):
    assert cli.main(["evaluate", str(FIXTURES / "m1-calciphylaxis-active-trigger-medications.json")]) == 0
    out = capsys.readouterr().out
    assert "Test | Latest | Target | Status" in out and "| --- |" not in out
    assert "[2] !! CRITICAL: Stop warfarin" in out  # critical cards first, the review (info) last


def test_evaluate_says_when_there_is_nothing_to_flag(capsys):
    assert cli.main(["evaluate", str(FIXTURES / "c1-osteoporosis-calcium-carbonate-out-of-scope.json")]) == 0
    assert capsys.readouterr().out.strip() == "No cards: nothing to flag for this request."


def test_evaluate_json_prints_the_wire_response(capsys):
    assert cli.main(["evaluate", "--json", str(FIXTURES / "c2-warfarin-calciphylaxis-mechanical-valve.json")]) == 0
    response = json.loads(capsys.readouterr().out)
    (card,) = response["cards"]
    assert card["indicator"] == "critical" and "suggestions" not in card and "rule_id" not in card


def test_evaluate_html_writes_a_card_preview_a_clinician_can_open(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("cds_service.pipeline._utcnow", lambda: FROZEN_NOW)
    page = tmp_path / "preview.html"
    fixture = FIXTURES / "c1-calcium-acetate-calciphylaxis.json"
    assert cli.main(["evaluate", str(fixture), "--html", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert "Stop calcium acetate 667 MG Oral Tablet" in html
    assert "Replace with sevelamer carbonate 800 mg three times daily with meals" in html
    assert "<script" not in html.lower()
    assert str(page) in capsys.readouterr().out


def test_evaluate_html_without_a_file_writes_under_var_previews_not_the_working_directory(
    monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr("cds_service.config.data_dir", lambda: tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    fixture = FIXTURES / "c1-calcium-acetate-calciphylaxis.json"
    assert cli.main(["evaluate", str(fixture), "--html"]) == 0
    page = tmp_path / "project" / "var" / "previews" / "c1-calcium-acetate-calciphylaxis.html"
    assert "Stop calcium acetate 667 MG Oral Tablet" in page.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["project"], "nothing written where the command ran"
    assert str(page) in capsys.readouterr().out


def test_evaluate_piped_into_head_prints_the_first_line_and_no_traceback(tmp_path):
    """`calciphylaxis-cds evaluate ... | head -1`: head exits after one line; the rest of the
    output meets a closed pipe, and the command stops quietly."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    exe = os.path.join(os.path.dirname(sys.executable), "calciphylaxis-cds")
    command = [exe] if os.path.exists(exe) else [sys.executable, "-m", "cds_service"]
    fixture = "fhir_fixtures/m1-calciphylaxis-active-trigger-medications.json"  # several cards, 18 kB of text
    env = dict(os.environ, CDS_FEEDBACK_DB=str(tmp_path / "f.db"))
    evaluate = subprocess.Popen(
        [*command, "evaluate", fixture, "--now", "2026-11-21T12:00Z"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    head = subprocess.Popen(["head", "-1"], stdin=evaluate.stdout, stdout=subprocess.PIPE)
    evaluate.stdout.close()  # head alone reads it now
    out, _ = head.communicate(timeout=60)
    err = evaluate.stderr.read().decode()
    evaluate.stderr.close()
    status = evaluate.wait(timeout=60)
    assert out.decode().startswith("[1] !! CRITICAL: ")
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert status in (0, cli.EXIT_BROKEN_PIPE)
