"""Optional OpenTelemetry tracing (issue 22): a span per call with a child span per stage it times
and per FHIR GET, continuing the caller's W3C trace, with nothing of the patient or the tokens in
any attribute; exported in memory here (no network). Not configured, it costs nothing: the SDK
is not even imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("opentelemetry.sdk.trace", reason="the 'tracing' extra is not installed")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from cds_service import calllog, metrics  # noqa: E402
from cds_service.config import Settings  # noqa: E402
from cds_service.http.app import close_app, create_app  # noqa: E402
from tests.conftest import FIXTURES, FROZEN_NOW  # noqa: E402
from tests.fhir_server import FhirTestServer  # noqa: E402
from tests.test_fhir_integration import PATIENT, TOKEN, hook_call, patient_resources, settings_for  # noqa: E402

ORDER_SELECT = "/cds-services/calciphylaxis-order-select"
PATIENT_VIEW = "/cds-services/calciphylaxis-patient-view"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def _order_select() -> bytes:
    body = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text())
    body.pop("_expected", None)
    return json.dumps(body).encode()


@pytest.fixture
def traced(tmp_path):
    exporter = InMemorySpanExporter()
    app = create_app(Settings(feedback_db=tmp_path / "f.db"), now=lambda: FROZEN_NOW, span_exporter=exporter)
    yield app, exporter
    close_app(app)


def _attribute_text(spans) -> str:
    return json.dumps([{**dict(span.attributes or {}), "name": span.name} for span in spans])


def test_a_hook_call_is_a_span_with_a_child_span_per_stage(traced):
    app, exporter = traced
    client = app.test_client()
    client.get("/ready")
    response = client.post(ORDER_SELECT, data=_order_select(), content_type="application/json")
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    (call,) = [s for s in spans if s.kind == SpanKind.SERVER]
    assert call.name == "POST /cds-services/<service_id>"
    assert call.attributes["http.route"] == "/cds-services/<service_id>"
    assert call.attributes["http.response.status_code"] == 200
    assert call.attributes["cds.service"] == "calciphylaxis-order-select" and call.attributes["cds.cards"] == 1
    stages = [s for s in spans if s.parent is not None and s.parent.span_id == call.context.span_id]
    assert {s.name for s in stages} == set(metrics.STAGES)
    for stage in stages:  # each within the call, and its measured length
        assert call.start_time <= stage.start_time <= stage.end_time <= call.end_time, stage.name
        assert stage.context.trace_id == call.context.trace_id
    by_name = {s.name: s for s in stages}
    # The engine's stages, reported after the fact, are laid one after the other, in order.
    assert by_name["record"].end_time <= by_name["checks"].start_time <= by_name["render"].start_time
    # The answer names the call's span; the log line does too (test_request_ids).
    returned = response.headers["traceparent"]
    assert returned == f"00-{call.context.trace_id:032x}-{call.context.span_id:016x}-01"
    assert "c1-calciphylaxis" not in _attribute_text(spans)


def test_a_callers_traceparent_makes_the_call_a_child_of_its_span(traced):
    app, exporter = traced
    response = app.test_client().get("/cds-services", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    (call,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert f"{call.context.trace_id:032x}" == TRACE_ID
    assert f"{call.parent.span_id:016x}" == PARENT_ID and call.parent.is_remote
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{call.context.span_id:016x}-01"


def test_an_unsampled_caller_is_respected_and_nothing_is_recorded(traced):
    app, exporter = traced
    response = app.test_client().get("/cds-services", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert exporter.get_finished_spans() == ()
    assert response.headers["traceparent"].startswith(f"00-{TRACE_ID}-") and response.headers["traceparent"].endswith(
        "-00"
    )


def test_probes_and_scrapes_make_no_spans_and_errors_are_marked(traced):
    app, exporter = traced
    client = app.test_client()
    for path in ("/health", "/ready", "/metrics"):
        assert client.get(path).status_code == 200
    assert exporter.get_finished_spans() == ()
    client.get("/nope")
    (not_found,) = exporter.get_finished_spans()
    assert not_found.name == "GET (unmatched)" and not_found.status.status_code != StatusCode.ERROR
    from cds_service import engine

    original = engine.evaluate
    engine.evaluate = lambda call: 1 / 0
    try:
        client.post(ORDER_SELECT, data=_order_select(), content_type="application/json")
    finally:
        engine.evaluate = original
    failed = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER][-1]
    assert failed.attributes["http.response.status_code"] == 500 and failed.status.status_code == StatusCode.ERROR


def test_fhir_fetches_are_child_spans_naming_the_server_but_never_the_patient_or_token(tmp_path):
    exporter = InMemorySpanExporter()
    with FhirTestServer(patient_resources(), max_page_size=2, require_token=TOKEN) as fhir:
        app = create_app(settings_for(tmp_path, fhir), now=lambda: FROZEN_NOW, span_exporter=exporter)
        try:
            response = app.test_client().post(PATIENT_VIEW, json=hook_call(fhir))
        finally:
            close_app(app)
        seen = len(fhir.requests)
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    (call,) = [s for s in spans if s.kind == SpanKind.SERVER]
    fetches = [s for s in spans if s.name == "FHIR GET"]
    assert len(fetches) == seen > 0  # one span per GET the FHIR server saw, pages included
    for fetch in fetches:
        assert fetch.kind == SpanKind.CLIENT and fetch.parent.span_id == call.context.span_id
        assert fetch.context.trace_id == call.context.trace_id
        assert fetch.attributes["server.address"] == "127.0.0.1" and fetch.attributes["cds.fhir.outcome"] == "ok"
    text = _attribute_text(spans)
    assert PATIENT not in text and TOKEN not in text and "/fhir" not in text


def test_the_otlp_endpoint_gets_the_traces_path_unless_it_names_one():
    assert calllog.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert calllog.traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert calllog.traces_url("https://otel.example.org/custom/traces") == "https://otel.example.org/custom/traces"
    with pytest.raises(ValueError, match="http"):
        Settings(otlp_endpoint="collector:4318")


def test_a_configured_otlp_endpoint_exports_batched_over_http(tmp_path):
    app = create_app(Settings(feedback_db=tmp_path / "f.db", otlp_endpoint="http://127.0.0.1:9/"))
    try:
        processors = app.tracing.provider._active_span_processor._span_processors
        (processor,) = processors
        assert type(processor).__name__ == "BatchSpanProcessor"
    finally:
        app.tracing.provider.shutdown = lambda: None  # nothing listens there: do not wait to export
        close_app(app)


def test_tracing_configured_without_the_sdk_is_a_clear_refusal(monkeypatch, tmp_path):
    real = calllog.import_module

    def without_opentelemetry(name: str):
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real(name)

    monkeypatch.setattr(calllog, "import_module", without_opentelemetry)
    with pytest.raises(calllog.TracingUnavailable, match=r"pip install 'calciphylaxis-cds\[tracing\]'"):
        create_app(Settings(feedback_db=tmp_path / "f.db", otlp_endpoint="http://collector:4318"))


def test_without_an_endpoint_tracing_costs_nothing_not_even_an_import(tmp_path):
    """A hook call in a fresh process with tracing not configured: the OpenTelemetry SDK's tracing and
    exporters are never imported (the redis client may import OpenTelemetry's API and metrics of
    its own), no app has a tracer, and the FHIR fetch threads are the plain executor's."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from cds_service.config import Settings
        from cds_service.http.app import create_app
        body = json.loads(open({str(FIXTURES / "c1-calcium-acetate-calciphylaxis.json")!r}).read())
        body.pop("_expected", None)
        app = create_app(Settings(feedback_db={str(tmp_path / "f.db")!r}))
        assert app.test_client().post({ORDER_SELECT!r}, json=body).status_code == 200
        executor = app.extensions["cds"].resolver.executor
        print(json.dumps({{
            "imported": sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter"))),
            "tracing": app.tracing is not None,
            "submit_patched": "submit" in vars(executor),
        }}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"imported": [], "tracing": False, "submit_patched": False}
