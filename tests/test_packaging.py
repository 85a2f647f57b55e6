"""The wheel: everything under the one top-level package ``cds_service`` (the card content of
``cards/`` installed as ``cds_service.cards``, no top-level ``cards``), every module and data file of
the source tree in it, and the card content loading from the installed files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
# What a build reads: the package sources, and the files pyproject.toml names (readme, licence).
SOURCES = (
    "pyproject.toml",
    "cds_service",
    "cards",
    PYPROJECT["project"]["readme"],
    *PYPROJECT["project"].get("license-files", []),
)


def source_packages() -> set[str]:
    """Every folder of the source tree holding modules or data, as the package it installs as."""
    found = set()
    for root, mapped in (("cds_service", "cds_service"), ("cards", "cds_service.cards")):
        for folder in [REPO / root, *(p for p in (REPO / root).rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(f.is_file() for f in folder.iterdir()):
                continue
            relative = folder.relative_to(REPO / root).parts
            found.add(".".join((mapped, *relative)))
    return found


def test_every_package_and_data_folder_of_the_source_tree_is_listed_in_pyproject():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    missing = source_packages() - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert not listed - source_packages(), "pyproject.toml lists packages that do not exist"
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"cds_service.cards": "cards"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (nothing is written into the checkout)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for origin in (path for pattern in SOURCES for path in sorted(REPO.glob(pattern))):
        target = source / origin.relative_to(REPO)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(source), "-w", str(work / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = (work / "dist").glob("calciphylaxis_cds-*.whl")
    return found


@pytest.fixture(scope="module")
def wheel_files(wheel) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_installs_one_top_level_package_and_no_cards_package(wheel_files):
    tops = {name.split("/", 1)[0] for name in wheel_files if not name.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"cds_service"}
    assert not [name for name in wheel_files if name.startswith("cards/")]
    (top_level,) = [name for name in wheel_files if name.endswith(".dist-info/top_level.txt")]
    assert top_level  # its content is checked below


def test_the_card_content_is_package_data_under_cds_service(wheel_files):
    cards = {str(p.relative_to(REPO / "cards")) for p in (REPO / "cards").rglob("*.toml")}
    installed = {
        name.removeprefix("cds_service/cards/") for name in wheel_files if name.startswith("cds_service/cards/")
    }
    assert cards and cards <= installed
    assert "cds_service/cards/rules/c1_calcium_binders.toml" in wheel_files


def test_every_module_and_data_file_of_the_package_is_in_the_wheel(wheel_files):
    patterns = ("*.py", "*.json", "*.toml", "*.sql", "py.typed")
    expected = {
        str(p.relative_to(REPO)).replace(os.sep, "/")
        for pattern in patterns
        for p in (REPO / "cds_service").rglob(pattern)
        if "__pycache__" not in p.parts
    }
    missing = expected - set(wheel_files)
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert "cds_service/http/openapi.json" in wheel_files


def test_the_card_content_loads_from_the_installed_files(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    assert (site / "calciphylaxis_cds-0.1.0.dist-info" / "top_level.txt").read_text().split() == ["cds_service"]
    probe = (
        "import importlib.util, cds_service\n"
        "from cds_service.knowledge.content import content, content_root\n"
        "from cds_service.http.views import openapi_document\n"
        "print(cds_service.__file__)\n"
        "print(content_root())\n"
        "print(len(content().rules), openapi_document()['openapi'])\n"
        "spec = importlib.util.find_spec('cards')\n"
        "print(spec.origin if spec else None)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    module, root, loaded, cards = result.stdout.splitlines()
    assert module.startswith(str(site / "cds_service"))
    assert root == str(site / "cds_service" / "cards")
    rules, version = loaded.split()
    assert int(rules) >= 8 and version.startswith("3.1")
    # (A development install of this checkout in the same environment may still map one elsewhere.)
    assert not cards.startswith(str(site)), "the install holds no top-level `cards` package"
