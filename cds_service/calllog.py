"""One log line per call: what the layers below HTTP have to say about a call joins that call's
request line instead of becoming a line of its own.

The HTTP layer opens a call record for each request (``open_call``) and writes the one line when
the answer is ready (``cds_service.http.app``). In between, any layer may report an ``event``
(a refused token, the FHIR keys fetched, prefetch data about another patient ...): inside a call
the event is attached to the request line, whose level rises to the event's; outside one (the
``evaluate`` command, a unit test, a background thread) it is logged on its own, as usual.

Stage timings (``timed``) are collected the same way: the request line carries them, and the
HTTP layer turns them into metrics.

Tracing (optional, ``CDS_OTLP_ENDPOINT``, the ``tracing`` extra): the same timings become
OpenTelemetry spans. A call's span (``Tracing.start_call``) gets a child span per stage, made when
the stage is timed (from its measured start and end), and a child span per FHIR GET
(``fhir_fetch``), which runs on a fetch thread that the call's trace is handed to
(``carry_trace``). Span attributes are stage names, route templates, statuses, counts, service
ids and FHIR server hosts: never a patient id, a token, a URL path or a body. Without tracing a
call record has no trace, and each stage costs one attribute test more.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit


@dataclass
class CallRecord:
    """What one call's request line will carry, besides method, path, status and duration."""

    fields: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    level: int = logging.INFO
    trace: CallTrace | None = None  # the call's span, when tracing is on


_current: ContextVar[CallRecord | None] = ContextVar("cds_call_record", default=None)


def open_call(trace: CallTrace | None = None) -> tuple[CallRecord, Token[CallRecord | None]]:
    record = CallRecord(trace=trace)
    return record, _current.set(record)


def close_call(token: Token[CallRecord | None]) -> None:
    _current.reset(token)


def current() -> CallRecord | None:
    return _current.get()


def event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Report ``message`` with ``fields``: on the current call's request line, or as a line of
    its own when no call is open. ``fields`` must already be safe to log (no tokens, no
    patient data)."""
    record = _current.get()
    if record is None:
        logger.log(level, message, extra=fields)
        return
    record.events.append({"event": message, "level": logging.getLevelName(level), **fields})
    if level > record.level:
        record.level = level


def add_stage(stage: str, seconds: float) -> None:
    """Add ``seconds`` to ``stage`` of the current call; the stage ended just now or, for stages
    reported together after the fact (the engine's record, checks, render), ran right after the
    stage reported before it (that is where its span is placed)."""
    record = _current.get()
    if record is not None:
        record.stages[stage] = record.stages.get(stage, 0.0) + seconds
        if record.trace is not None:
            record.trace.stage(stage, seconds, None)


class timed:  # noqa: N801 - used as a function: ``with timed("record"):``
    """Add the time spent in the block to ``stage`` of the current call (if one is open).
    A class rather than a generator: every hook call enters ten of these."""

    __slots__ = ("stage", "started")

    def __init__(self, stage: str):
        self.stage = stage
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        ended = time.perf_counter()
        record = _current.get()
        if record is not None:
            seconds = ended - self.started
            record.stages[self.stage] = record.stages.get(self.stage, 0.0) + seconds
            if record.trace is not None:
                record.trace.stage(self.stage, seconds, ended)


# --- OpenTelemetry tracing (optional) --------------------------------------------------------------

SERVICE_NAME = "calciphylaxis-cds"
TRACER_NAME = "cds_service"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for ``CDS_OTLP_ENDPOINT``: a bare collector address
    (``http://collector:4318``) gets ``/v1/traces``, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does; a
    URL with a path is used as it is."""
    parts = urlsplit(endpoint)
    return endpoint if parts.path.strip("/") else endpoint.rstrip("/") + "/v1/traces"


class TracingUnavailable(RuntimeError):
    """Tracing is configured but the OpenTelemetry SDK is not installed."""


class Tracing:
    """One app's tracer: its own provider (never the process-global one), its span processor
    (batched export to the OTLP endpoint, or a given exporter, e.g. in-memory in tests)."""

    def __init__(self, *, endpoint: str | None, exporter: Any = None, service_version: str = ""):
        try:
            api = import_module("opentelemetry.trace")
            sdk = import_module("opentelemetry.sdk.trace")
            export = import_module("opentelemetry.sdk.trace.export")
            resources = import_module("opentelemetry.sdk.resources")
        except ImportError:
            raise TracingUnavailable(
                "CDS_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                "pip install 'calciphylaxis-cds[tracing]' (opentelemetry-sdk and its OTLP/HTTP exporter)"
            ) from None
        self._api = api
        resource = resources.Resource.create({"service.name": SERVICE_NAME, "service.version": service_version})
        # The sampler is the SDK's default (OTEL_TRACES_SAMPLER, else parent-based always-on: a
        # caller's unsampled traceparent is respected).
        self.provider = sdk.TracerProvider(resource=resource)
        if exporter is None:
            if endpoint is None:
                raise ValueError("tracing needs an OTLP endpoint or an exporter")
            try:
                otlp = import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
            except ImportError:
                raise TracingUnavailable(
                    "CDS_OTLP_ENDPOINT is set but the OTLP/HTTP exporter is not installed: "
                    "pip install 'calciphylaxis-cds[tracing]'"
                ) from None
            processor = export.BatchSpanProcessor(otlp.OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=5))
        else:
            processor = export.SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer(TRACER_NAME, service_version)
        self._server_kind = api.SpanKind.SERVER
        self._client_kind = api.SpanKind.CLIENT
        self._error = import_module("opentelemetry.trace.status").StatusCode.ERROR

    def start_call(self, name: str, parent: tuple[str, str, bool] | None) -> CallTrace:
        """The span of one call, a child of the caller's span when it sent a valid traceparent
        (``parent``: trace id, span id, sampled), else the root of a new trace."""
        api = self._api
        context = None
        if parent is not None:
            trace_id, span_id, sampled = parent
            flags = api.TraceFlags(api.TraceFlags.SAMPLED if sampled else api.TraceFlags.DEFAULT)
            remote = api.SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=flags)
            context = api.set_span_in_context(api.NonRecordingSpan(remote))
        started_ns = time.time_ns()
        span = self.tracer.start_span(name, context=context, kind=self._server_kind, start_time=started_ns)
        return CallTrace(self, span, started_ns)

    def shutdown(self) -> None:
        """Export what is pending and stop the processor (at shutdown)."""
        self.provider.shutdown()


class CallTrace:
    """The span of one call, and the clock that places its stages' child spans."""

    __slots__ = ("tracing", "span", "context", "anchor_ns", "anchor_perf", "cursor", "name", "attributes")

    def __init__(self, tracing: Tracing, span: Any, started_ns: int):
        self.tracing = tracing
        self.span = span
        self.name: str | None = None  # "POST /cds-services/<service_id>", once the route is known
        self.attributes: dict[str, Any] = {}
        self.context = tracing._api.set_span_in_context(span)
        self.anchor_ns = started_ns
        self.anchor_perf = time.perf_counter()
        self.cursor = self.anchor_perf  # where the last stage ended (perf_counter)

    @property
    def ids(self) -> tuple[str, str, bool]:
        """Trace id, span id and sampled flag of this call's span, as the log and headers show them."""
        context = self.span.get_span_context()
        return f"{context.trace_id:032x}", f"{context.span_id:016x}", bool(context.trace_flags.sampled)

    def _ns(self, perf: float) -> int:
        return self.anchor_ns + int((perf - self.anchor_perf) * 1e9)

    def stage(self, stage: str, seconds: float, ended: float | None) -> None:
        if ended is None:  # reported after the fact: it ran after the stage before it
            ended = min(time.perf_counter(), self.cursor + seconds)
        self.cursor = ended
        span = self.tracing.tracer.start_span(
            stage, context=self.context, start_time=self._ns(ended - seconds), attributes={"cds.stage": stage}
        )
        span.end(end_time=self._ns(ended))

    def describe(self, name: str, attributes: dict[str, Any]) -> None:
        """The span's name and attributes, known once the app has answered (route, service ...)."""
        self.name = name
        self.attributes.update(attributes)

    def finish(self, status: int | None) -> None:
        """End the call's span with the HTTP status it was answered with (a 5xx is an error)."""
        span = self.span
        if self.name:
            span.update_name(self.name)
        if status is not None:
            self.attributes["http.response.status_code"] = status
        span.set_attributes(self.attributes)
        if status is None or status >= 500:
            span.set_status(self.tracing._error)
        span.end()


# The trace of the call a FHIR fetch thread is working for (set by carry_trace).
_fetch_trace: ContextVar[CallTrace | None] = ContextVar("cds_fetch_trace", default=None)


def carry_trace(executor: Executor) -> None:
    """Make ``executor`` (the FHIR fetch threads) hand the submitting call's trace to the jobs it
    runs, so that their FHIR GETs become child spans of that call. Only installed with tracing on."""
    submit = executor.submit

    def traced_submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        record = _current.get()
        trace = record.trace if record is not None else _fetch_trace.get()
        if trace is None:
            return submit(fn, *args, **kwargs)
        return submit(_run_traced, trace, fn, *args, **kwargs)

    executor.submit = traced_submit  # type: ignore[method-assign]


def _run_traced(trace: CallTrace, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    token = _fetch_trace.set(trace)
    try:
        return fn(*args, **kwargs)
    finally:
        _fetch_trace.reset(token)


class FetchSpan:
    """A FHIR GET being timed for its span; ``end`` makes the span (``cds_service.fhir.client``)."""

    __slots__ = ("trace", "url", "started_ns")

    def __init__(self, trace: CallTrace, url: str):
        self.trace = trace
        self.url = url
        self.started_ns = time.time_ns()

    def end(self, outcome: str) -> None:
        """The span: the FHIR server's host and port, the method and the outcome word
        (``ok``, ``timeout`` ...); never the URL's path or query, which name the patient."""
        parts = urlsplit(self.url)
        attributes: dict[str, Any] = {
            "http.request.method": "GET",
            "server.address": parts.hostname or "",
            "cds.fhir.outcome": outcome,
        }
        with contextlib.suppress(ValueError):  # a port that is not a number: left out
            attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
        tracing = self.trace.tracing
        span = tracing.tracer.start_span(
            "FHIR GET",
            context=self.trace.context,
            kind=tracing._client_kind,
            start_time=self.started_ns,
            attributes=attributes,
        )
        if outcome != "ok":
            span.set_status(tracing._error)
        span.end()


def fhir_fetch(url: str) -> FetchSpan | None:
    """Start timing a FHIR GET for its span; None (at the cost of a context-variable read or two)
    when the call it serves is not traced."""
    trace = _fetch_trace.get()
    if trace is None:
        record = _current.get()
        trace = record.trace if record is not None else None
        if trace is None:
            return None
    return FetchSpan(trace, url)
