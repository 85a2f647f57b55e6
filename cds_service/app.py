"""Flask app factory: routes, error handling, CORS, body limits. No clinical logic here."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from flask import Flask, Response, current_app, g, request
from flask.json.provider import JSONProvider
from flask_cors import CORS
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from cds_service import __version__, engine
from cds_service.auth import Authenticator, build_authenticator
from cds_service.config import Settings
from cds_service.errors import ApiError, describe_validation_error, operation_outcome
from cds_service.feedback import FeedbackStore, SQLiteFeedbackStore
from cds_service.pipeline import find_service, run_hook
from cds_service.prefetch import PrefetchResolver
from cds_service.protocol import FeedbackRequest
from cds_service.services import discovery_document

log = logging.getLogger("cds_service.request")

JSON_MIMETYPES = frozenset({"application/json", "application/fhir+json"})


class OrjsonProvider(JSONProvider):
    """orjson for every JSON body Flask writes (several times faster than the stdlib)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = args[0] if len(args) == 1 else (args or kwargs)
        return json_response(obj)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status=status, headers=headers, mimetype="application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(operation_outcome(status, message), status=status, headers=headers)


def create_app(
    settings: Settings | None = None,
    *,
    store: FeedbackStore | None = None,
    resolver: PrefetchResolver | None = None,
    authenticator: Authenticator | None = None,
    now=None,
) -> Flask:
    settings = settings or Settings()
    # Card content is clinician-edited data: a broken file must stop start-up, not a hook call.
    engine.warm_up()
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["cds"] = {
        "settings": settings,
        "store": store or SQLiteFeedbackStore(settings.feedback_db),
        "resolver": resolver or PrefetchResolver(settings),
        "authenticator": authenticator or build_authenticator(settings),
        "now": now,
    }
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
    _register_errors(app)
    _register_routes(app, settings)
    return app


def _deps() -> dict[str, Any]:
    return current_app.extensions["cds"]


def _audience() -> str:
    base = _deps()["settings"].public_base_url
    if base:
        return base.rstrip("/") + request.path
    return request.base_url


def _authenticate() -> None:
    g.auth = _deps()["authenticator"].authenticate(request.headers.get("Authorization"), _audience())
    if g.auth:
        # Who called (never the token): the tenant for the request context, both for the log line.
        g.tenant = g.auth.get("tenant")
        g.log.update(iss=g.auth.get("iss"), tenant=g.tenant)


def _json_body() -> Any:
    """Decode the body as JSON, with the right status for each way it can be wrong."""
    if request.mimetype and request.mimetype not in JSON_MIMETYPES:
        raise ApiError(
            415,
            f"Content-Type '{request.mimetype}' is not supported; send application/json "
            "(or application/fhir+json).",
        )
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    if not raw:
        raise ApiError(400, "The request body is empty; a JSON object is required.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON ({exc}).") from None


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


def _register_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        messages = {
            404: f"Nothing at {request.path}. Discovery is at /cds-services.",
            405: f"Method {request.method} is not allowed on {request.path}.",
            413: "The request body is larger than this service accepts "
            f"({_deps()['settings'].max_body_bytes} bytes).",
        }
        message = messages.get(exc.code or 500, exc.description or exc.name)
        headers = {}
        if exc.code == 405:
            allow = exc.get_headers() if hasattr(exc, "get_headers") else []
            headers = {k: v for k, v in allow if k.lower() == "allow"}
        return error_response(exc.code or 500, message, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "Internal error in the CDS service; the details are in its log.")


def _register_routes(app: Flask, settings: Settings) -> None:
    @app.get("/")
    def index():
        return json_response(
            {
                "name": "calciphylaxis-cds",
                "version": __version__,
                "description": "CDS Hooks 2.0 service: calciphylaxis decision support for dialysis care.",
                "discovery": request.host_url.rstrip("/") + "/cds-services",
                "health": request.host_url.rstrip("/") + "/health",
            }
        )

    @app.get("/health")
    def health():
        return json_response({"status": "ok", "version": __version__})

    @app.get("/cds-services")
    def discovery():
        _authenticate()
        return json_response(discovery_document())

    @app.post("/cds-services/<service_id>")
    def call_service(service_id: str):
        deps = _deps()
        _authenticate()
        service = find_service(service_id)
        g.log["service"] = service.id
        body = _json_body()
        if isinstance(body, dict):
            g.log.update(hook=body.get("hook"), hookInstance=body.get("hookInstance"))
        request_model, response = run_hook(service, body, deps["resolver"], now=deps["now"])
        g.log["cards"] = len(response.cards)
        deps["store"].record_served(
            service.id, request_model.hook, str(request_model.context.get("patientId")), response.cards
        )
        return json_response(response.to_json())

    @app.post("/cds-services/<service_id>/feedback")
    def feedback(service_id: str):
        _authenticate()
        service = find_service(service_id)
        g.log["service"] = service.id
        body = _json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "The feedback body must be a JSON object with a 'feedback' array.")
        try:
            parsed = FeedbackRequest.model_validate(body)
        except ValidationError as exc:
            raise ApiError(400, "Invalid feedback: " + describe_validation_error(exc)) from None
        stored, duplicates = _deps()["store"].add_feedback(service.id, parsed.feedback)
        g.log.update(feedback_stored=stored, feedback_duplicates=duplicates)
        return json_response({"stored": stored, "duplicates": duplicates})

    if settings.bench_echo:

        @app.post("/bench/echo")
        def bench_echo():
            _json_body()
            return json_response({"cards": []})
