# Two commands do everything on a fresh machine:
#   make run   - create .venv, install, start the service on http://127.0.0.1:8080
#   make test  - create .venv, install with test extras, run the tests
# Every install takes its versions from requirements.lock (what CI tested); `make lock` refreshes it.
# `make services` installs (Debian packages) and starts PostgreSQL and Redis on loopback for the
# tests of the shared backends; without them those tests skip, naming this target.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
LOCK    = requirements.lock
RUNTIME_LOCK = requirements-runtime.lock

.PHONY: run test install install-test lint format bench clean services services-stop lock image browser clinical-spec sbom

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[test]'

run: install
	$(BIN)/calciphylaxis-cds serve

test: install-test
	$(BIN)/python -m pytest

# Lint and types: ruff (lint + format check) on everything, mypy --strict on the package.
lint: install-test
	$(BIN)/ruff check cds_service cards tests bench tools fhir_fixtures
	$(BIN)/ruff format --check cds_service cards tests bench tools fhir_fixtures
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff check --fix cds_service cards tests bench tools fhir_fixtures
	$(BIN)/ruff format cds_service cards tests bench tools fhir_fixtures

# Benchmark (docs/performance.md): needs wrk, installed from Debian's packages when missing.
bench: install-test
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[bench]'
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
	  echo "wrk could not be installed: the load part of the benchmark will be skipped"
	$(BIN)/python -m bench.run

# PostgreSQL and Redis on loopback ports for the tests (tools/services.py; data under var/services/).
# Ports: CDS_PG_PORT and CDS_REDIS_PORT (`make services CDS_PG_PORT=55432`), else the last ones, else free ones.
services:
	$(PYTHON) tools/services.py start

services-stop:
	$(PYTHON) tools/services.py stop

# The clinical specification the CDS committee signs (docs/clinical/specification.md), generated
# from the card content and thresholds; tests/test_clinical_spec.py fails when it is out of date.
clinical-spec: install
	$(BIN)/python tools/generate_clinical_spec.py

# Refresh the locks after changing a dependency in pyproject.toml (README: "Dependencies"); commit
# them with it. Two files, the second held to the versions of the first (uv, for Python 3.11 on
# every platform):
# - requirements.lock: every dependency and extra, pinned; the constraints of every `make` install
#   (`pip install -c`). It carries no hashes: pip refuses an editable install (-e .) once a
#   constraint has one.
# - requirements-runtime.lock: the service's own dependencies at the same versions, each with the
#   sha256 of every file PyPI serves for it; the image installs it with --require-hashes.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
	  --custom-compile-command 'make lock' --quiet --output-file $(LOCK)
	$(BIN)/uv pip compile pyproject.toml --constraint $(LOCK) --generate-hashes --universal --python-version 3.11 \
	  --custom-compile-command 'make lock' --quiet --output-file $(RUNTIME_LOCK)

# A CycloneDX SBOM of what the image ships: the runtime dependencies of requirements-runtime.lock
# installed (hashes checked) into a scratch environment under var/, with their licences, and the
# project as the root component. Written to dist/ (git-ignored).
SBOM = dist/calciphylaxis-cds.cdx.json
sbom: $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[sbom]'
	rm -rf var/sbom && $(PYTHON) -m venv var/sbom/venv
	var/sbom/venv/bin/python -m pip install --quiet --require-hashes --no-deps -r $(RUNTIME_LOCK)
	mkdir -p dist
	$(BIN)/cyclonedx-py environment --pyproject pyproject.toml --output-reproducible --of JSON \
	  --output-file $(SBOM) var/sbom/venv
	@echo "SBOM: $(SBOM)"

# Debian's Chromium for the real-browser test of the governance report and card preview
# (tests/test_browser_report.py skips, naming this target, when it is absent).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# The container image (deploy/README.md); needs a Docker daemon, which CI does not have.
image:
	docker build -t calciphylaxis-cds:latest .

clean:
	rm -rf $(VENV) build *.egg-info
