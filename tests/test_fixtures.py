"""Every named clinical scenario in fhir_fixtures/ gives its expected cards through the HTTP endpoint.

Each fixture is a complete CDS Hooks request with its expected outcome under ``_expected``
(see fhir_fixtures/build_fixtures.py for the fields). The request is posted as-is to the
service for its hook through the Flask test client, with "now" frozen.
"""

from __future__ import annotations

import json

import pytest
from fhir.resources.medicationrequest import MedicationRequest as R5MedicationRequest
from fhir.resources.R4B.medicationrequest import MedicationRequest as R4BMedicationRequest

from tests.conftest import FIXTURES

FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_at_least_20_named_scenarios_each_with_an_expected_outcome():
    assert len(FIXTURE_FILES) >= 20
    for path in FIXTURE_FILES:
        body = _load(path)
        assert {"hook", "hookInstance", "context", "prefetch", "_expected"} <= set(body), path.name
        assert body["_expected"]["scenario"], path.name


def test_fixtures_cover_every_rule_and_the_silent_cases():
    rules = {card["rule"] for path in FIXTURE_FILES for card in _load(path)["_expected"]["cards"]}
    assert rules >= {
        "C1-calcium-binder-calciphylaxis",
        "C1-calcium-binder-dialysis",
        "C1-calcium-binder-dialysis-stale-data",
        "C2-vka-calciphylaxis",
        "C2-vka-dialysis",
        "C3-active-vitamin-d-calciphylaxis",
        "C3-active-vitamin-d-dialysis",
        "C4-iron-calciphylaxis",
        "C5-aluminium-binder-beyond-4-weeks",
        "C5-aluminium-binder-no-end-date",
        "C6-calcimimetic-calcium-below-7-5",
        "C6-calcimimetic-low-calcium-calciphylaxis",
        "C6-calcimimetic-low-calcium-dialysis",
        "C6-calcimimetic-pth-not-above-target",
        "M1-mineral-status-calciphylaxis",
        "X1-calciphylaxis-check-incomplete",
    }
    silent = [p.name for p in FIXTURE_FILES if not _load(p)["_expected"]["cards"]]
    assert len(silent) >= 6


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_fixture_gives_its_expected_cards_over_http(client, path):
    body = _load(path)
    expected = body["_expected"]["cards"]
    response = client.post(f"/cds-services/calciphylaxis-{body['hook']}", json=body)
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    assert len(cards) == len(expected), [c["summary"] for c in cards]
    for card, want in zip(cards, expected, strict=True):
        _assert_card(card, want, body)


def _assert_card(card: dict, want: dict, request: dict) -> None:
    summary, detail = card["summary"], card["detail"]
    assert f"`{want['rule']}`" in detail, (want["rule"], summary)
    assert card["indicator"] == want["indicator"], summary
    assert want["drug"] in summary and len(summary) < 140
    for text in want.get("detail", ()):
        assert text in detail, f"{text!r} not in the detail of {want['rule']}"
    for text in want.get("detail_absent", ()):
        assert text not in detail, f"{text!r} must not be in the detail of {want['rule']}"
    assert card["source"]["label"] == "Calciphylaxis CDS"
    assert card["overrideReasons"] and all(r["display"] and r["system"] for r in card["overrideReasons"])

    suggestions = card.get("suggestions", [])
    if want.get("no_suggestions"):
        assert not suggestions and "selectionBehavior" not in card
        return
    if "creates" in want:  # a chart-level card: new orders only, nothing replaced or stopped
        assert card["selectionBehavior"] == "at-most-one"
        assert [a["type"] for s in suggestions for a in s["actions"]] == ["create"] * len(want["creates"])
        created = [s["actions"][0]["resource"] for s in suggestions]
        assert [r_code(r) for r in created] == want["creates"]
        for resource in created:
            _assert_valid_substitute(resource, request)
        return
    if "holds" in want and "substitutes" not in want:  # withheld: on hold, nothing is created
        assert len(suggestions) == 1
        (update,) = suggestions[0]["actions"]
        assert update["type"] == "update" and update["resource"]["id"] == want["holds"]
        assert update["resource"]["status"] == "on-hold"
        R4BMedicationRequest.model_validate(update["resource"])
        return
    if "substitutes" not in want and "removes" not in want:
        return
    substitutes = want.get("substitutes", [])
    assert card["selectionBehavior"] == "at-most-one"
    created = [a["resource"] for s in suggestions for a in s["actions"] if a["type"] == "create"]
    codes = [r_code(r) for r in created]
    assert codes == substitutes
    if substitutes and want.get("recommended", True):
        assert suggestions[0].get("isRecommended") is True
        assert sum(1 for s in suggestions if s.get("isRecommended")) == 1
    elif substitutes:  # offered, none recommended (e.g. phosphate already at target)
        assert not any(s.get("isRecommended") for s in suggestions)
    for suggestion in suggestions:
        actions = suggestion["actions"]
        if substitutes:
            assert actions[0]["type"] == "create", "the substitute must come first"
            _assert_valid_substitute(actions[0]["resource"], request)
        if "removes" in want:
            assert actions[-1] == {
                "type": "delete",
                "description": actions[-1]["description"],
                "resourceId": want["removes"],
            }
        if "stops" in want:
            update = actions[-1]
            assert update["type"] == "update"
            assert update["resource"]["id"] == want["stops"] and update["resource"]["status"] == "stopped"
        if "holds" in want:
            update = actions[-1]
            assert update["type"] == "update"
            assert update["resource"]["id"] == want["holds"] and update["resource"]["status"] == "on-hold"
    for resource in created:
        for reference in want.get("reasons", ()):
            assert {"reference": reference} in resource.get("reasonReference", []), resource


def r_code(resource: dict) -> str:
    concept = resource.get("medicationCodeableConcept") or resource["medication"]["concept"]
    return concept["coding"][0]["code"]


def _assert_valid_substitute(resource: dict, request: dict) -> None:
    patient = f"Patient/{request['context']['patientId']}"
    assert resource["status"] == "draft"
    dosage = resource["dosageInstruction"][0]
    assert dosage["text"] and dosage["timing"]["repeat"]["frequency"] >= 1
    # A coded route (SNOMED CT) beside its text.
    assert dosage["route"]["coding"][0]["system"] == "http://snomed.info/sct" and dosage["route"]["text"]
    if resource["resourceType"] == "MedicationOrder":  # DSTU2 client: answer in DSTU2
        assert resource["patient"]["reference"] == patient and dosage["doseQuantity"]["value"] > 0
        return
    assert resource["intent"] == "order" and resource["subject"]["reference"] == patient
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] > 0
    if "medication" in resource:  # R5-shaped request: R5-shaped substitute
        R5MedicationRequest.model_validate(resource)
    else:
        R4BMedicationRequest.model_validate(resource)
