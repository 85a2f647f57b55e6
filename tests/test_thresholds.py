"""Every clinical number lives in one place (clinical review: the targets were defined twice, and a
card could show one as its target while flagging against the other)."""

from __future__ import annotations

import ast
from pathlib import Path

from cds_service.knowledge import thresholds as T
from cds_service.knowledge.content import content
from cds_service.patient import model
from cds_service.patient.analytes import ANALYTES

PACKAGE = Path(__file__).resolve().parents[1] / "cds_service"


def test_the_targets_are_the_analyte_tables_and_the_egfr_cut_off_is_the_models():
    assert ANALYTES["corrected_calcium"].target == T.CORRECTED_CALCIUM_TARGET
    assert ANALYTES["phosphate"].target == T.PHOSPHATE_TARGET
    assert ANALYTES["pth"].target == T.PTH_TARGET
    assert ANALYTES["ca_x_p"].target == (None, T.CA_X_P_MAX)
    assert ANALYTES["pth"].target[1] == T.PTH_CINACALCET_ABOVE
    assert {t.name: t.value for t in T.THRESHOLDS}["kidney_failure_egfr"] == model.KIDNEY_FAILURE_EGFR


def test_every_threshold_has_a_unit_a_meaning_and_a_source_and_a_unique_name():
    names = [t.name for t in T.THRESHOLDS]
    assert len(names) == len(set(names))
    for threshold in T.THRESHOLDS:
        assert threshold.unit and threshold.meaning and threshold.source, threshold.name


def test_the_cards_show_the_targets_the_rules_flag_against():
    # The mineral review's target column is filled from the same numbers the checks compare.
    c = content()
    from cds_service.knowledge.content import fill

    low, high = T.PHOSPHATE_TARGET
    assert fill(c.targets["phosphate"]) == f"{low:g}-{high:g} mg/dL"
    low, high = T.PTH_TARGET
    assert fill(c.targets["pth"]) == f"{low:g}-{high:g} pg/mL"


def test_no_check_or_renderer_writes_a_clinical_number_of_its_own():
    # Float literals in the rules or the renderer would be thresholds outside thresholds.py.
    # order_timing.py converts units of time (days per week, month, year), which are not clinical.
    allowed = {0.0, 1.0, 7.0, 30.4375, 365.25}
    found = []
    for folder in ("checks", "render"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, float) and node.value not in allowed:
                    found.append(f"{path.name}:{node.lineno} {node.value}")
    assert found == []
