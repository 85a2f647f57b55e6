"""Prefetch resolution: what is used as sent, what is fetched, what is unavailable and why."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from cds_service.config import Settings
from cds_service.errors import BadRequest, DataUnavailable
from cds_service.fhir.client import FhirClient
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.fhir.templates import PrefetchKey, TemplateError, fill_template
from cds_service.http.app import create_app
from cds_service.http.errors import http_status
from cds_service.patient.chart import read_chart
from cds_service.patient.terminology import LAB_LOINC, LOINC_TO_ANALYTE
from cds_service.protocol import HOOKS, CDSRequest
from cds_service.services import PREFETCH_KEYS, SERVICES
from tests.conftest import FROZEN_NOW
from tests.test_fhir_client import NOT_NORMAL_PATHS

# The templates every service declares, and which keys each hook's service requires.
PREFETCH_TEMPLATES = {key: spec.template for key, spec in PREFETCH_KEYS.items()}
REQUIRED_KEYS = {
    service.hook: {key for key, spec in service.prefetch.items() if spec.required} for service in SERVICES.values()
}

BASE = "https://fhir.example.org/r4"
TOKEN = "opaque-access-token-XYZ"
PATIENT = "p1"
LAB_KEYS = ("calcium", "albumin", "phosphate", "pth", "egfr", "crp", "weight")


# --- builders ---------------------------------------------------------------------------------


def make_settings(tmp_path=None, **overrides) -> Settings:
    options = dict(fhir_allowed_servers=[BASE], fhir_deadline=10.0, fhir_read_timeout=5.0, fhir_connect_timeout=5.0)
    if tmp_path is not None:
        options["feedback_db"] = tmp_path / "feedback.sqlite3"
    options.update(overrides)
    return Settings(**options)


@pytest.fixture
def resolver():
    resolver = PrefetchResolver(make_settings())
    yield resolver
    resolver.close()


def resolve_all(resolver: PrefetchResolver, request: CDSRequest):
    """Resolve every key the service of the request's hook declares (its required ones too)."""
    service = next(s for s in SERVICES.values() if s.hook == request.hook)
    return resolver.resolve(request, service.prefetch)


def hook_request(
    prefetch=None, *, hook="patient-view", server=BASE, token=True, auth_patient=None, **context
) -> CDSRequest:
    body = {
        "hook": hook,
        "hookInstance": "0d6c0d8b-1f7e-4a4e-9d44-6a2f0c4f1a11",
        "context": {"userId": "Practitioner/u1", "patientId": PATIENT, **context},
    }
    if server:
        body["fhirServer"] = server
    if server and token:
        body["fhirAuthorization"] = {
            "access_token": TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "cds-service",
            **({"patient": auth_patient} if auth_patient else {}),
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return CDSRequest.model_validate(body)


def searchset(*resources, next_url=None, outcomes=()) -> dict:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]
        + [{"resource": o, "search": {"mode": "outcome"}} for o in outcomes],
    }
    if next_url:
        bundle["link"] = [{"relation": "self", "url": f"{BASE}/x"}, {"relation": "next", "url": next_url}]
    return bundle


def outcome(severity="error") -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": "processing"}]}


def condition(i) -> dict:
    return {"resourceType": "Condition", "id": f"c{i}", "subject": {"reference": f"Patient/{PATIENT}"}}


def med_request(i, **medication) -> dict:
    medication = medication or {"medicationCodeableConcept": {"text": "sevelamer"}}
    return {"resourceType": "MedicationRequest", "id": f"m{i}", "status": "active", **medication}


def observation(i) -> dict:
    return {"resourceType": "Observation", "id": f"o{i}", "status": "final"}


PATIENT_RESOURCE = {"resourceType": "Patient", "id": PATIENT}


def full_prefetch() -> dict:
    return {
        "patient": PATIENT_RESOURCE,
        "conditions": searchset(condition(1)),
        "meds": searchset(med_request(1)),
        **{key: searchset(observation(key)) for key in LAB_KEYS},
        "procedures": searchset(),
        # any key declared since: an empty result, so a full prefetch stays full
        **{key: searchset() for key in PREFETCH_TEMPLATES if key not in ("patient", "conditions", "meds", *LAB_KEYS)},
    }


def serve_everything():
    """A trusted FHIR server that answers every template (register on an active responses mock)."""
    responses.get(f"{BASE}/Patient/{PATIENT}", json=PATIENT_RESOURCE)
    responses.get(f"{BASE}/Condition", json=searchset(condition(1)))
    responses.get(f"{BASE}/MedicationRequest", json=searchset(med_request(1)))
    responses.get(f"{BASE}/Observation", json=searchset(observation(1)))
    responses.get(f"{BASE}/Procedure", json=searchset())
    served = {"Patient", "Condition", "MedicationRequest", "Observation", "Procedure"}
    for template in PREFETCH_TEMPLATES.values():  # any resource type declared since: empty results
        resource_type = template.partition("?")[0].split("/")[0]
        if resource_type not in served:
            served.add(resource_type)
            responses.get(f"{BASE}/{resource_type}", json=searchset())


def paths_called() -> list[str]:
    return [urlsplit(call.request.url).path.removeprefix("/r4/") for call in responses.calls]


# --- declared templates and policy ------------------------------------------------------------


def test_templates_keep_the_keys_fixtures_use():
    assert set(PREFETCH_TEMPLATES) == {
        "patient",
        "conditions",
        "meds",
        "medstatements",
        "medadmins",
        "allergies",
        *LAB_KEYS,
        "procedures",
        "parathyroidectomy",
    }


@pytest.mark.parametrize("key", LAB_KEYS)
def test_lab_templates_search_by_the_terminology_codes_newest_first_with_a_bounded_count(key):
    query = parse_qs(urlsplit(PREFETCH_TEMPLATES[key]).query)
    codes = {token.split("|")[1] for token in query["code"][0].split(",")}
    analytes = {"calcium": ("calcium", "ionized_calcium", "corrected_calcium"), "weight": ("body_weight",)}.get(
        key, (key,)
    )
    # every code the record reads for the analyte (LOINC_TO_ANALYTE), so search and reader agree
    assert codes == {code for code, analyte in LOINC_TO_ANALYTE.items() if analyte in analytes}
    assert codes >= set().union(*(LAB_LOINC[a] for a in analytes))
    assert query["_sort"] == ["-date"]
    assert int(query["_count"][0]) == PREFETCH_KEYS[key].newest <= 10


def test_templates_use_only_the_2_0_query_subset():
    allowed = {"patient", "code", "status", "_sort", "_count"}
    for key, template in PREFETCH_TEMPLATES.items():
        assert set(parse_qs(urlsplit(template).query)) <= allowed, key
        assert "_include" not in template


def test_required_data_is_declared_for_every_hook_and_only_patient_view_requires_any():
    assert set(REQUIRED_KEYS) == set(HOOKS)
    assert REQUIRED_KEYS["patient-view"] == {"conditions", "meds"}
    assert not REQUIRED_KEYS["order-select"] and not REQUIRED_KEYS["order-sign"]
    for service in SERVICES.values():
        assert set(service.prefetch) == set(PREFETCH_TEMPLATES)


# --- tokens -----------------------------------------------------------------------------------


def test_context_and_user_tokens_are_filled():
    context = {"patientId": "p-9", "userId": "PractitionerRole/r7", "encounterId": "e1"}
    assert fill_template("Patient/{{context.patientId}}", context) == "Patient/p-9"
    assert fill_template("Encounter/{{context.encounterId}}", context) == "Encounter/e1"
    assert fill_template("PractitionerRole?_id={{userPractitionerRoleId}}", context) == "PractitionerRole?_id=r7"
    assert fill_template("{{context.userId}}", context) == "PractitionerRole%2Fr7"


def test_token_values_cannot_add_parameters_or_path_segments():
    context = {"patientId": "1&_include=*&x=../../admin"}
    filled = fill_template("Condition?patient={{context.patientId}}", context)
    assert filled == "Condition?patient=1%26_include%3D%2A%26x%3D..%2F..%2Fadmin"
    assert set(parse_qs(urlsplit(filled).query)) == {"patient"}


@pytest.mark.parametrize(
    "template, context, reason",
    [
        ("Encounter/{{context.encounterId}}", {"patientId": "p"}, "request has no usable context.encounterId"),
        (
            "X?d={{context.draftOrders}}",
            {"draftOrders": {"resourceType": "Bundle"}},
            "request has no usable context.draftOrders",
        ),
        (
            "X?s={{context.selections}}",
            {"selections": ["MedicationRequest/1"]},
            "request has no usable context.selections",
        ),
        ("Practitioner/{{userPractitionerId}}", {"userId": "PractitionerRole/1"}, "request has no Practitioner user"),
        ("X?d={{today()}}", {}, "template uses a token this service cannot fill"),
        ("X?d={{context.medication.id}}", {"medication": {"id": "1"}}, "request has no usable context.medication.id"),
    ],
)
def test_unfillable_tokens_are_reported(template, context, reason):
    with pytest.raises(TemplateError) as caught:
        fill_template(template, context)
    assert caught.value.reason == reason


@responses.activate
def test_a_template_that_cannot_be_filled_is_unavailable_without_a_call(resolver):
    request = hook_request(hook="order-sign")
    resolved = resolver.resolve(
        request, {"encounter": PrefetchKey("Encounter/{{context.encounterId}}", "the encounter")}
    )
    assert resolved.unavailable == {"encounter": "request has no usable context.encounterId"}
    assert len(responses.calls) == 0


# --- using what was prefetched ----------------------------------------------------------------


@responses.activate
def test_prefetched_resources_and_bundles_are_used_without_calling_the_server(resolver):
    sent = full_prefetch()
    resolved = resolve_all(resolver, hook_request(sent))
    assert len(responses.calls) == 0
    assert resolved.unavailable == {} and resolved.fetched == frozenset()
    assert resolved.data["patient"] == PATIENT_RESOURCE
    assert [e["resource"]["id"] for e in resolved.data["conditions"]["entry"]] == ["c1"]


@responses.activate
def test_null_means_the_ehr_has_no_such_data_not_that_it_is_missing(resolver):
    sent = dict.fromkeys(PREFETCH_TEMPLATES)
    resolved = resolve_all(resolver, hook_request(sent))
    assert len(responses.calls) == 0
    assert resolved.data == sent and resolved.unavailable == {}


@responses.activate
def test_operation_outcome_entries_beside_results_leave_the_bundle_usable_and_are_never_read(resolver):
    named = {**condition(1), "code": {"text": "Calciphylaxis"}, "clinicalStatus": {"coding": [{"code": "active"}]}}
    sent = {**full_prefetch(), "conditions": searchset(named, outcomes=[outcome("warning"), outcome("error")])}
    resolved = resolve_all(resolver, hook_request(sent))
    assert len(responses.calls) == 0 and "conditions" not in resolved.unavailable
    chart = read_chart(resolved, PATIENT)  # the one pass that reads the chart passes over them
    assert [(c.kind, c.resource_id) for c in chart.conditions] == [("calciphylaxis", "Condition/c1")]


@responses.activate
def test_a_bundle_of_only_informational_outcomes_is_an_empty_result(resolver):
    sent = {**full_prefetch(), "conditions": searchset(outcomes=[outcome("information")])}
    resolved = resolve_all(resolver, hook_request(sent))
    assert len(responses.calls) == 0 and "conditions" not in resolved.unavailable
    assert read_chart(resolved, PATIENT).conditions == ()


@pytest.mark.parametrize(
    "value",
    [
        outcome(),  # the EHR reports an error for this key
        searchset(outcomes=[outcome("error"), outcome("fatal")]),  # a search that only failed
        "Condition?patient=p1",  # a bare string (the spec's own example has one)
        [condition(1)],
        42,
        True,
        {"no": "resourceType"},
        PATIENT_RESOURCE,  # a resource of the wrong type for a search
        {"resourceType": "Bundle", "type": "transaction", "entry": []},
        {"resourceType": "Bundle", "type": "searchset", "entry": {"not": "a list"}},
    ],
    ids=[
        "outcome",
        "all-error-bundle",
        "string",
        "list",
        "number",
        "bool",
        "no-type",
        "wrong-type",
        "transaction-bundle",
        "entry-not-a-list",
    ],
)
@responses.activate
def test_errors_and_odd_prefetch_values_are_fetched_instead(resolver, value):
    serve_everything()
    sent = {**full_prefetch(), "conditions": value}
    resolved = resolve_all(resolver, hook_request(sent))
    assert paths_called() == ["Condition"]
    assert resolved.fetched == {"conditions"}
    assert [e["resource"]["id"] for e in resolved.data["conditions"]["entry"]] == ["c1"]


@responses.activate
def test_an_absent_key_in_a_prefetch_without_a_server_is_unavailable(resolver):
    sent = {k: v for k, v in full_prefetch().items() if k != "pth"}
    resolved = resolve_all(resolver, hook_request(sent, server=None))
    assert resolved.unavailable == {"pth": "no FHIR server given"}
    assert "pth" not in resolved.data


@responses.activate
def test_a_prefetch_error_without_a_server_says_both_things(resolver):
    sent = {**full_prefetch(), "pth": outcome()}
    resolved = resolve_all(resolver, hook_request(sent, server=None))
    assert resolved.unavailable == {"pth": "the EHR reported an error prefetching it; no FHIR server given"}


# --- fetching what is missing -----------------------------------------------------------------


@responses.activate
def test_absent_keys_are_fetched_from_the_trusted_server_with_the_token(resolver):
    serve_everything()
    resolved = resolve_all(resolver, hook_request())
    assert resolved.unavailable == {}
    assert resolved.fetched == set(PREFETCH_TEMPLATES)
    assert sorted(paths_called()) == sorted(
        ["Patient/p1", "Condition", "MedicationRequest", "MedicationStatement", "MedicationAdministration"]
        + ["AllergyIntolerance", "Procedure", "Procedure"]
        + ["Observation"] * len(LAB_KEYS)
    )
    for call in responses.calls:
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.request.headers["Accept"] == "application/fhir+json"
        query = parse_qs(urlsplit(call.request.url).query)
        assert query.get("patient", [PATIENT]) == [PATIENT]
    assert resolved.data["patient"] == PATIENT_RESOURCE


@responses.activate
def test_without_fhir_authorization_no_token_is_sent(resolver):
    serve_everything()
    resolved = resolve_all(resolver, hook_request(token=False))
    assert resolved.unavailable == {}
    assert responses.calls and all("Authorization" not in c.request.headers for c in responses.calls)


@responses.activate
def test_filled_lab_searches_carry_the_terminology_codes(resolver):
    serve_everything()
    resolver.resolve(hook_request(), {"pth": PREFETCH_KEYS["pth"]})
    query = parse_qs(urlsplit(responses.calls[0].request.url).query)
    assert {t.split("|")[1] for t in query["code"][0].split(",")} == set(LAB_LOINC["pth"])


@pytest.mark.parametrize(
    "mock, reason",
    [
        (dict(body=requests.exceptions.ConnectionError("refused")), "could not connect to FHIR server"),
        (dict(body=requests.exceptions.ReadTimeout("slow")), "timed out"),
        (dict(status=401), "FHIR server answered 401"),
        (dict(status=403), "FHIR server answered 403"),
        (dict(status=404), "FHIR server answered 404"),
        (dict(status=500), "FHIR server answered 500"),
        (dict(body="not json at all"), "FHIR server response was not JSON"),
        (dict(json=outcome()), "FHIR server reported an error"),
        (dict(json=searchset(outcomes=[outcome("fatal")])), "FHIR server reported an error"),
        (dict(json=PATIENT_RESOURCE), "FHIR server did not answer with search results"),
        (
            dict(json={"resourceType": "Bundle", "type": "history", "entry": []}),
            "FHIR server did not answer with search results",
        ),
        (dict(body=b'{"resourceType": "Bundle", "pad": "' + b"x" * 5000 + b'"}'), "FHIR response too large"),
        (
            dict(status=302, headers={"Location": "https://evil.example.com/Condition"}),
            "FHIR server redirected (not followed)",
        ),
    ],
)
@responses.activate
def test_each_fetch_failure_makes_only_that_key_unavailable_with_its_reason(mock, reason):
    resolver = PrefetchResolver(make_settings(fhir_max_response_bytes=4096))
    responses.get(f"{BASE}/Condition", **mock)
    sent = {k: v for k, v in full_prefetch().items() if k != "conditions"}
    resolved = resolve_all(resolver, hook_request(sent, hook="order-sign"))
    assert resolved.unavailable == {"conditions": reason}
    assert "conditions" not in resolved.data
    assert set(resolved.data) == set(PREFETCH_TEMPLATES) - {"conditions"}
    assert len(responses.calls) == 1


@responses.activate
def test_a_read_answered_with_another_resource_type_is_unavailable(resolver):
    responses.get(f"{BASE}/Patient/{PATIENT}", json=searchset())
    sent = {k: v for k, v in full_prefetch().items() if k != "patient"}
    resolved = resolve_all(resolver, hook_request(sent))
    assert resolved.unavailable == {"patient": "FHIR server sent Bundle, not Patient"}


@responses.activate
def test_an_untrusted_fhir_server_is_never_contacted_nor_sent_the_token():
    resolver = PrefetchResolver(make_settings(fhir_allowed_servers=["https://other.example.org/fhir"]))
    responses.get(re.compile(r".*"), json=searchset())
    resolved = resolve_all(resolver, hook_request(hook="order-sign"))
    assert len(responses.calls) == 0
    assert resolved.unavailable == dict.fromkeys(PREFETCH_TEMPLATES, "FHIR server not trusted")


@responses.activate
def test_with_the_default_settings_no_fhir_server_is_trusted():
    resolver = PrefetchResolver(Settings())
    responses.get(re.compile(r".*"), json=searchset())
    resolved = resolve_all(resolver, hook_request(hook="order-sign"))
    assert len(responses.calls) == 0
    assert set(resolved.unavailable.values()) == {"FHIR server not trusted"}


@responses.activate
def test_a_plain_http_fhir_server_is_refused_unless_on_loopback():
    resolver = PrefetchResolver(make_settings(fhir_allowed_servers=["fhir.example.org", "127.0.0.1"]))
    responses.get(re.compile(r".*"), json=searchset())
    templates = {"c": PrefetchKey("Condition?patient={{context.patientId}}", "conditions")}
    remote = resolver.resolve(hook_request(hook="order-sign", server="http://fhir.example.org/r4"), templates)
    assert remote.unavailable == {"c": "FHIR server not using https"}
    assert len(responses.calls) == 0
    local = resolver.resolve(hook_request(hook="order-sign", server="http://127.0.0.1:9/r4"), templates)
    assert local.unavailable == {} and len(responses.calls) == 1


def test_a_token_for_another_patient_is_refused_rather_than_mixing_patients(resolver):
    with pytest.raises(BadRequest) as caught:
        resolve_all(resolver, hook_request(full_prefetch(), auth_patient="someone-else"))
    assert http_status(caught.value) == 400
    assert "fhirAuthorization.patient" in caught.value.message and "someone-else" not in caught.value.message


@pytest.mark.parametrize("auth_patient", [PATIENT, f"Patient/{PATIENT}"])
def test_a_token_for_the_same_patient_is_accepted(resolver, auth_patient):
    resolved = resolve_all(resolver, hook_request(full_prefetch(), auth_patient=auth_patient))
    assert resolved.unavailable == {}


# --- pagination -------------------------------------------------------------------------------


@responses.activate
def test_a_paginated_prefetch_is_followed_on_the_trusted_server_with_the_token(resolver):
    responses.get(f"{BASE}", json=searchset(condition(2), condition(3)))
    sent = {**full_prefetch(), "conditions": searchset(condition(1), next_url=f"{BASE}?_getpages=abc&_offset=1")}
    resolved = resolve_all(resolver, hook_request(sent))
    assert [e["resource"]["id"] for e in resolved.data["conditions"]["entry"]] == ["c1", "c2", "c3"]
    assert "link" not in resolved.data["conditions"]
    assert len(responses.calls) == 1
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert resolved.incomplete == {} and resolved.fetched == {"conditions"}


@responses.activate
def test_a_paginated_fetch_is_followed_until_the_last_page(resolver):
    responses.get(f"{BASE}/Condition", json=searchset(condition(1), next_url=f"{BASE}?page=2"))
    responses.get(f"{BASE}", json=searchset(condition(2)))
    sent = {k: v for k, v in full_prefetch().items() if k != "conditions"}
    resolved = resolve_all(resolver, hook_request(sent))
    assert [e["resource"]["id"] for e in resolved.data["conditions"]["entry"]] == ["c1", "c2"]
    assert len(responses.calls) == 2 and resolved.incomplete == {}


@responses.activate
def test_paging_stops_at_the_page_cap_and_says_the_data_is_incomplete():
    resolver = PrefetchResolver(make_settings(fhir_max_pages=3))
    responses.get(f"{BASE}", json=searchset(condition(9), next_url=f"{BASE}?page=n"))  # endless
    sent = {**full_prefetch(), "conditions": searchset(condition(1), next_url=f"{BASE}?page=2")}
    resolved = resolve_all(resolver, hook_request(sent))
    assert len(responses.calls) == 2  # pages 2 and 3
    assert len(resolved.data["conditions"]["entry"]) == 3
    assert resolved.incomplete == {"conditions": "more than 3 pages; the rest not read"}


@responses.activate
def test_a_next_link_to_another_server_is_not_followed(resolver):
    responses.get(re.compile(r".*"), json=searchset(condition(2)))
    sent = {**full_prefetch(), "conditions": searchset(condition(1), next_url="https://evil.example.com/r4?page=2")}
    resolved = resolve_all(resolver, hook_request(sent))
    assert len(responses.calls) == 0
    assert [e["resource"]["id"] for e in resolved.data["conditions"]["entry"]] == ["c1"]
    assert resolved.incomplete == {"conditions": "next page is on another server; not read"}


@responses.activate
def test_a_paginated_prefetch_with_an_untrusted_server_keeps_its_first_page():
    resolver = PrefetchResolver(make_settings(fhir_allowed_servers=[]))
    sent = {**full_prefetch(), "conditions": searchset(condition(1), next_url=f"{BASE}?page=2")}
    resolved = resolve_all(resolver, hook_request(sent))
    assert len(responses.calls) == 0
    assert [e["resource"]["id"] for e in resolved.data["conditions"]["entry"]] == ["c1"]
    assert resolved.incomplete == {"conditions": "later pages not read (FHIR server not trusted)"}


@responses.activate
def test_a_failing_later_page_keeps_what_was_read_and_says_so(resolver):
    responses.get(f"{BASE}", status=503)
    sent = {**full_prefetch(), "conditions": searchset(condition(1), next_url=f"{BASE}?page=2")}
    resolved = resolve_all(resolver, hook_request(sent))
    assert [e["resource"]["id"] for e in resolved.data["conditions"]["entry"]] == ["c1"]
    assert resolved.incomplete == {"conditions": "later pages not read (FHIR server answered 503)"}


@responses.activate
def test_a_newest_n_lab_search_does_not_page_once_it_has_n_results(resolver):
    wanted = PREFETCH_KEYS["pth"].newest
    responses.get(f"{BASE}", json=searchset(observation("older")))
    full_page = searchset(*(observation(i) for i in range(wanted)), next_url=f"{BASE}?page=2")
    short_page = searchset(observation("only"), next_url=f"{BASE}?page=2")
    resolved = resolve_all(resolver, hook_request({**full_prefetch(), "pth": full_page}))
    assert len(responses.calls) == 0 and len(resolved.data["pth"]["entry"]) == wanted
    resolved = resolve_all(resolver, hook_request({**full_prefetch(), "pth": short_page}))
    assert len(responses.calls) == 1 and len(resolved.data["pth"]["entry"]) == 2


# --- referenced Medications -------------------------------------------------------------------


@responses.activate
def test_referenced_medications_missing_from_the_bundle_are_read_and_included(resolver):
    warfarin = {"resourceType": "Medication", "id": "warf", "code": {"text": "warfarin"}}
    responses.get(f"{BASE}/Medication/warf", json=warfarin)
    meds = searchset(
        med_request(1, medicationReference={"reference": "Medication/warf"}),
        med_request(2, medicationReference={"reference": "Medication/warf"}),  # read once
        med_request(3, medicationReference={"reference": "#contained"}),
        med_request(4, medication={"reference": {"reference": f"{BASE}/Medication/warf/_history/2"}}),  # R5
    )
    resolved = resolve_all(resolver, hook_request({**full_prefetch(), "meds": meds}))
    assert paths_called() == ["Medication/warf"]
    entries = resolved.data["meds"]["entry"]
    assert entries[-1] == {"fullUrl": f"{BASE}/Medication/warf", "resource": warfarin, "search": {"mode": "include"}}
    assert len(entries) == 5
    assert resolved.incomplete == {} and resolved.fetched == {"meds"}
    assert "entry" in meds and len(meds["entry"]) == 4  # the request's own data is not modified


@responses.activate
def test_medications_already_in_the_bundle_are_not_read_again(resolver):
    meds = searchset(
        med_request(1, medicationReference={"reference": "Medication/a"}),
        med_request(2, medicationReference={"reference": "urn:uuid:b"}),
        {"resourceType": "Medication", "id": "a"},
    )
    meds["entry"].append({"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Medication", "id": "b"}})
    resolved = resolve_all(resolver, hook_request({**full_prefetch(), "meds": meds}))
    assert len(responses.calls) == 0 and resolved.incomplete == {}


@responses.activate
def test_medications_that_cannot_be_read_leave_the_list_marked_incomplete(resolver):
    responses.get(f"{BASE}/Medication/gone", status=404)
    meds = searchset(
        med_request(1, medicationReference={"reference": "Medication/gone"}),
        med_request(2, medicationReference={"reference": "https://elsewhere.example.com/fhir/Medication/x"}),
    )
    resolved = resolve_all(resolver, hook_request({**full_prefetch(), "meds": meds}))
    assert paths_called() == ["Medication/gone"]  # never the other server
    assert len(resolved.data["meds"]["entry"]) == 2
    assert resolved.incomplete == {"meds": "2 referenced Medication(s) not read (FHIR server answered 404)"}


@responses.activate
def test_referenced_medications_without_a_usable_server_are_reported():
    resolver = PrefetchResolver(make_settings(fhir_allowed_servers=[]))
    meds = searchset(med_request(1, medicationReference={"reference": "Medication/a"}))
    resolved = resolve_all(resolver, hook_request({**full_prefetch(), "meds": meds}))
    assert len(responses.calls) == 0
    assert resolved.incomplete == {"meds": "1 referenced Medication(s) not read (FHIR server not trusted)"}


# --- logging ----------------------------------------------------------------------------------


@responses.activate
def test_the_token_and_the_query_never_reach_the_log(resolver, caplog):
    serve_everything()
    responses.replace(responses.GET, f"{BASE}/Condition", status=403)
    caplog.set_level(logging.DEBUG)
    resolve_all(resolver, hook_request(hook="order-sign"))
    assert caplog.records
    for record in caplog.records:
        text = json.dumps(vars(record), default=str)
        assert TOKEN not in text
        assert "patient=" not in text


# --- through the app: 412 for required data, never a 500 ---------------------------------------


def draft_orders() -> dict:
    return {
        "selections": ["MedicationRequest/d1"],
        "draftOrders": {
            "resourceType": "Bundle",
            "entry": [
                {
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "id": "d1",
                        "status": "draft",
                        "intent": "order",
                        "subject": {"reference": f"Patient/{PATIENT}"},
                        "medicationCodeableConcept": {
                            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197433"}]
                        },
                    }
                }
            ],
        },
    }


def app_client(tmp_path, **overrides):
    app = create_app(make_settings(tmp_path, **overrides), now=lambda: FROZEN_NOW)
    return app.test_client()


def body_of(request: CDSRequest) -> dict:
    return request.model_dump(mode="json", exclude_none=True)


@responses.activate
def test_patient_view_without_conditions_and_medications_is_412_naming_the_data(tmp_path):
    client = app_client(tmp_path, fhir_allowed_servers=[])
    responses.get(re.compile(r".*"), json=searchset())
    response = client.post("/cds-services/calciphylaxis-patient-view", json=body_of(hook_request()))
    assert response.status_code == 412
    assert len(responses.calls) == 0
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "incomplete"
    message = body["issue"][0]["diagnostics"]
    assert "conditions (FHIR server not trusted)" in message
    assert "meds (FHIR server not trusted)" in message
    assert TOKEN not in response.get_data(as_text=True) and BASE not in message


@responses.activate
def test_patient_view_is_412_when_the_server_refuses_required_data(tmp_path):
    client = app_client(tmp_path)
    serve_everything()
    responses.replace(responses.GET, f"{BASE}/MedicationRequest", status=403)
    response = client.post("/cds-services/calciphylaxis-patient-view", json=body_of(hook_request()))
    assert response.status_code == 412
    message = response.get_json()["issue"][0]["diagnostics"]
    assert "meds (FHIR server answered 403)" in message and "conditions" not in message.split("Not obtained")[1]


@responses.activate
def test_patient_view_proceeds_when_only_optional_data_is_missing(tmp_path):
    client = app_client(tmp_path)
    serve_everything()
    for lab in ("Observation",):
        responses.replace(responses.GET, f"{BASE}/{lab}", status=500)
    responses.replace(responses.GET, f"{BASE}/Patient/{PATIENT}", status=404)
    response = client.post("/cds-services/calciphylaxis-patient-view", json=body_of(hook_request()))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
@responses.activate
def test_order_hooks_proceed_without_any_fhir_data(tmp_path, hook):
    client = app_client(tmp_path, fhir_allowed_servers=[])
    request = hook_request(hook=hook, **draft_orders())
    response = client.post(f"/cds-services/calciphylaxis-{hook}", json=body_of(request))
    assert response.status_code == 200, response.get_json()
    assert len(responses.calls) == 0


def test_a_token_for_another_patient_is_400_through_the_app(tmp_path):
    client = app_client(tmp_path)
    request = hook_request(full_prefetch(), auth_patient="other")
    response = client.post("/cds-services/calciphylaxis-patient-view", json=body_of(request))
    assert response.status_code == 400
    assert "fhirAuthorization.patient" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "mock",
    [
        dict(body=requests.exceptions.ConnectionError("refused")),
        dict(body=requests.exceptions.ReadTimeout("slow")),
        dict(status=401),
        dict(status=403),
        dict(status=404),
        dict(status=500),
        dict(body="<html/>"),
        dict(json=["x"]),
        dict(json=outcome()),
        dict(json={"resourceType": "Bundle", "type": "batch-response"}),
        dict(json={"resourceType": "Bundle", "type": "searchset", "entry": [1, "x", {"resource": []}]}),
        dict(json={"resourceType": "Bundle", "type": "searchset", "link": "next"}),
        dict(json={"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": 5}]}),
        dict(status=301, headers={"Location": "https://evil.example.com/"}),
    ],
)
@pytest.mark.parametrize("hook", ["patient-view", "order-sign"])
@responses.activate
def test_no_fhir_failure_ever_produces_a_500(tmp_path, hook, mock):
    client = app_client(tmp_path)
    responses.get(re.compile(rf"{re.escape(BASE)}/.*"), **mock)
    request = hook_request(hook=hook, **(draft_orders() if hook != "patient-view" else {}))
    response = client.post(f"/cds-services/calciphylaxis-{hook}", json=body_of(request))
    assert response.status_code in (200, 412), response.get_json()
    assert response.is_json


def test_required_keys_raise_precondition_failed_from_the_resolver(resolver):
    request = hook_request({"conditions": None}, server=None)
    with pytest.raises(DataUnavailable) as caught:
        resolve_all(resolver, request)
    assert http_status(caught.value) == 412
    assert "meds (no FHIR server given)" in caught.value.message
    assert "conditions" not in caught.value.message.split("Not obtained")[1]


# --- the token never leaves the trusted base path -----------------------------------------------

ESCAPES = [p for p in NOT_NORMAL_PATHS if p.startswith("/r4")]


@pytest.mark.parametrize("path", ESCAPES)
@responses.activate
def test_a_fhir_server_address_that_could_climb_out_of_the_trusted_path_is_never_contacted(resolver, path):
    responses.get(re.compile(r".*"), json=searchset())
    resolved = resolve_all(resolver, hook_request(hook="order-sign", server=f"https://fhir.example.org{path}"))
    assert len(responses.calls) == 0
    assert resolved.unavailable == dict.fromkeys(PREFETCH_TEMPLATES, "FHIR server address not usable")


@pytest.mark.parametrize("path", ESCAPES)
@responses.activate
def test_a_next_link_that_could_climb_out_of_the_trusted_path_is_not_followed(resolver, path):
    responses.get(re.compile(r".*"), json=searchset(condition(2)))
    next_url = f"https://fhir.example.org{path}?page=2"
    sent = {**full_prefetch(), "conditions": searchset(condition(1), next_url=next_url)}
    resolved = resolve_all(resolver, hook_request(sent))
    assert len(responses.calls) == 0
    assert [e["resource"]["id"] for e in resolved.data["conditions"]["entry"]] == ["c1"]
    assert resolved.incomplete == {"conditions": "next page address not usable; not read"}


@responses.activate
def test_a_next_link_of_a_fetched_page_that_climbs_out_is_not_followed(resolver):
    responses.get(f"{BASE}/Condition", json=searchset(condition(1), next_url=f"{BASE}/%2e%2e/admin?page=2"))
    responses.get(re.compile(r"https://fhir\.example\.org/(admin|r4/\.\.|r4/%2e).*"), json=searchset(condition(2)))
    sent = {k: v for k, v in full_prefetch().items() if k != "conditions"}
    resolved = resolve_all(resolver, hook_request(sent))
    assert paths_called() == ["Condition"]
    assert resolved.incomplete == {"conditions": "next page address not usable; not read"}


@pytest.mark.parametrize("path", ESCAPES)
@responses.activate
def test_an_absolute_medication_reference_that_could_climb_out_of_the_trusted_path_is_not_read(resolver, path):
    responses.get(re.compile(r".*"), json={"resourceType": "Medication", "id": "x"})
    ref = f"https://fhir.example.org{path}/Medication/x"
    meds = searchset(med_request(1, medicationReference={"reference": ref}))
    resolved = resolve_all(resolver, hook_request({**full_prefetch(), "meds": meds}))
    assert len(responses.calls) == 0
    assert resolved.incomplete == {"meds": "1 referenced Medication(s) not read (not on the trusted server)"}


@pytest.mark.parametrize("patient_id", [".", ".."])
@responses.activate
def test_a_context_id_that_is_a_dot_segment_is_never_put_in_a_path(resolver, patient_id):
    serve_everything()
    responses.get(re.compile(r".*"), json=searchset())
    request = hook_request(hook="order-sign", patientId=patient_id)
    resolved = resolve_all(resolver, request)
    assert resolved.unavailable["patient"] == "request has an id that cannot be used in a FHIR address"
    assert all(urlsplit(call.request.url).path.startswith("/r4/") for call in responses.calls)
    assert all(".." not in urlsplit(call.request.url).path for call in responses.calls)


@responses.activate
def test_a_medication_reference_whose_id_is_a_dot_segment_is_not_read(resolver):
    meds = searchset(med_request(1, medicationReference={"reference": "Medication/.."}))
    resolved = resolve_all(resolver, hook_request({**full_prefetch(), "meds": meds}))
    assert len(responses.calls) == 0
    assert resolved.incomplete == {"meds": "1 referenced Medication(s) not read (not on the trusted server)"}


# --- circuit breaker: fail fast, and say so on the cards ---------------------------------------

CIRCUIT_OPEN = "FHIR server unavailable (circuit open after repeated connection failures; retrying after 30 s)"


def app_with_breaker(tmp_path, threshold: int):
    settings = make_settings(tmp_path)
    client = FhirClient(connect_timeout=5.0, read_timeout=5.0, max_response_bytes=1 << 20, breaker_threshold=threshold)
    app = create_app(settings, resolver=PrefetchResolver(settings, client=client), now=lambda: FROZEN_NOW)
    return app.test_client()


@responses.activate
def test_once_the_circuit_opens_patient_view_fails_fast_and_the_412_names_the_open_circuit(tmp_path):
    client = app_with_breaker(tmp_path, threshold=3)
    responses.get(re.compile(r".*"), body=requests.exceptions.ConnectionError("refused"))
    first = client.post("/cds-services/calciphylaxis-patient-view", json=body_of(hook_request()))
    assert first.status_code == 412
    assert "conditions (could not connect to FHIR server)" in first.get_json()["issue"][0]["diagnostics"]
    contacted = len(responses.calls)

    second = client.post("/cds-services/calciphylaxis-patient-view", json=body_of(hook_request()))
    assert second.status_code == 412
    assert f"conditions ({CIRCUIT_OPEN})" in second.get_json()["issue"][0]["diagnostics"]
    assert len(responses.calls) == contacted  # not contacted again


@responses.activate
def test_an_order_hook_with_an_open_circuit_answers_with_cards_that_give_the_reason(tmp_path):
    client = app_with_breaker(tmp_path, threshold=1)
    responses.get(re.compile(r".*"), body=requests.exceptions.ConnectionError("refused"))
    request = body_of(hook_request(hook="order-sign", **draft_orders()))
    client.post("/cds-services/calciphylaxis-order-sign", json=request)
    response = client.post("/cds-services/calciphylaxis-order-sign", json=request)
    assert response.status_code == 200
    assert CIRCUIT_OPEN in response.get_data(as_text=True)
