"""The HTTP surface: discovery, hook calls, errors with the right status, CORS, health."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from cds_service.config import Settings
from cds_service.http.app import create_app
from tests.conftest import FIXTURES, load_shared, preflight

ORDER_SELECT = "/cds-services/calciphylaxis-order-select"
PATIENT_VIEW = "/cds-services/calciphylaxis-patient-view"

TOKEN_RE = re.compile(
    r"^\{\{(context\.[A-Za-z]+|userPractitionerId|userPractitionerRoleId|userPatientId|userRelatedPersonId)\}\}$"
)


def minimal_patient_view(**overrides):
    body = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {"conditions": None, "meds": None},
    }
    body.update(overrides)
    return body


def load_fixture(name: str) -> dict:
    body = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    body.pop("_expected", None)
    return body


def diagnostics(response) -> str:
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


# --- discovery ------------------------------------------------------------------------------


def test_discovery_lists_a_service_for_each_hook(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = response.get_json()["services"]
    assert {s["hook"] for s in services} >= {"patient-view", "order-select", "order-sign"}
    for s in services:
        assert s["id"] and s["title"] and s["description"] and s["usageRequirements"]


def test_discovery_prefetch_templates_use_only_cds_hooks_2_0_tokens(client):
    for service in client.get("/cds-services").get_json()["services"]:
        assert service["prefetch"], service["id"]
        for key, template in service["prefetch"].items():
            tokens = re.findall(r"\{\{[^}]*\}\}", template)
            assert tokens, f"{key} has no token"
            for token in tokens:
                assert TOKEN_RE.match(token), f"{service['id']}.{key}: {token}"
                assert token not in ("{{context.selections}}", "{{context.draftOrders}}")


# --- valid calls ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "patient-view-request.json",
        "order-select-request-empty-draft.json",
        "order-select-request-rxnorm-855332.json",
        "order-select-request-rxnorm-197433.json",
    ],
)
def test_each_captured_sandbox_request_is_answered_200_with_cards(client, name):
    body = load_shared(f"fhir-data/sandbox-captured-requests/{name}")
    response = client.post(f"/cds-services/calciphylaxis-{body['hook']}", json=body)
    assert response.status_code == 200, response.get_json()
    assert isinstance(response.get_json()["cards"], list)


def test_spec_patient_view_example_request_is_accepted(client):
    body = load_shared("reference/cds-hooks-examples/2.0/patient-view-request.json")
    # The spec's example FHIR server is not trusted here; the call must still not 500.
    response = client.post(PATIENT_VIEW, json=body)
    assert response.status_code in (200, 412)
    assert response.is_json


def test_fhir_json_content_type_with_charset_is_accepted(client):
    response = client.post(
        PATIENT_VIEW,
        data=json.dumps(minimal_patient_view()),
        content_type="application/fhir+json; charset=utf-8",
    )
    assert response.status_code == 200


def test_unknown_members_and_extensions_are_ignored(client):
    body = minimal_patient_view(extension={"com.example.x": 1}, somethingNew=True)
    assert client.post(PATIENT_VIEW, json=body).status_code == 200


def test_draft_orders_with_fhir_schema_defects_are_read_not_rejected(client):
    """The real sandbox sends MedicationRequest.category as an object, which is invalid R4."""
    body = load_shared("fhir-data/sandbox-captured-requests/order-select-request-rxnorm-197433.json")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    assert isinstance(draft["category"], dict)
    assert client.post(ORDER_SELECT, json=body).status_code == 200


# --- errors -------------------------------------------------------------------------------


def test_malformed_json_is_400_with_a_clear_message(client):
    response = client.post(PATIENT_VIEW, data='{"hook": ', content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in diagnostics(response)


def test_empty_body_is_400(client):
    response = client.post(PATIENT_VIEW, data="", content_type="application/json")
    assert response.status_code == 400
    assert "empty" in diagnostics(response)


@pytest.mark.parametrize("body, kind", [("[]", "array"), ('"x"', "string"), ("3", "number"), ("null", "null")])
def test_non_object_body_is_400(client, body, kind):
    response = client.post(PATIENT_VIEW, data=body, content_type="application/json")
    assert response.status_code == 400
    assert f"not a JSON {kind}" in diagnostics(response)


@pytest.mark.parametrize("field", ["hook", "hookInstance", "context"])
def test_missing_required_field_is_400_naming_the_field(client, field):
    body = minimal_patient_view()
    del body[field]
    response = client.post(PATIENT_VIEW, json=body)
    assert response.status_code == 400
    assert f"{field}: Field required" in diagnostics(response)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("hook", 5, "hook:"),
        ("hookInstance", ["a"], "hookInstance:"),
        ("context", "p1", "context:"),
        ("prefetch", [1], "prefetch:"),
        ("fhirServer", "ftp://x", "fhirServer:"),
    ],
)
def test_wrong_typed_field_is_400_naming_the_field(client, field, value, expected):
    body = minimal_patient_view(**{field: value})
    response = client.post(PATIENT_VIEW, json=body)
    assert response.status_code == 400
    assert expected in diagnostics(response)


def test_context_fields_required_by_the_hook_are_checked(client):
    body = minimal_patient_view(context={"userId": "Practitioner/1"})
    response = client.post(PATIENT_VIEW, json=body)
    assert response.status_code == 400
    assert "context.patientId: Field required" in diagnostics(response)

    order = {"hook": "order-select", "hookInstance": "i", "context": {"userId": "Practitioner/1", "patientId": "p"}}
    message = diagnostics(client.post(ORDER_SELECT, json=order))
    assert "context.selections" in message and "context.draftOrders" in message


def test_fhir_authorization_without_fhir_server_is_400(client):
    auth = {
        "access_token": "secret-token-value",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "x",
        "subject": "s",
    }
    response = client.post(PATIENT_VIEW, json=minimal_patient_view(fhirAuthorization=auth))
    assert response.status_code == 400
    message = diagnostics(response)
    assert "fhirServer is required" in message
    assert "secret-token-value" not in response.get_data(as_text=True)


def test_invalid_fhir_authorization_never_echoes_the_token(client):
    auth = {"access_token": "secret-token-value", "token_type": "MAC", "expires_in": 300, "scope": "x", "subject": "s"}
    body = minimal_patient_view(fhirAuthorization=auth, fhirServer="https://ehr.example.org/fhir")
    response = client.post(PATIENT_VIEW, json=body)
    assert response.status_code == 400
    assert "token_type" in diagnostics(response)
    assert "secret-token-value" not in response.get_data(as_text=True)


def test_hook_the_service_does_not_serve_is_400(client):
    response = client.post(ORDER_SELECT, json=minimal_patient_view())
    assert response.status_code == 400
    assert "does not serve hook 'patient-view'" in diagnostics(response)


def test_unknown_service_is_404(client):
    response = client.post("/cds-services/no-such-service", json=minimal_patient_view())
    assert response.status_code == 404
    assert "no-such-service" in diagnostics(response)


def test_unknown_path_is_404_json(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.is_json


@pytest.mark.parametrize(
    "method, path",
    [("put", "/cds-services"), ("get", PATIENT_VIEW), ("delete", PATIENT_VIEW), ("get", PATIENT_VIEW + "/feedback")],
)
def test_wrong_method_is_405_with_allow_header(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert "not allowed" in diagnostics(response)
    assert response.headers.get("Allow")


def test_body_over_the_limit_is_413(tmp_path):
    app = create_app(Settings(feedback_db=tmp_path / "f.db", max_body_bytes=2048))
    payload = json.dumps(minimal_patient_view(padding="x" * 4096))
    response = app.test_client().post(PATIENT_VIEW, data=payload, content_type="application/json")
    assert response.status_code == 413
    assert "larger than" in diagnostics(response)


def test_default_body_limit_fits_a_large_prefetch():
    assert Settings().max_body_bytes >= 32 * 1024 * 1024


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_non_json_content_type_is_415(client, content_type):
    response = client.post(PATIENT_VIEW, data=json.dumps(minimal_patient_view()), content_type=content_type)
    assert response.status_code == 415
    assert "application/json" in diagnostics(response)


def test_unexpected_exception_is_a_generic_500_and_logged(client, monkeypatch, caplog):
    from cds_service import engine

    def boom(call):
        raise RuntimeError("internal detail with patient p1")

    monkeypatch.setattr(engine, "evaluate", boom)
    with caplog.at_level(logging.ERROR):
        response = client.post(PATIENT_VIEW, json=minimal_patient_view())
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "internal detail" not in text and "Traceback" not in text
    assert diagnostics(response).startswith("Internal error")
    logged = [r for r in caplog.records if r.name == "cds_service.request" and r.levelno == logging.ERROR]
    assert len(logged) == 1
    assert "in boom" in logged[0].traceback and "builtins.RuntimeError" in logged[0].traceback, (
        "where it failed must reach the log"
    )


def test_unexpected_exception_message_never_reaches_the_log(client, monkeypatch, caplog):
    """An exception message may quote the request (a patient id, a token): the log gets the
    exception type and every frame, not the message."""
    from cds_service import engine
    from cds_service.http.logs import JsonFormatter

    def boom(call):
        try:
            int(call.context["patientId"])  # ValueError quoting the patient id
        except ValueError as exc:
            raise KeyError(call.context["note"]) from exc

    monkeypatch.setattr(engine, "evaluate", boom)
    body = minimal_patient_view(context={"userId": "u", "patientId": "patient-id-p1", "note": "secret-token-value"})
    with caplog.at_level(logging.DEBUG):
        assert client.post(PATIENT_VIEW, json=body).status_code == 500
    formatted = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "builtins.KeyError" in formatted and "builtins.ValueError" in formatted
    assert "patient-id-p1" not in formatted and "secret-token-value" not in formatted


# --- CORS, health, index -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/cds-services", PATIENT_VIEW, PATIENT_VIEW + "/feedback"])
def test_cors_preflight_is_answered_without_credentials(client, path):
    response = preflight(client, path)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_cors_headers_on_errors_too(client):
    response = client.post(PATIENT_VIEW, data="{", content_type="application/json", headers={"Origin": "https://x.org"})
    assert response.status_code == 400
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_origins_can_be_restricted(tmp_path):
    app = create_app(Settings(feedback_db=tmp_path / "f.db", cors_origins="https://ehr.example.org"))
    client = app.test_client()
    allowed = client.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    other = client.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_health_reports_liveness_and_version(client):
    from cds_service import __version__

    body = client.get("/health").get_json()
    assert body == {"status": "ok", "version": __version__}


def test_index_says_what_this_is_and_links_discovery(client):
    body = client.get("/").get_json()
    assert body["discovery"].endswith("/cds-services")
    assert "CDS Hooks" in body["description"]


# --- logging -------------------------------------------------------------------------------


def test_one_structured_log_line_per_request_without_tokens(client, caplog):
    auth = {
        "access_token": "secret-token-value",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "x",
        "subject": "s",
    }
    body = minimal_patient_view(fhirAuthorization=auth, fhirServer="https://ehr.example.org/fhir")
    with caplog.at_level(logging.INFO, logger="cds_service.request"):
        client.post(PATIENT_VIEW, json=body, headers={"Authorization": "Bearer jwt-value"})
    lines = [r for r in caplog.records if r.name == "cds_service.request"]
    assert len(lines) == 1
    record = lines[0]
    assert record.service == "calciphylaxis-patient-view"
    assert record.hook == "patient-view"
    assert record.hookInstance == "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    assert record.status in (200, 412)
    assert isinstance(record.duration_ms, float)
    from cds_service.http.logs import JsonFormatter

    text = JsonFormatter().format(record)
    assert "secret-token-value" not in text and "jwt-value" not in text
    assert json.loads(text)["hookInstance"] == "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"


# --- limits in front of the app (any WSGI server) ------------------------------------------


def limited_client(tmp_path, max_body_bytes=4096):
    return create_app(Settings(feedback_db=tmp_path / "f.db", max_body_bytes=max_body_bytes)).test_client()


def post_chunked(client, body: bytes):
    """``body`` sent with Transfer-Encoding: chunked (no Content-Length)."""
    return client.post(
        PATIENT_VIEW,
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )


def test_chunked_body_over_the_limit_is_413_operation_outcome(tmp_path):
    body = json.dumps(minimal_patient_view(padding="x" * 8192)).encode()
    response = post_chunked(limited_client(tmp_path), body)
    assert response.status_code == 413
    assert "larger than this service accepts (4096 bytes)" in diagnostics(response)


def test_chunked_body_under_the_limit_is_read_and_answered(tmp_path):
    body = json.dumps(minimal_patient_view()).encode()
    response = post_chunked(limited_client(tmp_path), body)
    assert response.status_code == 200 and response.get_json() == {"cards": []}


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "0x10", " 12 34", "١٢"])
def test_content_length_that_is_not_a_non_negative_integer_is_400_operation_outcome(tmp_path, length):
    response = limited_client(tmp_path).post(
        PATIENT_VIEW, data=b"{}", content_type="application/json", environ_overrides={"CONTENT_LENGTH": length}
    )
    assert response.status_code == 400
    assert "Content-Length" in diagnostics(response)


def test_absurd_content_length_is_413_before_the_body_is_read(tmp_path):
    response = limited_client(tmp_path).post(
        PATIENT_VIEW,
        data=b"{}",
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": "9" * 40},
    )
    assert response.status_code == 413
    assert "larger than" in diagnostics(response)


def test_header_over_256_kib_is_431_operation_outcome(client):
    response = client.get("/cds-services", headers={"X-Padding": "a" * (256 * 1024 + 1)})
    assert response.status_code == 431
    assert "headers are larger" in diagnostics(response)
    assert client.get("/cds-services", headers={"X-Padding": "a" * 8192}).status_code == 200


# --- leniency -------------------------------------------------------------------------------


def test_order_select_before_anything_is_selected_gets_no_cards(client):
    body = load_fixture("c1-calcium-acetate-calciphylaxis.json")
    body["context"]["selections"] = []
    response = client.post(ORDER_SELECT, json=body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


# --- what the HTTP layer logs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "hook_instance",
    ["Patient/p-sentinel-42 Jane Doe", "x" * 5000, {"patientId": "p-sentinel-42"}, ["p-sentinel-42"]],
)
def test_request_log_line_never_carries_body_values_other_than_a_short_hook_instance(client, caplog, hook_instance):
    from cds_service.http.logs import JsonFormatter

    body = minimal_patient_view(hookInstance=hook_instance, hook="p-sentinel-42")
    with caplog.at_level(logging.DEBUG, logger="cds_service.request"):
        client.post(PATIENT_VIEW, json=body)
    (line,) = [r for r in caplog.records if r.name == "cds_service.request"]
    text = JsonFormatter().format(line)
    assert "p-sentinel-42" not in text and "xxxx" not in text
    assert len(text) < 1000
