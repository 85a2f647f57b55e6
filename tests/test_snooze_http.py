"""Snoozes end to end over HTTP: an override recorded from feedback stops patient-view repeating
the card; order hooks still warn and say so; snoozing can be turned off."""

from __future__ import annotations

import copy

import pytest

from cds_service.config import Settings
from cds_service.http.app import create_app
from tests.conftest import FROZEN_NOW
from tests.feedback_support import PV, order_select_body, overridden

SNOOZE = {
    "system": "https://calciphylaxis-cds.example.org/CodeSystem/override-reason",
    "code": "addressed-with-nephrology-3-months",
    "display": "Addressed with nephrology: do not show again for 3 months",
}
SNOOZE_DAYS = {"addressed-with-nephrology-3-months", "benefit-outweighs-risk-review-1-month"}


def _client(tmp_path, **settings):
    return create_app(Settings(feedback_db=tmp_path / "f.sqlite3", **settings), now=lambda: FROZEN_NOW).test_client()


def _cards(client, body, service="calciphylaxis-patient-view"):
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["cards"]


def _snoozing_reason(card) -> dict:
    """The snoozing override reason the card offers, as the EHR sends it back (a critical card
    offers the 1-month review, never the 3 months)."""
    return next(r for r in card["overrideReasons"] if r["code"] in SNOOZE_DAYS)


def _override(client, card, reason=None, service="calciphylaxis-patient-view"):
    item = overridden(card["uuid"], reason or _snoozing_reason(card))
    response = client.post(f"/cds-services/{service}/feedback", json={"feedback": [item]})
    answer = response.get_json()
    assert (answer["stored"], answer["duplicates"], answer["refused"]) == (1, 0, 0), answer
    return answer["items"][0]


def _binder_card(cards):
    return next(c for c in cards if "calcium acetate" in c["summary"])


def test_a_snoozing_override_stops_patient_view_repeating_that_card_but_not_the_others(tmp_path):
    client = _client(tmp_path)
    first = _cards(client, PV)
    assert len(first) == 2  # the mineral review and the calcium acetate card
    result = _override(client, _binder_card(first))
    assert result["overrideReason"] == "recorded" and result["snoozedUntil"].startswith("20")
    again = _cards(client, PV)
    assert [c["summary"] for c in again] == [c["summary"] for c in first if "calcium acetate" not in c["summary"]]


def test_order_hooks_still_warn_on_a_new_order_and_say_an_earlier_override_holds(tmp_path):
    client = _client(tmp_path)
    _override(client, _binder_card(_cards(client, PV)))
    order = order_select_body()
    order["context"]["patientId"] = PV["context"]["patientId"]
    for key in ("conditions", "calcium", "albumin", "phosphate", "pth", "egfr"):
        order["prefetch"][key] = copy.deepcopy(PV["prefetch"][key])
    for entry in order["context"]["draftOrders"]["entry"]:
        entry["resource"]["subject"] = {"reference": f"Patient/{PV['context']['patientId']}"}
    (card,) = _cards(client, order, "calciphylaxis-order-select")
    assert card["indicator"] == "critical"
    assert "An earlier override of this card" in card["detail"] and "holds until 2027-" in card["detail"]


def test_an_override_without_a_period_snoozes_nothing(tmp_path):
    client = _client(tmp_path)
    first = _cards(client, PV)
    result = _override(client, _binder_card(first), reason={**SNOOZE, "code": "benefit-outweighs-risk"})
    assert result == {"result": "stored", "overrideReason": "recorded"}  # offered, but it carries no period
    assert len(_cards(client, PV)) == 2


@pytest.mark.parametrize("enabled", [False])
def test_snoozing_can_be_turned_off_by_configuration(tmp_path, enabled):
    client = _client(tmp_path, snooze_enabled=enabled)
    _override(client, _binder_card(_cards(client, PV)))
    assert len(_cards(client, PV)) == 2


def test_feedback_report_html_writes_the_committee_page_from_the_store(tmp_path, monkeypatch, capsys):
    from cds_service import cli

    client = _client(tmp_path)
    cards = _cards(client, PV)
    _override(client, _binder_card(cards))
    monkeypatch.setenv("CDS_FEEDBACK_DB", str(tmp_path / "f.sqlite3"))
    page = tmp_path / "report.html"
    assert cli.main(["feedback-report", "--html", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert "C1-calcium-binder-calciphylaxis" in html and "<svg" in html
    assert PV["context"]["patientId"] not in html  # no patient data on the page
    assert "<script" not in html.lower()
    assert str(page) in capsys.readouterr().out


def test_the_service_serves_the_governance_report_and_a_card_preview(tmp_path):
    client = _client(tmp_path)
    _override(client, _binder_card(_cards(client, PV)))
    report = client.get("/governance/report")
    assert report.status_code == 200 and report.mimetype == "text/html"
    assert "default-src 'none'" in report.headers["Content-Security-Policy"]
    assert "C1-calcium-binder-calciphylaxis" in report.get_data(as_text=True)
    preview = client.post("/cds-services/calciphylaxis-patient-view/preview", json=PV)
    assert preview.status_code == 200 and preview.mimetype == "text/html"
    page = preview.get_data(as_text=True)
    assert "Stop calcium acetate" in page and "<script" not in page.lower()
    # a malformed request gets the same clear error as the service itself
    assert (
        client.post(
            "/cds-services/calciphylaxis-patient-view/preview", data="{", content_type="application/json"
        ).status_code
        == 400
    )


def test_the_report_names_the_suggestions_clinicians_took(tmp_path):
    client = _client(tmp_path)
    card = _binder_card(_cards(client, PV))
    taken = card["suggestions"][0]
    item = {
        "card": card["uuid"],
        "outcome": "accepted",
        "outcomeTimestamp": "2026-11-21T12:02:00Z",
        "acceptedSuggestions": [{"id": taken["uuid"]}],
    }
    client.post("/cds-services/calciphylaxis-patient-view/feedback", json={"feedback": [item]})
    page = client.get("/governance/report").get_data(as_text=True)
    assert taken["label"] in page
