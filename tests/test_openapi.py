"""The OpenAPI 3.1 description (cds_service/http/openapi.json, served at GET /openapi.json) is valid,
describes exactly the app's routes and wire models, and the service's real answers match it: each
status an operation answers is listed, and each body validates against the schema of its status
and content type (a field added or mistyped fails)."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cds_service import __version__, protocol
from cds_service.config import Settings
from cds_service.feedback.store import FeedbackResult
from cds_service.http.app import create_app
from cds_service.services import SERVICES
from tests.auth_support import BASE, default_issuer, write_issuers
from tests.conftest import FIXTURES, FROZEN_NOW, REPO

SPEC_FILE = REPO / "cds_service" / "http" / "openapi.json"
SPEC: dict[str, Any] = json.loads(SPEC_FILE.read_text(encoding="utf-8"))
SPEC_URI = "urn:calciphylaxis-cds:openapi"
REGISTRY = Registry().with_resource(SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012))
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))
PATIENT_VIEW = "/cds-services/calciphylaxis-patient-view"
ORDER_SELECT = "/cds-services/calciphylaxis-order-select"
OVERRIDE_SYSTEM = "https://calciphylaxis-cds.example.org/CodeSystem/override-reason"


def _pointer(*parts: str) -> str:
    return "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@cache
def _validator(location: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/{location}"}, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def schema_errors(instance: Any, *location: str) -> list[str]:
    """Why ``instance`` does not match the schema at ``location`` in the description (none: it does)."""
    errors = _validator(_pointer(*location)).iter_errors(instance)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors)


def component_errors(instance: Any, name: str) -> list[str]:
    return schema_errors(instance, "components", "schemas", name)


def check_answer(response, path: str, method: str = "get") -> Any:
    """Assert ``response`` is an answer the description lists for ``method path``, with a body that
    matches its schema and the headers it requires; returns the decoded body."""
    operation = SPEC["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{method.upper()} {path} answered {status}, which the description does not list: "
        f"{response.get_data(as_text=True)[:300]}"
    )
    documented = operation["responses"][status]
    location = ["paths", path, method, "responses", status]
    if "$ref" in documented:
        name = documented["$ref"].rsplit("/", 1)[1]
        documented, location = SPEC["components"]["responses"][name], ["components", "responses", name]
    assert response.mimetype in documented["content"], f"{path} {status}: {response.mimetype} is not described"
    body = response.get_json() if response.is_json else response.get_data(as_text=True)
    errors = schema_errors(body, *location, "content", response.mimetype, "schema")
    assert not errors, f"{method.upper()} {path} {status} does not match its schema: {errors}"
    for header, spec in documented.get("headers", {}).items():
        assert not spec.get("required") or header in response.headers, f"{path} {status}: no {header} header"
        if header in response.headers and "schema" in spec:
            value = response.headers[header]
            assert Draft202012Validator(spec["schema"]).is_valid(value), f"{path} {status}: {header}: {value}"
    return body


def load_request(path) -> dict[str, Any]:
    body = json.loads(path.read_text(encoding="utf-8"))
    body.pop("_expected", None)
    return body


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openapi")
    return create_app(Settings(feedback_db=folder / "f.db"), now=lambda: FROZEN_NOW)


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


# --- the document ------------------------------------------------------------------------------


def test_the_description_is_a_valid_openapi_3_1_document_of_this_version():
    validate_spec(SPEC)
    assert SPEC["openapi"].startswith("3.1.")
    assert SPEC["info"]["version"] == __version__


def test_it_describes_exactly_the_routes_the_app_serves(app):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routes |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    described = {(path, method) for path, item in SPEC["paths"].items() for method in item}
    assert routes == described, f"not described: {routes - described}; described but not served: {described - routes}"


def test_the_service_id_parameter_lists_exactly_the_services():
    for path, item in SPEC["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "service_id":
                    assert parameter["schema"]["enum"] == list(SERVICES), path
    assert component_errors({"services": []}, "DiscoveryResponse") == []


WIRE_MODELS = [
    (protocol.CDSResponse, "CDSResponse"),
    (protocol.Card, "Card"),
    (protocol.Suggestion, "Suggestion"),
    (protocol.Action, "Action"),
    (protocol.Link, "Link"),
    (protocol.Source, "Source"),
    (protocol.Coding, "Coding"),
    (protocol.OverrideReason, "OverrideReason"),
    (protocol.DiscoveryService, "DiscoveryService"),
    (protocol.DiscoveryResponse, "DiscoveryResponse"),
]


@pytest.mark.parametrize(("model", "name"), WIRE_MODELS, ids=[name for _, name in WIRE_MODELS])
def test_each_wire_model_has_exactly_the_properties_of_its_schema_which_forbids_others(model, name):
    schema = SPEC["components"]["schemas"][name]
    sent = {field.alias or key for key, field in model.model_fields.items() if not field.exclude}
    assert set(schema["properties"]) == sent
    assert schema["additionalProperties"] is False
    required = {field.alias or key for key, field in model.model_fields.items() if field.is_required()}
    assert required <= set(schema["required"])


def test_the_feedback_item_result_schema_has_every_member_the_store_answers():
    full = FeedbackResult("stored", reason="recorded", snoozed_until=FROZEN_NOW, detail="x").as_json()
    schema = SPEC["components"]["schemas"]["FeedbackItemResult"]
    assert set(schema["properties"]) == set(full) and schema["additionalProperties"] is False
    assert component_errors(full, "FeedbackItemResult") == []


def test_the_served_description_lists_the_public_base_urls_as_servers(client, tmp_path):
    served = check_answer(client.get("/openapi.json"), "/openapi.json")
    assert served == SPEC
    app = create_app(Settings(feedback_db=tmp_path / "f.db", public_base_url="https://cds.example.org,https://b.org"))
    served = app.test_client().get("/openapi.json").get_json()
    assert served["servers"] == [{"url": "https://cds.example.org"}, {"url": "https://b.org"}]
    assert served["paths"] == SPEC["paths"]


def test_the_description_is_open_to_any_caller_with_authentication_on(tmp_path):
    settings = Settings(
        feedback_db=tmp_path / "f.db", issuers_file=write_issuers(tmp_path, default_issuer()), public_base_url=BASE
    )
    client = create_app(settings).test_client()
    assert client.get("/openapi.json").status_code == 200
    check_answer(client.get("/cds-services"), "/cds-services")  # 401, as described


# --- requests --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_every_fixture_request_matches_the_request_schema(path):
    body = load_request(path)
    assert schema_errors(body, "components", "schemas", "CDSRequest") == []


def test_the_request_schema_names_what_a_hook_needs_in_its_context():
    body = load_request(FIXTURES / "c1-calcium-acetate-calciphylaxis.json")
    del body["context"]["draftOrders"]
    assert any("draftOrders" in e for e in component_errors(body, "CDSRequest"))


# --- real answers ---------------------------------------------------------------------------


def test_discovery_matches_its_schema(client):
    check_answer(client.get("/cds-services"), "/cds-services")


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_every_fixture_hook_call_answer_matches_its_schema(client, path):
    body = load_request(path)
    response = client.post(f"/cds-services/calciphylaxis-{body['hook']}", json=body)
    check_answer(response, "/cds-services/{service_id}", "post")


def test_a_hook_answer_with_cards_suggestions_actions_and_links_is_covered(client):
    body = load_request(FIXTURES / "c1-calcium-acetate-calciphylaxis.json")
    answer = check_answer(client.post(ORDER_SELECT, json=body), "/cds-services/{service_id}", "post")
    (card,) = answer["cards"]
    assert card["suggestions"][0]["actions"] and card["links"] and card["overrideReasons"]
    assert {a["type"] for a in card["suggestions"][0]["actions"]} == {"create", "delete"}


def _real_card(client) -> dict[str, Any]:
    body = load_request(FIXTURES / "c1-calcium-acetate-calciphylaxis.json")
    return client.post(ORDER_SELECT, json=body).get_json()["cards"][0]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda card: card.update(rule_id="C1"), "Additional properties are not allowed ('rule_id'"),
        (lambda card: card["source"].update(version="1"), "Additional properties are not allowed ('version'"),
        (lambda card: card.update(indicator="severe"), "'severe' is not one of"),
        (lambda card: card.update(summary=5), "5 is not of type 'string'"),
        (lambda card: card["suggestions"][0].update(isRecommended="yes"), "'yes' is not of type 'boolean'"),
        (lambda card: card.update(uuid="not-a-uuid"), "'not-a-uuid' is not a 'uuid'"),
        (lambda card: card.pop("selectionBehavior"), "'selectionBehavior' is a dependency of 'suggestions'"),
        (lambda card: card["suggestions"][0]["actions"][1].pop("resourceId"), "'resourceId' is a required property"),
    ],
    ids=[
        "field-added",
        "nested-field-added",
        "indicator",
        "summary-type",
        "boolean",
        "uuid",
        "selection",
        "delete-target",
    ],
)
def test_a_card_with_a_field_added_or_mistyped_fails_the_check(client, change, complaint):
    card = _real_card(client)
    assert component_errors({"cards": [card]}, "CDSResponse") == []
    changed = copy.deepcopy(card)
    change(changed)
    errors = component_errors({"cards": [changed]}, "CDSResponse")
    assert any(complaint in e for e in errors), errors


def _feedback(card_uuid: str, **item: Any) -> dict[str, Any]:
    base = {"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2026-11-21T12:01:00Z"}
    return {"feedback": [{**base, **item}]}


def test_feedback_answers_match_their_schema_stored_duplicate_unknown_and_refused(app, client):
    card = _real_card(client)
    app.extensions["cds"].writer.flush(timeout=5)
    feedback = ORDER_SELECT + "/feedback"
    reason = {"reason": {"system": OVERRIDE_SYSTEM, "code": card["overrideReasons"][0]["code"]}}
    item = _feedback(card["uuid"], overrideReason=reason)
    assert schema_errors(item, "components", "schemas", "FeedbackRequest") == []
    first = check_answer(client.post(feedback, json=item), "/cds-services/{service_id}/feedback", "post")
    assert first["items"] == [{"result": "stored", "overrideReason": "recorded"}]
    again = check_answer(client.post(feedback, json=item), "/cds-services/{service_id}/feedback", "post")
    assert again["items"] == [{"result": "duplicate"}]
    unknown = check_answer(
        client.post(feedback, json=_feedback("no-such-card", overrideReason=reason)),
        "/cds-services/{service_id}/feedback",
        "post",
    )
    assert unknown["items"] == [{"result": "stored", "overrideReason": "card-unknown"}]
    many = {
        "feedback": [
            {**_feedback(card["uuid"])["feedback"][0], "outcomeTimestamp": f"2026-11-21T12:{minute:02d}:00Z"}
            for minute in range(10, 16)
        ]
    }
    bounded = check_answer(client.post(feedback, json=many), "/cds-services/{service_id}/feedback", "post")
    assert bounded["refused"] >= 1 and any("detail" in i for i in bounded["items"])
    changed = copy.deepcopy(first)
    changed["stored"] = "1"
    assert component_errors(changed, "FeedbackAnswer") == ["stored: '1' is not of type 'integer'"]


def test_a_snoozing_override_answer_matches_its_schema(app, client):
    body = load_request(FIXTURES / "c1-calcium-acetate-on-home-medication-list-patient-view.json")
    cards = client.post(PATIENT_VIEW, json=body).get_json()["cards"]
    card = next(c for c in cards if "calcium acetate" in c["summary"])
    app.extensions["cds"].writer.flush(timeout=5)
    code = next(r["code"] for r in card["overrideReasons"] if "month" in r["code"])
    item = _feedback(card["uuid"], overrideReason={"reason": {"system": OVERRIDE_SYSTEM, "code": code}})
    answer = check_answer(
        client.post(PATIENT_VIEW + "/feedback", json=item), "/cds-services/{service_id}/feedback", "post"
    )
    assert "snoozedUntil" in answer["items"][0]


def test_the_readme_feedback_example_stores_an_override_on_a_card_the_service_answered(tmp_path):
    """The README's feedback example, run as written: the card uuid comes from the hook call's
    answer, and the answer is the one the README shows."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("CARD_UUID=$(curl") :]
    assert "jq -r '.cards[0].uuid'" in block
    data = re.search(r"/feedback \\\n\s+--data '(.*?)'\n", block, re.S).group(1)
    shown = json.loads(re.search(r"^# -> (\{.*\})$", block, re.M).group(1))
    client = create_app(Settings(feedback_db=tmp_path / "f.db"), now=lambda: FROZEN_NOW).test_client()
    fixture = re.search(r"--data @(fhir_fixtures/[\w.-]+\.json)", block).group(1)
    card_uuid = client.post(ORDER_SELECT, json=load_request(REPO / fixture)).get_json()["cards"][0]["uuid"]
    body = json.loads(data.replace("'\"$CARD_UUID\"'", card_uuid))
    client.application.extensions["cds"].writer.flush(timeout=5)
    answer = check_answer(
        client.post(ORDER_SELECT + "/feedback", json=body), "/cds-services/{service_id}/feedback", "post"
    )
    assert answer == shown
    assert "<card uuid>" not in readme and "snooze-end <" not in readme


def test_error_answers_are_operation_outcomes_as_described(client, tmp_path):
    hook = "/cds-services/{service_id}"
    check_answer(client.post(PATIENT_VIEW, data='{"hook": ', content_type="application/json"), hook, "post")  # 400
    check_answer(client.post("/cds-services/nope", json={}), hook, "post")  # 404
    check_answer(client.post(PATIENT_VIEW, data="{}", content_type="text/plain"), hook, "post")  # 415
    no_data = {"hook": "patient-view", "hookInstance": "i", "context": {"userId": "u", "patientId": "p"}}
    assert check_answer(client.post(PATIENT_VIEW, json=no_data), hook, "post")["issue"][0]["code"] == "incomplete"
    small = create_app(Settings(feedback_db=tmp_path / "f.db", max_body_bytes=1024)).test_client()
    check_answer(small.post(PATIENT_VIEW, json={"padding": "x" * 4096}), hook, "post")  # 413
    check_answer(client.get("/cds-services", headers={"X-Padding": "a" * (256 * 1024 + 1)}), "/cds-services")  # 431
    check_answer(client.post(PATIENT_VIEW + "/feedback", json={"feedback": []}), hook + "/feedback", "post")  # 400
    check_answer(client.get("/governance/report?expires=1&signature=x"), "/governance/report")  # 403
    # 405 is not an operation of any path; its body is still the described OperationOutcome.
    wrong_method = client.get(PATIENT_VIEW)
    assert wrong_method.status_code == 405 and component_errors(wrong_method.get_json(), "OperationOutcome") == []


def test_operations_answers_match_their_schemas(app, client):
    check_answer(client.get("/health"), "/health")
    ready = check_answer(client.get("/ready"), "/ready")
    assert ready["checks"] == {"content": "ok", "database": "ok"}
    check_answer(client.get("/"), "/")
    check_answer(client.get("/metrics"), "/metrics")
    check_answer(client.get("/governance/report"), "/governance/report")
    body = load_request(FIXTURES / "c1-calcium-acetate-calciphylaxis.json")
    check_answer(client.post(ORDER_SELECT + "/preview", json=body), "/cds-services/{service_id}/preview", "post")
    app.extensions["cds"].lifecycle.draining.set()
    try:
        not_ready = check_answer(client.get("/ready"), "/ready")
    finally:
        app.extensions["cds"].lifecycle.draining.clear()
    assert "shutting down" in not_ready["issue"][0]["diagnostics"]


# --- the documentation agrees with discovery -------------------------------------------------


def test_fhir_access_doc_lists_every_key_discovery_asks_for_and_says_procedures_are_requested(client):
    doc = (REPO / "docs" / "fhir-access.md").read_text(encoding="utf-8")
    for service in client.get("/cds-services").get_json()["services"]:
        for key in service["prefetch"]:
            assert f"| `{key}` |" in doc, key
    templates = {t for s in SERVICES.values() for t in s.templates.values()}
    assert any(t.startswith("Procedure?") for t in templates)
    assert "Procedures are requested" in doc and "are not requested" not in doc


def test_timestamps_in_answers_are_aware_and_formatted(client):
    # format checking is on: a date-time without an offset fails
    assert component_errors({"result": "stored", "snoozedUntil": "2026-11-21T12:00:00"}, "FeedbackItemResult")
    ok = datetime(2026, 11, 21, 12, tzinfo=UTC).isoformat(timespec="seconds")
    assert component_errors({"result": "stored", "snoozedUntil": ok}, "FeedbackItemResult") == []
