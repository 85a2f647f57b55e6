"""The HTTP endpoints as a blueprint: one call into the layers below per endpoint.

Discovery, hook calls and feedback authenticate first; the hook call runs the pipeline and
queues the served cards for the served-card log; feedback is validated and stored. Errors are
raised as domain errors and answered by ``cds_service.http.app`` as OperationOutcomes.

Operations: ``/health`` (liveness: the process answers) and ``/ready`` (readiness: card content
loaded, the feedback store and the shared replay store reachable, not shutting down) are open to
any caller, like a load balancer's probe, and say nothing but ok or which check failed.
``/metrics`` follows the service's authentication: open when authentication is off (like every
endpoint); with authentication on, it needs ``Authorization: Bearer <CDS_METRICS_TOKEN>`` and is
off without that setting (a Prometheus server cannot present a CDS Hooks JWT). ``/openapi.json``
(the OpenAPI 3.1 description) is open to any caller; ``/governance/report`` takes the services'
authentication or a signed, expiring link (``calciphylaxis-cds report-link``).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, request
from pydantic import ValidationError

from cds_service import __version__, metrics
from cds_service.auth import ReplayStoreUnavailable
from cds_service.calllog import event, timed
from cds_service.checks.findings import Snooze
from cds_service.errors import BadRequest, CdsError, ServiceUnavailable, describe_validation_error
from cds_service.feedback import check_feedback_bounds, scope_of
from cds_service.governance.build import governance_page
from cds_service.governance.link import (
    EXPIRES_PARAM,
    REPORT_PATH,
    SIGNATURE_PARAM,
    ReportLinkRefused,
    check_report_link,
)
from cds_service.http import decoding
from cds_service.http.deps import Deps
from cds_service.http.errors import ApiError
from cds_service.http.responses import encoded_json_response, error_response, json_response
from cds_service.knowledge.content import content
from cds_service.pages import CSP
from cds_service.pipeline import find_service, run_hook, sieve_for
from cds_service.protocol import HOOKS, FeedbackRequest
from cds_service.render.html import render_preview
from cds_service.services import ServiceDefinition, discovery_document

log = logging.getLogger("cds_service.request")

JSON_MIMETYPES = frozenset({"application/json", "application/fhir+json"})
# A hookInstance worth logging: a UUID or a similar short token.
_LOGGABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

blueprint = Blueprint("cds", __name__)


def deps() -> Deps:
    found: Deps = current_app.extensions["cds"]
    return found


def _audiences() -> list[str]:
    """The URL that was called, under each configured public base URL.

    Built from configuration only: the Host header (and any X-Forwarded-*) is chosen by the
    caller, so an audience derived from it would accept a token minted for another service that
    has the same path. ``create_app`` refuses an enabled authenticator without a base URL.
    """
    return [base + request.path for base in deps().settings.public_base_url]


def _authenticate() -> None:
    with timed("auth"):
        g.auth = deps().authenticator.authenticate(request.headers.get("Authorization"), _audiences())
    if g.auth:
        # Who called (never the token): the tenant for the request context, both for the log line.
        g.tenant = g.auth.get("tenant")
        g.log.update(iss=g.auth.get("iss"), tenant=g.tenant)


def _json_body(sieve_for: decoding.SieveFor | None = None) -> Any:
    """Decode the body as JSON, with the right status for each way it can be wrong.
    ``sieve_for``: a hook call's, for a very large body (``decoding.loads``)."""
    if request.mimetype and request.mimetype not in JSON_MIMETYPES:
        raise ApiError(
            415,
            f"Content-Type '{request.mimetype}' is not supported; send application/json (or application/fhir+json).",
        )
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    if not raw:
        raise BadRequest("The request body is empty; a JSON object is required.")
    try:
        return decoding.loads(raw, sieve_for)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}).") from None


def _loggable_hook_fields(body: dict[str, Any]) -> dict[str, str]:
    """``hook`` and ``hookInstance`` for the request log line, only in their expected shapes (a
    known hook name; a short id): a caller cannot put patient data or a megabyte into the log."""
    fields: dict[str, str] = {}
    hook = body.get("hook")
    if isinstance(hook, str):
        fields["hook"] = hook if hook in HOOKS else "(other)"
    instance = body.get("hookInstance")
    if isinstance(instance, str) and _LOGGABLE_ID.fullmatch(instance):
        fields["hookInstance"] = instance
    return fields


@blueprint.get("/")
def index() -> Response:
    bases = deps().settings.public_base_url
    base = bases[0] if bases else request.host_url.rstrip("/")
    return json_response(
        {
            "name": "calciphylaxis-cds",
            "version": __version__,
            "description": "CDS Hooks 2.0 service: calciphylaxis decision support for dialysis care.",
            "discovery": base + "/cds-services",
            "health": base + "/health",
            "ready": base + "/ready",
            "openapi": base + "/openapi.json",
        }
    )


@blueprint.get("/health")
def health() -> Response:
    """Liveness: the process is up and answering (nothing else is checked)."""
    return json_response({"status": "ok", "version": __version__})


@blueprint.get("/ready")
def ready() -> Response:
    """Readiness: may this process be sent calls now? 503 (an OperationOutcome naming the failed
    checks) while shutting down, or when card content, the feedback store or the shared replay
    store (when configured) is not usable. Why a check failed goes to the log only."""
    d = deps()
    checks: dict[str, str] = {}
    if d.lifecycle.draining.is_set():
        checks["process"] = "shutting down"
    try:
        content()
        checks["content"] = "ok"
    except Exception as exc:  # a broken card file: start-up normally refuses it already
        checks["content"] = "not loaded"
        event(log, logging.ERROR, "readiness: card content not loaded", error=type(exc).__name__)
    try:
        d.store.ping()
        checks["database"] = "ok"
    except CdsError:
        checks["database"] = "unreachable"  # the store has put the cause on this call's log line
    except Exception as exc:
        checks["database"] = "unreachable"
        event(log, logging.ERROR, "readiness: database check failed", error=type(exc).__name__)
    if d.replay is not None:
        try:
            d.replay.ping()
            checks["redis"] = "ok"
        except ReplayStoreUnavailable as exc:
            checks["redis"] = "unreachable"
            event(log, logging.ERROR, "readiness: Redis unreachable", error=str(exc))
    failed = {name: state for name, state in checks.items() if state != "ok"}
    g.log["ready"] = not failed
    if failed:
        detail = ", ".join(f"{name} {state}" for name, state in failed.items())
        return error_response(503, f"Not ready: {detail}.", {"Retry-After": "5"})
    return json_response({"status": "ready", "version": __version__, "checks": checks})


@blueprint.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus text format; summed over every worker process (see ``cds_service.metrics``)."""
    d = deps()
    if d.authenticator.enabled:
        token = d.settings.metrics_token
        if not token:
            raise ApiError(
                403,
                "Metrics are off while JWT authentication is on: set CDS_METRICS_TOKEN and scrape "
                "with Authorization: Bearer <that token>.",
            )
        scheme, _, given = (request.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            event(log, logging.WARNING, "metrics scrape refused: wrong or missing metrics token")
            raise ApiError(401, "Authentication failed.", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = metrics.exposition()
    return Response(body, status=200, headers={"Content-Type": content_type})


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this service (``cds_service/http/openapi.json``, kept in the
    repository and installed with the package; tests check it against the routes and real answers)."""
    document: dict[str, Any] = orjson.loads(resources.files("cds_service.http").joinpath("openapi.json").read_bytes())
    return document


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI description, open to any caller like ``/health`` (it holds no data and no
    secret), with the configured public base URLs as its servers."""
    document = dict(openapi_document())
    bases = deps().settings.public_base_url
    if bases:
        document["servers"] = [{"url": base} for base in bases]
    return json_response(document)


@blueprint.get("/cds-services")
def discovery() -> Response:
    _authenticate()
    return json_response(discovery_document())


def _html(page: str) -> Response:
    """An HTML page the service renders (preview, report): no script, nothing fetched."""
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP  # the same policy the page itself declares
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.get(REPORT_PATH)
def governance_report() -> Response:
    """The CDS committee's page (per rule: served, accepted, overridden, ignored by week; reasons;
    snoozes); no patient data on it. Opened with the services' authentication, or with a signed,
    unexpired link from ``calciphylaxis-cds report-link`` (``cds_service.governance.link``), so a
    person can open it in a browser without an EHR's JWT."""
    d = deps()
    now = datetime.now(UTC)
    if EXPIRES_PARAM in request.args or SIGNATURE_PARAM in request.args:
        try:
            until = check_report_link(
                d.settings.report_link_secret,
                request.path,
                request.args.get(EXPIRES_PARAM),
                request.args.get(SIGNATURE_PARAM),
                now=now,
                max_days=d.settings.report_link_max_days,
            )
        except ReportLinkRefused as exc:
            g.log["report_access"] = "link refused"
            raise ApiError(exc.status, exc.message) from None
        g.log.update(report_access="signed link", report_link_expires=until.isoformat(timespec="seconds"))
    else:
        _authenticate()
        g.log["report_access"] = "jwt" if g.get("auth") else "open"
    page = governance_page(d.store.governance_records(now), snoozing=d.settings.snooze_enabled)
    response = _html(page)
    # The URL may carry a signature: keep the page out of shared caches and browser history stores.
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/cds-services/<service_id>/preview")
def preview(service_id: str) -> Response:
    """The cards a request would get, as an EHR would show them (nothing is logged as served,
    nothing is snoozed): for clinicians reviewing card content and for integrators."""
    d = deps()
    _authenticate()
    service = find_service(service_id)
    g.log["service"] = service.id
    _, response = run_hook(service, _json_body(), d.resolver, now=d.now)
    return _html(render_preview(response, title=f"Card preview: {service.title}", request_summary=service.hook))


def _scope() -> str:
    """Whose cards, feedback and snoozes these are: the verified JWT's issuer and tenant, or the
    one ``unauthenticated`` scope with authentication off (``cds_service.feedback.scope``)."""
    return scope_of(g.get("auth"))


def _snoozes(scope: str, patient_id: str, now: datetime) -> tuple[Snooze, ...]:
    """The snoozes of this caller's patient. Decision support never depends on the feedback
    store: when it cannot be read within ``CDS_SNOOZE_LOOKUP_TIMEOUT`` (or failed a moment ago,
    ``feedback/guard.py``), the cards are shown unsnoozed, never hidden, and no earlier override
    is claimed."""
    try:
        with timed("snoozes"):
            return deps().store.active_snoozes(patient_id, now, scope)
    except ServiceUnavailable:
        g.log["snoozes"] = "not read: feedback store unavailable"
        return ()


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    _authenticate()
    service = find_service(service_id)
    g.log["service"] = service.id
    # A large chart is decoded and read with the garbage collector paused; the decoded body lives
    # only in _answer's frame, so it is freed before the collector resumes (decoding.py).
    with decoding.collector_paused(request.content_length):
        return _answer(service)


def _answer(service: ServiceDefinition) -> Response:
    d = deps()
    with timed("decode"):
        body = _json_body(sieve_for)
    if isinstance(body, dict):
        g.log.update(_loggable_hook_fields(body))
    scope = _scope()
    request_model, response = run_hook(
        service, body, d.resolver, now=d.now, snoozes=lambda patient_id, now: _snoozes(scope, patient_id, now)
    )
    g.log["cards"] = len(response.cards)
    g.cards = [(card.rule_id or "(unattributed)", card.indicator) for card in response.cards]
    # Queued and written in batches by the served-card writer thread; with several processes,
    # cards an override could snooze are written before the answer leaves (writer.py).
    with timed("log"):
        d.writer.submit(
            service.id, request_model.hook, str(request_model.context.get("patientId")), response.cards, scope
        )
    with timed("encode"):
        return encoded_json_response(response.to_json_bytes())


@blueprint.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    _authenticate()
    service = find_service(service_id)
    g.log["service"] = service.id
    body = _json_body()
    if not isinstance(body, dict):
        raise BadRequest("The feedback body must be a JSON object with a 'feedback' array.")
    try:
        parsed = FeedbackRequest.model_validate(body)
    except ValidationError as exc:
        raise BadRequest("Invalid feedback: " + describe_validation_error(exc)) from None
    check_feedback_bounds(parsed.feedback)  # 400 past the bounds: nothing unbounded is stored
    # The cards it is about may still be queued for the served-card log: write them first, so an
    # override that snoozes finds its card (bounded: a queue that will not drain does not stall).
    deps().writer.flush(timeout=1.0)
    # Written and committed (durably) before the answer: acknowledged feedback is never lost. An
    # override counts (and may snooze) only on a card served to this caller by this service, with
    # a reason that card offered.
    results = deps().store.record_feedback(service.id, parsed.feedback, _scope())
    for item, result in zip(parsed.feedback, results, strict=True):
        metrics.FEEDBACK_ITEMS.labels(service=service.id, outcome=item.outcome, result=result.result).inc()
    counts = {kind: sum(r.result == kind for r in results) for kind in ("stored", "duplicate", "refused")}
    g.log.update(
        feedback_stored=counts["stored"], feedback_duplicates=counts["duplicate"], feedback_refused=counts["refused"]
    )
    return json_response(
        {
            "stored": counts["stored"],
            "duplicates": counts["duplicate"],
            "refused": counts["refused"],
            "items": [r.as_json() for r in results],
        }
    )


bench_blueprint = Blueprint("bench", __name__)


@bench_blueprint.post("/bench/echo")
def bench_echo() -> Response:
    """Decode the body and answer empty cards: the benchmark's floor (CDS_BENCH_ECHO only). It is
    decoded whole, as a hook call decodes any body below ``decoding.SIEVE_FROM_BYTES`` (with
    the collector paused when large): the floor of receiving and decoding it."""
    with decoding.collector_paused(request.content_length):
        _json_body()
    return json_response({"cards": []})
