"""The Flask app factory: wiring only (settings, stores, CORS, logging hooks, error mapping,
blueprints). No clinical logic and no endpoint logic lives here (``views.py`` has the endpoints).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from flask import Flask, Response, g, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

from cds_service import engine
from cds_service.auth import Authenticator, build_authenticator
from cds_service.config import Settings
from cds_service.errors import CdsError
from cds_service.feedback import FeedbackStore, SQLiteFeedbackStore
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.http.deps import Deps
from cds_service.http.errors import http_status
from cds_service.http.responses import OrjsonProvider, error_response
from cds_service.http.views import bench_blueprint, blueprint

log = logging.getLogger("cds_service.request")


def create_app(
    settings: Settings | None = None,
    *,
    store: FeedbackStore | None = None,
    resolver: PrefetchResolver | None = None,
    authenticator: Authenticator | None = None,
    now: Callable[[], datetime] | None = None,
) -> Flask:
    settings = settings or Settings()
    # Card content and substitute orders are clinician-edited data: a broken file must stop
    # start-up, not a hook call.
    engine.warm_up()
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["cds"] = Deps(
        settings=settings,
        store=store or SQLiteFeedbackStore(settings.feedback_db),
        resolver=resolver or PrefetchResolver(settings),
        authenticator=authenticator or build_authenticator(settings),
        now=now,
    )
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


def _register_hooks(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()
        g.log = {}

    @app.after_request
    def _log_request(response: Response) -> Response:
        if request.method != "OPTIONS":
            fields = {
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
                **g.get("log", {}),
            }
            log.info("request", extra=fields)
        return response


def _register_errors(app: Flask, settings: Settings) -> None:
    @app.errorhandler(CdsError)
    def _domain_error(exc: CdsError) -> Response:
        return error_response(http_status(exc), exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        messages = {
            404: f"Nothing at {request.path}. Discovery is at /cds-services.",
            405: f"Method {request.method} is not allowed on {request.path}.",
            413: f"The request body is larger than this service accepts ({settings.max_body_bytes} bytes).",
        }
        message = messages.get(exc.code or 500, exc.description or exc.name)
        headers = {}
        if exc.code == 405:
            headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        return error_response(exc.code or 500, message, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "Internal error in the CDS service; the details are in its log.")
