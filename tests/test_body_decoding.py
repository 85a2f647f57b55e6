"""Large bodies are decoded with the garbage collector paused (cds_service/http/decoding.py): the
pause never outlives the decoding, whatever the threads and whatever the body."""

from __future__ import annotations

import gc
import threading

import orjson
import pytest

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
