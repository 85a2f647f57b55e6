"""The Flask app factory: wiring only (settings, stores, CORS, logging hooks, metrics, error
mapping, blueprints). No clinical logic and no endpoint logic lives here (``views.py`` has the
endpoints).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from flask import Flask, Response, g, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

from cds_service import __version__, calllog, engine, metrics
from cds_service.auth import Authenticator, IssuerConfigError, build_authenticator, build_replay_cache
from cds_service.auth.authenticator import JwtAuthenticator
from cds_service.config import Settings
from cds_service.errors import CdsError
from cds_service.feedback import FeedbackStore, open_store, open_writer
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.http.deps import Deps
from cds_service.http.errors import http_status
from cds_service.http.limits import RequestLimits, body_too_large_message
from cds_service.http.responses import OrjsonProvider, error_response
from cds_service.http.views import bench_blueprint, blueprint

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("cds_service.request")


class CdsApp(Flask):
    """The Flask app with ``RequestLimits`` in front of it: every WSGI call (from waitress, or
    from a test client) passes the header, Content-Length and body limits first."""

    limits: RequestLimits | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.limits is None:
            return self.wsgi_app(environ, start_response)
        return self.limits(environ, start_response)


def create_app(
    settings: Settings | None = None,
    *,
    store: FeedbackStore | None = None,
    resolver: PrefetchResolver | None = None,
    authenticator: Authenticator | None = None,
    now: Callable[[], datetime] | None = None,
) -> Flask:
    settings = settings or Settings()
    authenticator = authenticator or build_authenticator(settings)
    if authenticator.enabled and not settings.public_base_url:
        # The JWT audience is built from configuration only, never from request headers.
        raise IssuerConfigError(
            "authentication is on but CDS_PUBLIC_BASE_URL is not set: the JWT audience would have no trusted origin"
        )
    # Card content and substitute orders are clinician-edited data: a broken file must stop
    # start-up, not a hook call.
    engine.warm_up()
    metrics.BUILD_INFO.labels(version=__version__).set(1)
    app = CdsApp(__name__)
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    store = store or open_store(settings)
    replay = None
    if settings.redis_url:
        replay = (
            authenticator.replay_cache if isinstance(authenticator, JwtAuthenticator) else build_replay_cache(settings)
        )
    app.extensions["cds"] = Deps(
        settings=settings,
        store=store,
        writer=open_writer(store, settings),
        resolver=resolver or PrefetchResolver(settings),
        authenticator=authenticator,
        replay=replay,
        now=now,
    )
    # Header size, Content-Length and chunked-body limits, before Flask parses anything.
    app.limits = RequestLimits(app.wsgi_app, max_body_bytes=settings.max_body_bytes)
    CORS(
        app,
        origins=settings.cors_origins,
        allow_headers=["Authorization", "Content-Type"],
        methods=["GET", "POST", "OPTIONS"],
        max_age=600,
        # With "any origin", answer "*" rather than echoing the caller's origin (cacheable, and
        # no credentials are involved: the JWT travels in Authorization, not in cookies).
        send_wildcard=settings.cors_origins == ["*"],
        # Chrome's Private Network Access: lets the public sandbox page call a service on localhost.
        allow_private_network=True,
    )
    _register_hooks(app)
    _register_errors(app, settings)
    app.register_blueprint(blueprint)
    if settings.bench_echo:
        app.register_blueprint(bench_blueprint)
    return app


def close_app(app: Flask) -> None:
    """At shutdown, once no call is in progress: write out the queued served-card rows, then
    close the store, the replay store and the FHIR client (idempotent)."""
    deps: Deps = app.extensions["cds"]
    deps.lifecycle.draining.set()
    if deps.lifecycle.closed.is_set():
        return
    deps.lifecycle.closed.set()
    deps.writer.close()
    deps.store.close()
    if deps.replay is not None:
        deps.replay.close()
    deps.resolver.close()


def _register_hooks(app: Flask) -> None:
    @app.before_request
    def _open_call() -> None:
        g.started = time.perf_counter()
        g.call, g.call_token = calllog.open_call()
        g.log = g.call.fields  # what the views add to the request line

    @app.after_request
    def _log_request(response: Response) -> Response:
        if request.method != "OPTIONS":
            _account(response)
        return response

    @app.teardown_request
    def _close_call(exc: BaseException | None) -> None:
        token = g.pop("call_token", None)
        if token is not None:
            calllog.close_call(token)


def _account(response: Response) -> None:
    """The call's one log line, and its metrics."""
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    record: calllog.CallRecord = g.get("call") or calllog.CallRecord()
    status = response.status_code
    route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
    metrics.child(metrics.HTTP_REQUESTS, route, metrics.method_label(request.method), str(status)).inc()
    service = record.fields.get("service")
    if service and request.endpoint == "cds.call_service":
        metrics.child(metrics.HOOK_CALLS, service, str(status)).inc()
        metrics.child(metrics.HOOK_LATENCY, service).observe(elapsed)
        for stage, seconds in record.stages.items():
            metrics.child(metrics.STAGE_LATENCY, service, stage).observe(seconds)
        for rule, indicator in g.get("cards", ()):
            metrics.child(metrics.CARDS, service, rule, indicator).inc()
    fields = {
        "method": request.method[:16],
        "path": request.path[:200],
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
        **record.fields,
    }
    if record.stages:
        fields["stages_ms"] = {stage: round(seconds * 1000, 3) for stage, seconds in record.stages.items()}
    if record.events:
        fields["events"] = record.events
    log.log(record.level, "request", extra=fields)


def _register_errors(app: Flask, settings: Settings) -> None:
    @app.errorhandler(CdsError)
    def _domain_error(exc: CdsError) -> Response:
        return error_response(http_status(exc), exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        messages = {
            404: f"Nothing at {request.path}. Discovery is at /cds-services.",
            405: f"Method {request.method} is not allowed on {request.path}.",
            413: body_too_large_message(settings.max_body_bytes),
        }
        message = messages.get(exc.code or 500, exc.description or exc.name)
        headers = {}
        if exc.code == 405:
            headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        return error_response(exc.code or 500, message, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Where it happened goes on the call's one log line, raised to ERROR.
        record = calllog.current()
        fields = {"error": type(exc).__name__, "traceback": redacted_traceback(exc)}
        if record is None:
            log.error("unhandled error", extra={"path": request.path[:200], **fields})
        else:
            record.fields.update(fields)
            record.level = max(record.level, logging.ERROR)
        return error_response(500, "Internal error in the CDS service; the details are in its log.")


_TRACEBACK_HEAD, _TRACEBACK_TAIL = 15, 15


def redacted_traceback(exc: BaseException) -> str:
    """Where an exception was raised (its frames, both ends of a very deep stack, and the
    exceptions it was raised from), without its message: a message may quote request data (a
    patient id, a value, a token), and nothing from the request reaches the log."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        stack = traceback.extract_tb(current.__traceback__)
        if len(stack) > _TRACEBACK_HEAD + _TRACEBACK_TAIL:  # e.g. a RecursionError: keep both ends
            omitted = len(stack) - _TRACEBACK_HEAD - _TRACEBACK_TAIL
            frames = (
                "".join(traceback.format_list(stack[:_TRACEBACK_HEAD]))
                + f"  ... {omitted} frames omitted ...\n"
                + "".join(traceback.format_list(stack[-_TRACEBACK_TAIL:]))
            )
        else:
            frames = "".join(traceback.format_list(stack))
        kind = type(current)
        parts.append(
            f"Traceback (most recent call last):\n{frames}{kind.__module__}.{kind.__qualname__}: <message withheld>"
        )
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n\nwhich was raised while handling:\n\n".join(parts)
