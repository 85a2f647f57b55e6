"""Shared test helpers: an app on a temporary database, and paths to the shared data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cds_service.config import Settings
from cds_service.http.app import create_app
from tests.services import pg_database, pg_url, private_postgres, redis_settings  # noqa: F401 - fixtures for every test module

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FHIR_DATA = SHARED / "fhir-data"
SPEC_EXAMPLES = SHARED / "reference" / "cds-hooks-examples"
FIXTURES = REPO / "fhir_fixtures"

# Tests that read clinical fixtures freeze the clock so dated fixtures never go stale.
FROZEN_NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def skip_without_shared(path: Path, what: str = "") -> None:
    """Skip the test, with the one message every such skip uses, when ``path`` (under ../shared/,
    the optional third-party data beside the checkout, README "Quickstart") is absent."""
    if not path.exists():
        pytest.skip(
            f"shared data not available: {what + ' at ' if what else ''}{path} "
            "(optional third-party data in ../shared/ beside the checkout; see the README)"
        )


def load_shared(relative: str) -> dict:
    """Load a file from ../shared, skipping the test when that folder is absent."""
    path = SHARED / relative
    skip_without_shared(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data.pop("_captured", None)
    return data


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(feedback_db=tmp_path / "feedback.sqlite3")


@pytest.fixture
def app(settings):
    return create_app(settings, now=lambda: FROZEN_NOW)


@pytest.fixture
def client(app):
    return app.test_client()


def preflight(client, path: str):
    """A browser's CORS preflight for a POST with a JWT, as the CDS Hooks sandbox sends it."""
    return client.options(
        path,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )


def without_uuids(value):
    """A card list (or any JSON) without its ``uuid`` members, which differ on every call."""
    if isinstance(value, dict):
        return {k: without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [without_uuids(v) for v in value]
    return value
