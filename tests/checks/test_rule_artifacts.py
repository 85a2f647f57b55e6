"""One rule = one artifact: the same name across check module, card content, fixtures and tests."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from cds_service.checks import CHART_RULES, ORDER_RULES, RULE_INCOMPLETE
from cds_service.knowledge.content import content

REPO = Path(__file__).resolve().parents[2]
RULES = [(rule.name, rule.finding_ids) for rule in (*ORDER_RULES, *CHART_RULES)] + [
    ("x1_check_incomplete", (RULE_INCOMPLETE,))
]


@pytest.mark.parametrize(("name", "finding_ids"), RULES, ids=[name for name, _ in RULES])
def test_each_rule_has_its_module_card_content_fixtures_and_tests_under_one_name(name, finding_ids):
    importlib.import_module(f"cds_service.checks.{name}")
    content_file = REPO / "cards" / "rules" / f"{name}.toml"
    declared = tomllib.loads(content_file.read_text(encoding="utf-8"))["rules"]
    assert set(declared) == set(finding_ids), f"{content_file.name} must hold exactly the rule's findings"
    assert (REPO / "tests" / "checks" / f"test_{name}.py").is_file()
    prefix = name.split("_", 1)[0]
    assert list((REPO / "fhir_fixtures").glob(f"{prefix}-*.json")), f"no fhir_fixtures/{prefix}-*.json"


def test_every_card_content_rule_belongs_to_a_declared_rule():
    declared = {finding_id for _, finding_ids in RULES for finding_id in finding_ids}
    assert set(content().rules) == declared
