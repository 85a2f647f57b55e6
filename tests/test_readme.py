"""The README stays true: its two commands exist, and every setting is documented."""

from __future__ import annotations

import re

from cds_service.config import env_var_names
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme_configuration_table():
    missing = [name for name in env_var_names() if f"`{name}`" not in README]
    assert not missing, f"document these settings in README.md: {missing}"


def test_quickstart_commands_exist_in_the_makefile_and_ci_calls_the_test_command():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "make run" in README and "make test" in README
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_files_the_readme_points_to_exist():
    for target in re.findall(r"\]\(((?:docs|fhir_fixtures|bench)/[^)#]+)\)", README):
        assert (REPO / target).exists(), target
    for target in re.findall(r"@(fhir_fixtures/[\w.-]+\.json)", README):
        assert (REPO / target).exists(), target
