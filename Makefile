# Two commands do everything on a fresh machine:
#   make run   - create .venv, install, start the service on http://127.0.0.1:8080
#   make test  - create .venv, install with test extras, run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test install install-test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

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
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
	  echo "wrk could not be installed: the load part of the benchmark will be skipped"
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info
