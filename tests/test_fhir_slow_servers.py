"""A hostile FHIR server over real loopback HTTP: one that answers a byte at a time.

Per-read timeouts never fire against it, so these prove the total-time bound (each GET ends by the
hook call's deadline, socket and all), the per-server concurrency cap, and that one bad server
does not starve hook calls to another server or calls that need no fetching at all.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter

import pytest

from cds_service.config import Settings
from cds_service.fhir.breaker import BUSY_REASON
from cds_service.fhir.client import DEFAULT_SERVER_CONCURRENCY, FhirClient, FhirFetchError
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.http.app import create_app
from cds_service.protocol import CDSRequest
from cds_service.services import PREFETCH_KEYS
from tests.conftest import FROZEN_NOW
from tests.fhir_server import DripServer, FhirTestServer
from tests.test_fhir_integration import (
    PATIENT_VIEW,
    TOKEN,
    cards_of,
    full_prefetch,
    hook_call,
    patient_resources,
)

DEADLINE = 0.3


def wait_until(condition, timeout: float = 1.0) -> bool:
    """Poll ``condition`` every 10 ms for at most ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("headers_too", [False, True], ids=["body-drips", "headers-drip"])
def test_a_server_answering_a_byte_every_100_ms_cannot_keep_a_call_past_its_deadline(headers_too):
    client = FhirClient(connect_timeout=0.1, read_timeout=0.25, max_response_bytes=1 << 20)
    with DripServer(interval=0.1, headers_too=headers_too) as slow:
        started = time.monotonic()
        with pytest.raises(FhirFetchError) as caught:
            client.get_json(f"{slow.base_url}/Condition?patient=p1", token=TOKEN, deadline=started + DEADLINE)
        elapsed = time.monotonic() - started
        # The server notices the closed socket at its next byte (every 0.1 s).
        assert wait_until(lambda: slow.open_now() == 0)
        (connection,) = slow.seen()
    client.close()
    assert caught.value.reason == "timed out"
    assert elapsed < DEADLINE + 0.1
    assert connection.ended_by == "client"  # the socket itself was closed, not merely abandoned
    assert connection.closed - connection.opened < DEADLINE + 0.2


def test_one_server_never_gets_more_than_its_concurrency_cap_and_calls_beyond_it_fail_as_busy(tmp_path):
    with DripServer(interval=0.05) as slow:
        settings = Settings(
            feedback_db=tmp_path / "feedback.sqlite3",
            fhir_allowed_servers=[slow.base_url],
            fhir_deadline=DEADLINE,
            fhir_workers=8,
        )
        client = FhirClient(
            connect_timeout=0.1,
            read_timeout=0.25,
            max_response_bytes=1 << 20,
            pool_size=8,
            server_concurrency=2,
            breaker_threshold=1000,
        )
        resolver = PrefetchResolver(settings, client=client)
        request = CDSRequest.model_validate({**hook_call(slow), "hook": "order-sign"})
        started = time.monotonic()
        resolved = resolver.resolve(request, PREFETCH_KEYS)
        elapsed = time.monotonic() - started
        assert wait_until(lambda: slow.open_now() == 0)
        guard = client.guards.for_url(slow.base_url)
        assert wait_until(lambda: guard.in_use == 0), "a slot was not given back"
        resolver.close()
        seen = slow.seen()
    reasons = Counter(resolved.unavailable.values())
    assert set(reasons) <= {"timed out", BUSY_REASON} and reasons[BUSY_REASON] >= 6, reasons
    assert len(seen) == 2 and slow.most_open_at_once() <= 2
    assert all(c.ended_by == "client" for c in seen)
    assert elapsed < DEADLINE + 0.1


def test_a_dripping_server_starves_neither_calls_to_another_server_nor_calls_with_full_prefetch(tmp_path):
    """Default worker pool and cap: enough no-prefetch patient-view calls to the dripping server
    to want more GETs than the 16 fetch threads; calls to a healthy server and a call that needs
    nothing fetched must still get their normal answer while those are in flight."""
    cap = DEFAULT_SERVER_CONCURRENCY
    slow_calls = Settings().fhir_workers // len(PREFETCH_KEYS) + 2  # wanting more GETs than threads
    test_started = time.monotonic()
    with (
        DripServer(interval=0.05) as slow,
        FhirTestServer(patient_resources(), max_page_size=2, require_token=TOKEN) as healthy,
    ):
        settings = Settings(
            feedback_db=tmp_path / "feedback.sqlite3",
            fhir_allowed_servers=[slow.base_url, healthy.base_url],
            fhir_deadline=0.5,
            fhir_read_timeout=0.25,
            fhir_connect_timeout=0.1,
        )
        app = create_app(settings, now=lambda: FROZEN_NOW)

        def post(body):
            return app.test_client().post(PATIENT_VIEW, json=body)

        post(hook_call(healthy))  # warm: connections to the healthy server, the reading memos
        expected = cards_of(post(hook_call(healthy)))
        # Everything prefetched, the referenced Medication included: nothing to fetch, even though
        # the call names the dripping server.
        prefetch = full_prefetch(healthy)
        prefetch["meds"] = copy.deepcopy(prefetch["meds"])
        medication = healthy.read("Medication", "warfarin-5")
        prefetch["meds"]["entry"].append({"resource": medication, "search": {"mode": "include"}})
        with_prefetch = {**hook_call(slow), "prefetch": prefetch}
        expected_prefetched = cards_of(post(with_prefetch))
        assert slow.seen() == []

        slow_results: list[tuple[int, float]] = []

        def slow_call():
            started = time.monotonic()
            response = post(hook_call(slow))
            slow_results.append((response.status_code, time.monotonic() - started))

        threads = [threading.Thread(target=slow_call) for _ in range(slow_calls)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: slow.open_now() >= cap), "the slow calls did not start"
        in_flight = [slow.open_now()]

        healthy_started = time.monotonic()
        assert cards_of(post(hook_call(healthy))) == expected
        assert cards_of(post(with_prefetch)) == expected_prefetched
        assert cards_of(post(hook_call(healthy))) == expected
        in_flight.append(slow.open_now())
        assert in_flight[-1] > 0, "the healthy calls did not overlap the slow ones"
        healthy_elapsed = time.monotonic() - healthy_started

        for thread in threads:
            thread.join(timeout=3)
        assert wait_until(lambda: slow.open_now() == 0)
        seen = slow.seen()

    assert healthy_elapsed < 0.5
    assert [status for status, _ in slow_results] == [412] * slow_calls
    assert all(elapsed < 0.5 + 0.2 for _, elapsed in slow_results)
    assert max(in_flight) <= cap < Settings().fhir_workers
    assert all(c.ended_by == "client" and c.closed - c.opened < 0.5 + 0.2 for c in seen)
    assert time.monotonic() - test_started < 3
