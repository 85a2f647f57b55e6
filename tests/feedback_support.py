"""Requests for the feedback and snooze tests: the calciphylaxis hook bodies from the fixtures and
the feedback items an EHR sends back about a card."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES

PATIENT_VIEW = "/cds-services/calciphylaxis-patient-view"
ORDER_SELECT = "/cds-services/calciphylaxis-order-select"

# A patient-view call whose patient gets a critical calcium-binder card (read-only: copy to change).
PV = json.loads((FIXTURES / "c1-calcium-acetate-on-home-medication-list-patient-view.json").read_text())
PV.pop("_expected")


def order_select_body() -> dict:
    """A fresh order-select call that orders calcium acetate for a patient with calciphylaxis."""
    body = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text())
    body.pop("_expected", None)
    return body


def overridden(card: str, reason: dict, at: str = "12:01") -> dict:
    """The feedback item that overrides ``card`` (its uuid) with ``reason``, at ``at`` on 2026-11-21."""
    return {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": f"2026-11-21T{at}:00Z",
        "overrideReason": {"reason": reason},
    }
