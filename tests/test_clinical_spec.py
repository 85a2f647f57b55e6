"""The clinical specification (docs/clinical/specification.md) is generated from what runs.

The CDS committee signs that file, so it must say what the service does: these tests fail when
the committed file no longer matches the card content, thresholds and check modules it is
generated from (run ``make clinical-spec``), and when it leaves out a rule, a substitute, a
threshold or a reference.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path

import pytest

from cds_service.checks import eligibility
from cds_service.knowledge.content import ALLOWED_FIELDS, content
from cds_service.knowledge.thresholds import THRESHOLDS
from cds_service.patient.analytes import ANALYTES
from tools.generate_clinical_spec import DEFAULT_OUTPUT, main, render, rule_modules

REGENERATE = "run `make clinical-spec` (tools/generate_clinical_spec.py) and commit docs/clinical/specification.md"


@pytest.fixture(scope="module")
def spec() -> str:
    return render()


def test_the_committed_clinical_specification_matches_what_runs(spec: str) -> None:
    assert DEFAULT_OUTPUT.exists(), f"{DEFAULT_OUTPUT} is missing: {REGENERATE}"
    committed = DEFAULT_OUTPUT.read_text(encoding="utf-8")
    if committed != spec:
        diff = list(difflib.unified_diff(committed.splitlines(), spec.splitlines(), "committed", "rendered", n=0))
        shown = "\n".join(diff[:30]) + (f"\n... {len(diff) - 30} more diff lines" if len(diff) > 30 else "")
        pytest.fail(f"docs/clinical/specification.md is out of date: {REGENERATE}\n{shown}", pytrace=False)


def test_the_specification_names_every_rule_substitute_and_threshold(spec: str) -> None:
    c = content()
    missing = [f"rule {r}" for r in c.rules if f"`{r}`" not in spec]
    missing += [f"rule id {r}" for m in rule_modules() for r in m.finding_ids if f"#### `{r}`" not in spec]
    missing += [f"substitute {k}" for k in c.substitutes if f"### `{k}`" not in spec]
    missing += [f"threshold {t.name}" for t in THRESHOLDS if f"| `{t.name}` |" not in spec]
    missing += [f"analyte {a}" for a in ANALYTES if f"| `{a}` |" not in spec]
    missing += [f"reference {k} citation" for k, ref in c.references.items() if ref.citation not in spec]
    missing += [f"reference {k} url" for k, ref in c.references.items() if ref.url not in spec]
    missing += [f"override reason {k}" for k in c.override_codes if f"`{k}`" not in spec]
    missing += [f"note {k}" for k in c.notes if f"`{k}`" not in spec]
    missing += [f"conflict {k}" for k in c.conflicts if f"`{k}`" not in spec]
    assert not missing, f"the specification leaves out: {', '.join(missing)}"


def test_each_rules_logic_is_its_check_modules_docstring_verbatim(spec: str) -> None:
    modules = rule_modules()
    assert [m.label for m in modules] == ["C1", "C2", "C3", "C4", "C5", "C6", "M1", "X1"]
    for module in modules:
        assert module.docstring() in spec, f"{module.path}: its docstring is not quoted verbatim"
    assert (inspect.getdoc(eligibility) or "") in spec


def test_templates_are_filled_so_no_raw_placeholder_remains(spec: str) -> None:
    left = sorted(name for name in ALLOWED_FIELDS if "{" + name + "}" in spec)
    assert not left, f"unfilled placeholders in the specification: {left}"
    assert "`<drug>`" in spec  # engine fields are shown as readable placeholders


def test_check_mode_exits_1_on_a_stale_file_and_0_on_a_current_one(
    spec: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "specification.md"
    output.write_text(spec.replace("Thresholds", "Thresholdz", 1), encoding="utf-8")
    assert main(["--check", "--output", str(output)]) == 1
    assert "make clinical-spec" in capsys.readouterr().out
    assert main(["--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == spec
    assert main(["--check", "--output", str(output)]) == 0
