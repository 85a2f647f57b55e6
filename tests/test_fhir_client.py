"""The FHIR client: which servers may be contacted, and how each way a GET can fail is reported."""

from __future__ import annotations

import re
import time

import pytest
import requests
import responses

from cds_service.fhir.breaker import ServerGuards
from cds_service.fhir.client import (
    FhirClient,
    FhirFetchError,
    is_loopback_host,
    is_normal_path,
    is_under_base,
    server_problem,
)

BASE = "https://fhir.example.org/r4"
TOKEN = "secret-access-token-123"


def client(**overrides) -> FhirClient:
    options = dict(connect_timeout=0.5, read_timeout=0.5, max_response_bytes=4096)
    options.update(overrides)
    return FhirClient(**options)


def far_deadline() -> float:
    return time.monotonic() + 30


# --- trusted servers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://fhir.example.org/r4", ["https://fhir.example.org/r4"]),
        ("https://fhir.example.org/r4/", ["https://fhir.example.org/r4"]),
        ("https://FHIR.example.org/r4", ["https://fhir.example.org/r4/"]),
        ("https://fhir.example.org:443/r4/tenant-a", ["https://fhir.example.org/r4"]),
        ("https://fhir.example.org/r4", ["fhir.example.org"]),
        ("https://fhir.example.org:8443/r4", ["fhir.example.org:8443"]),
        ("https://a.fhir.example.org/r4", ["*.example.org"]),
        ("http://127.0.0.1:8081", ["127.0.0.1:8081"]),
        ("http://localhost:8081/fhir", ["http://localhost:8081/fhir"]),
        ("http://[::1]:8081/fhir", ["[::1]:8081"]),
    ],
)
def test_allowed_servers_match_base_urls_and_host_patterns(url, allowed):
    assert server_problem(url, allowed, allow_http=False) is None


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://fhir.example.org/r4", []),  # the default trusts nothing
        ("https://evil.example.com/r4", ["https://fhir.example.org/r4"]),
        ("https://fhir.example.org.evil.com/r4", ["fhir.example.org"]),
        ("https://fhir.example.org/r4x", ["https://fhir.example.org/r4"]),  # not below the base path
        ("https://fhir.example.org/other", ["https://fhir.example.org/r4"]),
        ("http://fhir.example.org/r4", ["https://fhir.example.org/r4"]),  # scheme is part of a base URL
        ("https://fhir.example.org:8443/r4", ["https://fhir.example.org/r4"]),  # so is the port
        ("https://fhir.example.org:8443/r4", ["fhir.example.org:443"]),
        ("https://example.org/r4", ["*.example.org"]),  # a wildcard means subdomains only
        ("https://badexample.org/r4", ["*.example.org"]),
    ],
)
def test_servers_not_on_the_allow_list_are_not_trusted(url, allowed):
    assert server_problem(url, allowed, allow_http=False) == "FHIR server not trusted"


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw@fhir.example.org/r4",  # credentials in the URL could fool host matching
        "https://fhir.example.org/r4?x=1",
        "https://fhir.example.org/r4#frag",
        "ftp://fhir.example.org/r4",
        "https://fhir.example.org:99999/r4",
        "not a url",
    ],
)
def test_odd_fhir_server_addresses_are_refused(url):
    assert server_problem(url, ["fhir.example.org"], allow_http=True) == "FHIR server address not usable"


def test_plain_http_is_refused_unless_loopback_or_explicitly_allowed():
    allowed = ["fhir.internal", "127.0.0.1"]
    assert server_problem("http://fhir.internal/r4", allowed, allow_http=False) == "FHIR server not using https"
    assert server_problem("http://fhir.internal/r4", allowed, allow_http=True) is None
    assert server_problem("http://127.0.0.1/r4", allowed, allow_http=False) is None


@pytest.mark.parametrize(
    "host, expected",
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.5.0.1", True),
        ("[::1]", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("localhost.example.org", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_hosts(host, expected):
    assert is_loopback_host(host) is expected


def test_only_urls_on_the_same_server_and_below_the_base_count_as_under_it():
    assert is_under_base(f"{BASE}?_getpages=abc", BASE)
    assert is_under_base(f"{BASE}/Condition?_offset=10", BASE)
    assert is_under_base("https://FHIR.example.org:443/r4/Medication/1", BASE)
    assert not is_under_base("https://evil.example.com/r4/Condition", BASE)
    assert not is_under_base("http://fhir.example.org/r4/Condition", BASE)
    assert not is_under_base("https://fhir.example.org/r5/Condition", BASE)
    assert not is_under_base("https://user@fhir.example.org/r4/Condition", BASE)
    assert not is_under_base("/r4/Condition", BASE)


# --- one GET ----------------------------------------------------------------------------------


@responses.activate
def test_a_fhir_resource_is_returned_with_the_token_and_fhir_accept_header():
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    data = client().get_json(f"{BASE}/Patient/p1", token=TOKEN, deadline=far_deadline())
    assert data == {"resourceType": "Patient", "id": "p1"}
    sent = responses.calls[0].request.headers
    assert sent["Authorization"] == f"Bearer {TOKEN}"
    assert sent["Accept"] == "application/fhir+json"


@responses.activate
def test_no_authorization_header_is_sent_without_a_token():
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    client().get_json(f"{BASE}/Patient/p1", token=None, deadline=far_deadline())
    assert "Authorization" not in responses.calls[0].request.headers


@pytest.mark.parametrize(
    "mock, reason",
    [
        (dict(body=requests.exceptions.ConnectionError("refused")), "could not connect to FHIR server"),
        (dict(body=requests.exceptions.ConnectTimeout("slow")), "timed out"),
        (dict(body=requests.exceptions.ReadTimeout("slow")), "timed out"),
        (dict(status=401, json={"resourceType": "OperationOutcome"}), "FHIR server answered 401"),
        (dict(status=403), "FHIR server answered 403"),
        (dict(status=404), "FHIR server answered 404"),
        (dict(status=500, body="<html>oops</html>"), "FHIR server answered 500"),
        (dict(status=503), "FHIR server answered 503"),
        (dict(body="<html>login page</html>", content_type="text/html"), "FHIR server response was not JSON"),
        (dict(json=[1, 2]), "FHIR server response was not a FHIR resource"),
        (dict(json={"id": "no-type"}), "FHIR server response was not a FHIR resource"),
        (
            dict(status=302, headers={"Location": "https://evil.example.com/steal"}),
            "FHIR server redirected (not followed)",
        ),
        (dict(status=307, headers={"Location": f"{BASE}/Patient/p2"}), "FHIR server redirected (not followed)"),
    ],
)
@responses.activate
def test_each_failure_becomes_a_short_reason_without_the_url_or_token(mock, reason):
    responses.get(f"{BASE}/Patient/p1", **mock)
    with pytest.raises(FhirFetchError) as caught:
        client().get_json(f"{BASE}/Patient/p1", token=TOKEN, deadline=far_deadline())
    assert caught.value.reason == reason
    assert TOKEN not in str(caught.value) and "example" not in str(caught.value)
    assert len(responses.calls) == 1  # a redirect is never followed


@responses.activate
def test_a_response_larger_than_the_cap_is_abandoned_while_streaming():
    big = b'{"resourceType": "Bundle", "entry": [' + b'{"x": 1},' * 1000 + b"{}]}"
    responses.get(f"{BASE}/Condition", body=big, content_type="application/fhir+json")
    with pytest.raises(FhirFetchError, match="FHIR response too large"):
        client(max_response_bytes=4096).get_json(f"{BASE}/Condition", token=None, deadline=far_deadline())


@responses.activate
def test_a_declared_content_length_over_the_cap_is_refused_before_reading():
    responses.get(
        f"{BASE}/Condition",
        body=b'{"resourceType": "Bundle"}',
        headers={"Content-Length": str(10**9)},
        auto_calculate_content_length=False,
    )
    with pytest.raises(FhirFetchError, match="FHIR response too large"):
        client().get_json(f"{BASE}/Condition", token=None, deadline=far_deadline())


@responses.activate
def test_a_response_just_under_the_cap_is_read():
    padding = " " * (4096 - 40)
    body = ('{"resourceType": "Bundle"' + padding + "}").encode()
    assert len(body) <= 4096
    responses.get(f"{BASE}/Condition", body=body)
    assert client().get_json(f"{BASE}/Condition", token=None, deadline=far_deadline())["resourceType"] == "Bundle"


@responses.activate
def test_no_call_is_made_once_the_deadline_has_passed():
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient"})
    with pytest.raises(FhirFetchError, match="timed out"):
        client().get_json(f"{BASE}/Patient/p1", token=TOKEN, deadline=time.monotonic() - 1)
    assert len(responses.calls) == 0


@responses.activate
def test_cookies_set_by_a_fhir_server_are_not_sent_back():
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient"}, headers={"Set-Cookie": "session=abc; Path=/"})
    fhir = client()
    fhir.get_json(f"{BASE}/Patient/p1", token=None, deadline=far_deadline())
    fhir.get_json(f"{BASE}/Patient/p1", token=None, deadline=far_deadline())
    assert "Cookie" not in responses.calls[1].request.headers


def test_environment_proxies_and_netrc_are_ignored():
    assert client().session.trust_env is False


# --- paths: the token never leaves the trusted base path --------------------------------------

# Every spelling of a path that a client or server could read as somewhere else than it looks.
NOT_NORMAL_PATHS = [
    "/r4/../admin",
    "/r4/%2e%2e/admin",
    "/r4/%2E%2E/admin",
    "/r4/.%2e/admin",
    "/r4/%2E./admin",
    "/r4/Patient/..",
    "/r4/./Patient",
    "/r4/%2e/Patient",
    "/r4//Patient",
    "/r4/Patient//p1",
    "/r4\\..\\admin",
    "/r4/..\\admin",
    "/r4/..%2fadmin",
    "/r4/..%2Fadmin",
    "/r4/%2F..%2Fadmin",
    "/r4/..%5cadmin",
    "/r4/..;/admin",
    "/r4/%252e%252e/admin",
    "/r4/%41dmin",  # an escaped unreserved character: requests would decode it
    "/r4/Patient/p%",
    "/r4/Patient/p%zz",
    "/r4/Patient/a b",
    "/r4/Patient/é",
    "/r4/%00/admin",
]


@pytest.mark.parametrize("path", NOT_NORMAL_PATHS)
def test_paths_not_in_normal_form_are_refused_as_fhir_servers_and_never_count_as_under_the_base(path):
    url = f"https://fhir.example.org{path}"
    assert server_problem(url, [BASE], allow_http=False) == "FHIR server address not usable"
    assert server_problem(url, ["fhir.example.org"], allow_http=False) == "FHIR server address not usable"
    assert not is_under_base(f"{url}?page=2", BASE)
    assert not is_under_base(url, BASE)
    assert not is_normal_path(path)


@pytest.mark.parametrize("path", ["", "/", "/r4", "/r4/", "/r4/Patient/p-1.a_b~c", "/r4/Observation/x:y@z", "/r4/%20"])
def test_paths_in_normal_form_are_accepted(path):
    assert is_normal_path(path)


def test_an_allow_list_base_url_that_is_not_normal_matches_nothing():
    assert server_problem(f"{BASE}/x", ["https://fhir.example.org/r4/../r4"], allow_http=False) == (
        "FHIR server not trusted"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.com\\.example.org/r4",  # read as evil.com by some parsers
        "https://fhir.example.org%2F@evil.com/r4",
        "https://fhir.example.org%2eevil.com/r4",
    ],
)
def test_host_names_with_characters_parsers_disagree_on_are_refused(url):
    assert server_problem(url, ["*.example.org", "fhir.example.org"], allow_http=False) in (
        "FHIR server address not usable",
        "FHIR server not trusted",
    )
    assert not is_under_base(f"{url}/Condition", "https://evil.com\\.example.org/r4")


@pytest.mark.parametrize("path", ["/r4/%2e%2e/admin/Patient/p1", "/r4/Patient/..", "/r4//Patient/p1"])
@responses.activate
def test_the_client_never_sends_a_token_to_a_path_not_in_normal_form(path):
    responses.get(re.compile(r".*"), json={"resourceType": "Patient"})
    with pytest.raises(FhirFetchError) as caught:
        client().get_json(f"https://fhir.example.org{path}", token=TOKEN, deadline=far_deadline())
    assert caught.value.reason == "FHIR address not usable"
    assert len(responses.calls) == 0


# --- circuit breaker per server origin ----------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guarded_client(clock: FakeClock, threshold: int = 3, cooldown: float = 30.0) -> FhirClient:
    guards = ServerGuards(concurrency=4, failure_threshold=threshold, cooldown=cooldown, clock=clock)
    return client(guards=guards)


def reason_of(fhir: FhirClient, url: str) -> str:
    with pytest.raises(FhirFetchError) as caught:
        fhir.get_json(url, token=TOKEN, deadline=far_deadline())
    return caught.value.reason


OPEN_AFTER_CONNECTION_FAILURES = (
    "FHIR server unavailable (circuit open after repeated connection failures; retrying after 30 s)"
)
OPEN_AFTER_TIMEOUTS = "FHIR server unavailable (circuit open after repeated timeouts; retrying after 30 s)"


@responses.activate
def test_after_consecutive_connection_failures_the_circuit_opens_and_calls_fail_fast_without_a_request():
    clock = FakeClock()
    fhir = guarded_client(clock)
    responses.get(f"{BASE}/Patient/p1", body=requests.exceptions.ConnectionError("refused"))
    assert [reason_of(fhir, f"{BASE}/Patient/p1") for _ in range(3)] == ["could not connect to FHIR server"] * 3
    assert reason_of(fhir, f"{BASE}/Patient/p1") == OPEN_AFTER_CONNECTION_FAILURES
    assert reason_of(fhir, f"{BASE}/Condition?patient=p1") == OPEN_AFTER_CONNECTION_FAILURES
    assert len(responses.calls) == 3


@responses.activate
def test_the_circuit_reason_names_timeouts_and_is_safe_to_show():
    fhir = guarded_client(FakeClock())
    responses.get(f"{BASE}/Patient/p1", body=requests.exceptions.ReadTimeout("slow"))
    for _ in range(3):
        reason_of(fhir, f"{BASE}/Patient/p1")
    reason = reason_of(fhir, f"{BASE}/Patient/p1")
    assert reason == OPEN_AFTER_TIMEOUTS
    assert "example" not in reason and TOKEN not in reason


@responses.activate
def test_an_open_circuit_for_one_server_does_not_affect_another():
    fhir = guarded_client(FakeClock())
    other = "https://other.example.org/r4"
    responses.get(f"{BASE}/Patient/p1", body=requests.exceptions.ConnectionError("refused"))
    responses.get(f"{other}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    for _ in range(4):
        reason_of(fhir, f"{BASE}/Patient/p1")
    assert fhir.get_json(f"{other}/Patient/p1", token=TOKEN, deadline=far_deadline())["id"] == "p1"


@responses.activate
def test_any_answer_from_the_server_resets_the_count_of_failures():
    fhir = guarded_client(FakeClock())
    url = f"{BASE}/Patient/p1"
    refused = dict(body=requests.exceptions.ConnectionError("refused"))
    responses.get(url, **refused)
    for outcome in (refused, refused, dict(status=500), refused, refused):
        responses.replace(responses.GET, url, **outcome)
        reason_of(fhir, url)
    responses.replace(responses.GET, url, json={"resourceType": "Patient"})
    assert fhir.get_json(url, token=TOKEN, deadline=far_deadline()) == {"resourceType": "Patient"}
    assert len(responses.calls) == 6


@responses.activate
def test_after_the_cool_down_one_trial_call_goes_through_and_closes_the_circuit_on_an_answer():
    clock = FakeClock()
    fhir = guarded_client(clock)
    url = f"{BASE}/Patient/p1"
    responses.get(url, body=requests.exceptions.ConnectionError("refused"))
    for _ in range(3):
        reason_of(fhir, url)
    clock.now += 29.9
    assert reason_of(fhir, url) == OPEN_AFTER_CONNECTION_FAILURES
    assert len(responses.calls) == 3

    clock.now += 0.2  # cool-down over: a trial that fails opens the circuit for another cool-down
    assert reason_of(fhir, url) == "could not connect to FHIR server"
    assert reason_of(fhir, url) == OPEN_AFTER_CONNECTION_FAILURES
    assert len(responses.calls) == 4

    clock.now += 30.1  # a trial that gets an answer closes it
    responses.replace(responses.GET, url, json={"resourceType": "Patient"})
    assert fhir.get_json(url, token=TOKEN, deadline=far_deadline()) == {"resourceType": "Patient"}
    assert fhir.get_json(url, token=TOKEN, deadline=far_deadline()) == {"resourceType": "Patient"}
    assert len(responses.calls) == 6


@responses.activate
def test_calls_that_never_reach_the_server_do_not_count_towards_the_circuit():
    fhir = guarded_client(FakeClock(), threshold=1)
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient"})
    with pytest.raises(FhirFetchError, match="timed out"):
        fhir.get_json(f"{BASE}/Patient/p1", token=TOKEN, deadline=time.monotonic() - 1)
    assert fhir.get_json(f"{BASE}/Patient/p1", token=TOKEN, deadline=far_deadline()) == {"resourceType": "Patient"}
