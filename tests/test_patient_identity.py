"""Patient identity: the service never uses, and never suggests an action on, a resource that is
not about ``context.patientId``."""

from __future__ import annotations

import copy
import json
import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES, without_uuids

CALCIPHYLAXIS = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text())
PATIENT_VIEW = json.loads((FIXTURES / "m1-calciphylaxis-active-trigger-medications.json").read_text())


def _post(client, body):
    body = copy.deepcopy(body)
    body.pop("_expected", None)
    return client.post(f"/cds-services/calciphylaxis-{body['hook']}", json=body)


def _other_patient(resource_list, key_resource="Condition"):
    for entry in resource_list["entry"]:
        if entry["resource"]["resourceType"] == key_resource:
            entry["resource"]["subject"] = {"reference": "Patient/someone-else"}
            return


def _stray(resource_type, **members):
    """A resource about another patient, as an EHR might mix one into a prefetch answer."""
    return {
        "resource": {
            "resourceType": resource_type,
            "id": "stray-1",
            "subject": {"reference": "Patient/someone-else"},
            **members,
        }
    }


def _summaries(response):
    return [(c["indicator"], c["summary"]) for c in response.get_json()["cards"]]


def test_one_condition_about_another_patient_is_dropped_alone_and_patient_view_keeps_every_card(client, caplog):
    clean = _post(client, PATIENT_VIEW)
    body = copy.deepcopy(PATIENT_VIEW)
    body["prefetch"]["conditions"]["entry"].append(
        _stray("Condition", code={"text": "Kidney transplant"}, clinicalStatus={"coding": [{"code": "active"}]})
    )
    with caplog.at_level(logging.WARNING):
        response = _post(client, body)
    assert response.status_code == 200
    assert _summaries(response) == _summaries(clean) and _summaries(clean)
    for card in response.get_json()["cards"]:
        assert "1 resource(s) about another patient" in card["detail"]
        assert "conditions (diagnoses)" in card["detail"]
    # On the call's one request line, raised to WARNING, as an event; never an id.
    logged = [
        r
        for r in caplog.records
        if r.name == "cds_service.request" and any("another patient" in e["event"] for e in getattr(r, "events", []))
    ]
    assert logged and logged[0].levelno == logging.WARNING
    assert all("someone-else" not in str(vars(r)) and "stray-1" not in str(vars(r)) for r in logged)
    assert all(body["context"]["patientId"] not in str(vars(r)) for r in logged)


def test_patient_view_whose_required_conditions_are_all_about_another_patient_answers_412(client):
    body = copy.deepcopy(PATIENT_VIEW)
    for entry in body["prefetch"]["conditions"]["entry"]:
        entry["resource"]["subject"] = {"reference": "Patient/someone-else"}
    response = _post(client, body)
    assert response.status_code == 412
    assert "another patient" in response.get_json()["issue"][0]["diagnostics"]


def test_an_order_hook_with_one_stray_condition_keeps_the_critical_card_and_its_substitutes(client):
    clean = _post(client, CALCIPHYLAXIS).get_json()["cards"]
    body = copy.deepcopy(CALCIPHYLAXIS)
    body["prefetch"]["conditions"]["entry"].append(_stray("Condition", code={"text": "Calciphylaxis"}))
    (card,) = _post(client, body).get_json()["cards"]
    assert card["indicator"] == "critical" == clean[0]["indicator"]
    assert [s["label"] for s in card["suggestions"]] == [s["label"] for s in clean[0]["suggestions"]]
    assert "about another patient" in card["detail"]


def test_a_stray_condition_never_counts_for_this_patient(client):
    """Another patient's calciphylaxis mixed into this patient's problem list is not read: with
    it alone, no calciphylaxis card fires for this patient."""
    body = copy.deepcopy(CALCIPHYLAXIS)
    entries = body["prefetch"]["conditions"]["entry"]
    own = [e for e in entries if e["resource"]["id"] != "calciphylaxis"]
    stray = [e for e in entries if e["resource"]["id"] == "calciphylaxis"]
    assert own and stray
    for entry in stray:
        entry["resource"]["subject"] = {"reference": "Patient/someone-else"}
    cards = _post(client, body).get_json()["cards"]
    assert all(c["indicator"] != "critical" for c in cards)
    assert all("Calciphylaxis" not in c["summary"] for c in cards)


def test_another_patients_warfarin_in_the_medication_list_is_never_reviewed_or_acted_on(client):
    body = copy.deepcopy(PATIENT_VIEW)
    meds = body["prefetch"]["meds"]["entry"]
    before = {c["summary"] for c in _post(client, body).get_json()["cards"]}
    meds.append(
        _stray(
            "MedicationRequest",
            status="active",
            intent="order",
            medicationCodeableConcept={"text": "Phenprocoumon 3 mg tablet"},
        )
    )
    cards = _post(client, body).get_json()["cards"]
    assert {c["summary"] for c in cards} == before
    assert "MedicationRequest/stray-1" not in json.dumps(cards)
    assert all("1 in active medication list" in c["detail"] for c in cards)


def test_a_high_calcium_about_another_patient_never_fires_a_warning(client):
    body = json.loads((FIXTURES / "c3-calcitriol-dialysis-high-calcium.json").read_text())
    assert [c["indicator"] for c in _post(client, body).get_json()["cards"]] == ["warning"]
    _other_patient(body["prefetch"]["calcium"], "Observation")
    assert _post(client, body).get_json() == {"cards": []}


def test_a_draft_about_another_patient_is_never_reviewed_or_touched(client):
    body = copy.deepcopy(CALCIPHYLAXIS)
    body["context"]["draftOrders"]["entry"][0]["resource"]["subject"] = {"reference": "Patient/someone-else"}
    assert _post(client, body).get_json() == {"cards": []}


def _actions(cards):
    return [a for card in cards for s in card.get("suggestions", []) for a in s["actions"]]


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fixture=st.sampled_from(sorted(FIXTURES.glob("*.json"))),
    patient_id=st.from_regex(r"[A-Za-z0-9\-.]{1,40}", fullmatch=True),
)
def test_a_random_context_patient_never_gets_cards_built_from_another_patients_data(client, fixture, patient_id):
    body = json.loads(fixture.read_text())
    original = body["context"]["patientId"]
    if patient_id == original:
        return
    body["context"]["patientId"] = patient_id
    response = _post(client, body)
    assert response.status_code in (200, 412), response.get_json()
    if response.status_code == 412:
        return
    cards = response.get_json()["cards"]
    # Every resource in this request is about the original patient: nothing may be acted on.
    assert _actions(cards) == []
    assert all(card["indicator"] == "info" for card in cards)


# --- charts sent again: every call screens its own data, whatever came before --------------------


def test_a_chart_judged_for_one_patient_is_still_refused_for_another(client):
    """The same prefetch, byte for byte, is first sent for its own patient and then under
    another patient's id: the memory of the first call must not let the second use it."""
    first = copy.deepcopy(PATIENT_VIEW)
    assert _post(client, first).status_code == 200
    second = copy.deepcopy(PATIENT_VIEW)
    second["context"]["patientId"] = "someone-else"
    second["prefetch"].pop("patient", None)  # no Patient resource to contradict the id at once
    response = _post(client, second)
    assert response.status_code == 412
    assert "another patient" in response.get_json()["issue"][0]["diagnostics"]


def test_a_chart_sent_again_gets_the_same_cards(client):
    body = copy.deepcopy(CALCIPHYLAXIS)
    first = _post(client, body).get_json()
    second = _post(client, body).get_json()
    assert first["cards"] and without_uuids(first["cards"]) == without_uuids(second["cards"])


def test_a_resource_naming_another_patient_by_bundle_urn_is_dropped_on_every_call(client):
    """A reference that only the Bundle can resolve (urn:uuid of another patient's entry) is
    never taken as plainly about the patient: each call screens it in full and drops it."""
    body = copy.deepcopy(PATIENT_VIEW)
    conditions = body["prefetch"]["conditions"]
    conditions["entry"].append(
        {
            "fullUrl": "urn:uuid:5e2a1c1e-0000-4000-8000-000000000001",
            "resource": {"resourceType": "Patient", "id": "someone-else"},
        }
    )
    conditions["entry"][0]["resource"]["subject"] = {"reference": "urn:uuid:5e2a1c1e-0000-4000-8000-000000000001"}
    for _ in range(2):
        response = _post(client, body)
        assert response.status_code == 200
        assert all("2 resource(s) about another patient" in c["detail"] for c in response.get_json()["cards"])
