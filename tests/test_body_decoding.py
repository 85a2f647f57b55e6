"""Large bodies are decoded with the garbage collector paused (cds_service/http/decoding.py): the
pause never outlives the decoding, whatever the threads and whatever the body."""

from __future__ import annotations

import gc
import json
import threading

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service import pipeline
from cds_service.http import decoding
from tests.conftest import FIXTURES

LARGE = orjson.dumps({"entry": [{"resource": {"id": str(i), "code": {"text": "x" * 40}}} for i in range(20_000)]})


def test_a_large_body_is_decoded_as_orjson_decodes_it_and_the_collector_runs_again_after():
    assert len(LARGE) >= decoding.PAUSE_FROM_BYTES
    assert decoding.loads(LARGE) == orjson.loads(LARGE)
    assert gc.isenabled()


def test_the_collector_is_paused_while_a_large_body_is_decoded_and_not_for_a_small_one(monkeypatch):
    seen = []
    real = orjson.loads

    def spying(raw):
        seen.append(gc.isenabled())
        return real(raw)

    monkeypatch.setattr(decoding.orjson, "loads", spying)
    decoding.loads(b'{"small": true}')
    decoding.loads(LARGE)
    assert seen == [True, False] and gc.isenabled()


def test_invalid_json_raises_as_before_and_leaves_the_collector_running():
    with pytest.raises(orjson.JSONDecodeError):
        decoding.loads(LARGE[:-1])
    assert gc.isenabled()


def test_threads_decoding_at_once_never_leave_the_collector_paused():
    errors = []

    def decode():
        try:
            for _ in range(5):
                decoding.loads(LARGE)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decode) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and gc.isenabled() and decoding._decoding == 0


def test_a_collector_switched_off_by_someone_else_stays_off():
    gc.disable()
    try:
        decoding.loads(LARGE)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_hook_call_with_a_large_body_runs_with_the_collector_paused_and_resumes_it(client, monkeypatch):
    """The pause covers the reading of the chart too (resumed mid-call, the collector would walk
    the whole decoded body), and is over when the answer is sent."""
    from cds_service.patient import chart

    seen = []
    real = chart.read_chart

    def spying(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr("cds_service.pipeline.read_chart", spying)
    body = orjson.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_bytes())
    small = client.post("/cds-services/calciphylaxis-order-select", json=body)
    padding = [{"resource": {"resourceType": "Basic", "id": f"b{i}", "code": {"text": "x" * 60}}} for i in range(8000)]
    body["prefetch"]["conditions"]["entry"].extend(padding)
    large = client.post(
        "/cds-services/calciphylaxis-order-select", data=orjson.dumps(body), content_type="application/json"
    )
    assert small.status_code == large.status_code == 200
    assert small.get_json()["cards"][0]["summary"] == large.get_json()["cards"][0]["summary"]
    assert seen == [True, False] and gc.isenabled()


# --- a very large body, decoded entry by entry through a sieve -----------------------------------


class _KeepAll:
    exact = True

    def __init__(self):
        self.entries: dict[str, list] = {}

    def offer(self, key, entry):
        self.entries.setdefault(key, []).append(entry)

    def kept(self, key):
        return self.entries.pop(key, [])


@pytest.fixture
def sieving(monkeypatch):
    """Every body is taken as very large (the sieving decoder decodes it)."""
    monkeypatch.setattr(decoding, "SIEVE_FROM_BYTES", 0)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(
    context=_JSON,
    prefetch=st.dictionaries(
        st.text(max_size=5),
        _JSON | st.fixed_dictionaries({"resourceType": st.just("Bundle"), "entry": st.lists(_JSON)}),
    ),
    extra=st.dictionaries(st.text(max_size=5), _JSON, max_size=3),
)
def test_the_sieving_decoder_reads_any_body_as_orjson_does_when_the_sieve_keeps_everything(context, prefetch, extra):
    body = orjson.dumps({**extra, "context": context, "prefetch": prefetch}, option=orjson.OPT_INDENT_2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decoding, "SIEVE_FROM_BYTES", 0)
        assert decoding.loads(body, lambda _: _KeepAll()) == orjson.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"context": {}, "prefetch": {"a": {"entry": [{}, ]}}}',
        b'{"context": {}, "prefetch": {"a": {"entry": [{} {}]}}}',
        b'{"context": {}, "prefetch": {"a": {"entry": [',
        b'{"context": {}, "prefetch": {"a": NaN}}',
        b'{"context": {}, "prefetch": {"a": {"entry": [Infinity]}}}',
        b'{"context": {}, "prefetch": {}} trailing',
        b'{"context" {}}',
        b"{'context': {}}",
        b'{"context": {}, "prefetch": {"a": "\\xff"}}'.replace(b"\\xff", b"\xff"),
        b'{"context": {}, "prefetch": {"a": ' + b"9" * 5000 + b"}}",
        b"",
        b"   ",
    ],
    ids=[
        "trailing comma",
        "no comma",
        "cut short",
        "NaN",
        "Infinity",
        "trailing data",
        "no colon",
        "single quotes",
        "not UTF-8",
        "a 5,000-digit number",
        "empty",
        "blank",
    ],
)
def test_a_malformed_very_large_body_is_refused_as_json_never_an_other_error(sieving, body):
    with pytest.raises(json.JSONDecodeError):
        decoding.loads(body, lambda _: _KeepAll())


def test_a_body_whose_prefetch_comes_before_its_context_is_decoded_whole(sieving):
    asked = []
    body = b'{"prefetch": {"a": {"entry": [1, 2]}}, "context": {"patientId": "p"}}'
    assert decoding.loads(body, lambda seen: asked.append(dict(seen))) == orjson.loads(body)
    assert asked == [{}]  # asked before the context was known: no sieve, read whole


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_fixture_gets_the_same_cards_when_its_body_is_sieved(client, fixture, monkeypatch):
    body = (FIXTURES / fixture).read_bytes()
    request = orjson.loads(body)
    path = f"/cds-services/{_service_for(request)}"
    whole = client.post(path, data=body, content_type="application/json")
    monkeypatch.setattr(decoding, "SIEVE_FROM_BYTES", 0)
    sieved = client.post(path, data=body, content_type="application/json")
    assert sieved.status_code == whole.status_code
    if whole.status_code == 200:
        assert _comparable(sieved.get_json()) == _comparable(whole.get_json())


def _service_for(request: dict) -> str:
    from cds_service.services import SERVICES

    return next(s.id for s in SERVICES.values() if s.hook == request.get("hook"))


def _comparable(answer: dict) -> list:
    return [
        (c["summary"], c["indicator"], c["detail"], [s["label"] for s in c.get("suggestions", [])])
        for c in answer["cards"]
    ]


def test_two_versions_of_one_result_that_move_what_the_checks_read_make_the_body_read_whole(sieving):
    """An Observation sent first as a usable result and again, dated later, as an unusable one:
    the sieve could have left out the result the checks then need, so it says so and the body
    is decoded whole."""

    def calcium(rid, value, when):
        return {
            "resource": {
                "resourceType": "Observation",
                "id": rid,
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": when,
                "valueQuantity": {"value": value, "unit": "mg/dL"},
            }
        }

    entries = [
        calcium("a", 9.1, "2026-11-02T08:00:00Z"),
        calcium("b", 9.3, "2026-11-01T08:00:00Z"),  # left out: behind "a"
        calcium("a", 900.0, "2026-11-03T08:00:00Z"),  # "a" again, newer, implausible
    ]
    body = orjson.dumps(
        {"context": {"patientId": "p1"}, "prefetch": {"calcium": {"resourceType": "Bundle", "entry": entries}}}
    )
    sieves = []

    def sieve_for(seen):
        sieves.append(pipeline.sieve_for(seen))
        return sieves[-1]

    assert decoding.loads(body, sieve_for) == orjson.loads(body)  # read whole
    assert sieves and not sieves[0].exact
