"""The outgoing wire-format rules of CDS Hooks 2.0, enforced by the response models."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cds_service.protocol import (
    Action,
    Card,
    CDSResponse,
    Coding,
    DiscoveryService,
    Link,
    OverrideReason,
    Source,
    Suggestion,
)

SOURCE = Source(label="Calciphylaxis CDS")


def card(**overrides):
    fields = {"summary": "Stop calcium acetate", "indicator": "critical", "source": SOURCE}
    fields.update(overrides)
    return Card(**fields)


def test_summary_of_139_characters_is_accepted_and_140_rejected():
    assert card(summary="x" * 139).summary
    with pytest.raises(ValidationError):
        card(summary="x" * 140)


def test_indicator_must_be_info_warning_or_critical():
    for indicator in ("info", "warning", "critical"):
        assert card(indicator=indicator).indicator == indicator
    with pytest.raises(ValidationError):
        card(indicator="hard-stop")


def test_source_label_is_required_and_not_empty():
    with pytest.raises(ValidationError):
        Source()
    with pytest.raises(ValidationError):
        Source(label="")


def test_every_card_and_suggestion_gets_a_distinct_uuid():
    a, b = card(), card()
    assert a.uuid and b.uuid and a.uuid != b.uuid
    s1, s2 = Suggestion(label="a"), Suggestion(label="b")
    assert s1.uuid and s1.uuid != s2.uuid
    dumped = card(suggestions=[s1], selectionBehavior="at-most-one").to_json()
    assert dumped["uuid"] == dumped["uuid"].strip() and dumped["suggestions"][0]["uuid"] == s1.uuid


def test_suggestions_without_selection_behavior_are_rejected():
    with pytest.raises(ValidationError, match="selectionBehavior"):
        card(suggestions=[Suggestion(label="Switch")])
    assert card(suggestions=[Suggestion(label="Switch")], selectionBehavior="at-most-one")


def test_at_most_one_allows_only_one_recommended_suggestion():
    two = [Suggestion(label="a", isRecommended=True), Suggestion(label="b", isRecommended=True)]
    with pytest.raises(ValidationError, match="recommended"):
        card(suggestions=two, selectionBehavior="at-most-one")
    assert card(suggestions=two, selectionBehavior="any")


def test_override_reasons_need_a_display():
    with pytest.raises(ValidationError):
        OverrideReason(system="urn:x", code="a")
    with pytest.raises(ValidationError):
        OverrideReason(system="urn:x", code="a", display="")
    ok = card(overrideReasons=[OverrideReason(system="urn:x", code="a", display="Benefit outweighs risk")])
    assert ok.to_json()["overrideReasons"][0]["display"] == "Benefit outweighs risk"


@pytest.mark.parametrize(
    "field, empty",
    [("detail", ""), ("suggestions", []), ("links", []), ("overrideReasons", [])],
)
def test_optional_members_may_not_be_empty(field, empty):
    extra = {"selectionBehavior": "any"} if field == "suggestions" else {}
    with pytest.raises(ValidationError, match="omitted"):
        card(**{field: empty}, **extra)


def test_optional_members_are_omitted_from_json_not_null():
    dumped = card().to_json()
    assert set(dumped) == {"uuid", "summary", "indicator", "source"}
    assert dumped["source"] == {"label": "Calciphylaxis CDS"}
    assert None not in dumped.values()


def test_rule_id_is_kept_internally_but_never_sent():
    c = card(rule_id="C1-calcium-binder-calciphylaxis")
    assert c.rule_id == "C1-calcium-binder-calciphylaxis"
    assert "rule_id" not in c.to_json()


def test_empty_card_list_is_allowed_in_a_response():
    assert CDSResponse(cards=[]).to_json() == {"cards": []}
    with pytest.raises(ValidationError):
        CDSResponse(cards=[], systemActions=[])


def test_action_types_and_their_targets():
    assert Action(type="delete", description="Remove draft", resourceId="MedicationRequest/1")
    with pytest.raises(ValidationError, match="resourceId"):
        Action(type="delete", description="Remove draft")
    resource = {"resourceType": "MedicationRequest", "status": "draft"}
    assert Action(type="create", description="Order sevelamer", resource=resource)
    assert Action(type="update", description="Stop", resource=resource)
    with pytest.raises(ValidationError, match="resource"):
        Action(type="create", description="Order sevelamer")
    with pytest.raises(ValidationError, match="resource"):
        Action(type="update", description="Stop", resource={"status": "stopped"})
    with pytest.raises(ValidationError):
        Action(type="merge", description="x", resource=resource)
    with pytest.raises(ValidationError):
        Action(type="delete", description="", resourceId="MedicationRequest/1")


def test_app_context_only_on_smart_links():
    assert Link(label="App", url="https://app", type="smart", appContext="x")
    with pytest.raises(ValidationError, match="smart"):
        Link(label="Doc", url="https://doc", type="absolute", appContext="x")
    with pytest.raises(ValidationError):
        Link(label="Doc", url="https://doc", type="relative")


def test_discovery_service_omits_missing_optional_members():
    entry = DiscoveryService(hook="patient-view", id="x", description="d").to_json()
    assert entry == {"hook": "patient-view", "id": "x", "description": "d"}
    with pytest.raises(ValidationError):
        DiscoveryService(hook="patient-view", id="x", description="d", prefetch={})


def test_coding_requires_system_and_code():
    with pytest.raises(ValidationError):
        Coding(system="", code="a")
    assert Coding(system="urn:x", code="a").to_json() == {"system": "urn:x", "code": "a"}


def test_order_select_context_accepts_an_empty_selection_but_still_needs_the_list_and_draft_orders():
    from cds_service.protocol import OrderSelectContext

    base = {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Bundle", "entry": []}}
    assert OrderSelectContext.model_validate({**base, "selections": []}).selections == []
    with pytest.raises(ValidationError, match="selections"):
        OrderSelectContext.model_validate(base)
    with pytest.raises(ValidationError, match="selections"):
        OrderSelectContext.model_validate({**base, "selections": [1]})


def test_order_select_with_nothing_selected_fetches_nothing_and_answers_no_cards():
    from cds_service.pipeline import find_service, run_hook

    class MustNotFetch:
        def resolve(self, request, keys):
            raise AssertionError("nothing is selected: no FHIR data is needed")

    body = {
        "hook": "order-select",
        "hookInstance": "i-1",
        "context": {
            "userId": "Practitioner/1",
            "patientId": "p1",
            "selections": [],
            "draftOrders": {"resourceType": "Bundle", "entry": []},
        },
    }
    _, response = run_hook(find_service("calciphylaxis-order-select"), body, MustNotFetch())
    assert response.to_json() == {"cards": []}
