"""The Flask app factory: wiring only (settings, stores, CORS, logging hooks, metrics, error
mapping, blueprints). No clinical logic and no endpoint logic lives here (``views.py`` has the
endpoints).

One app, any server: ``create_app`` itself refuses what must not serve (no authentication on a
non-loopback address, the in-memory JWT replay cache shared by nobody across several worker
processes, several processes without shared metric files, gunicorn's preload), sets up the JSON
log and tracing, and learns the server's addresses and worker count from the server itself
(``workers.detect_hosting``): ``calciphylaxis-cds serve``, gunicorn, uWSGI and ``waitress-serve``
give the same guarantees. Under a server it cannot recognise it assumes CDS_HOST and CDS_WORKERS
and, without authentication, answers loopback peers only.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

import orjson
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
from cds_service.http import logs
from cds_service.http.deps import Deps
from cds_service.http.errors import http_status, operation_outcome
from cds_service.http.limits import RequestLimits, body_too_large_message
from cds_service.http.responses import OrjsonProvider, error_response
from cds_service.http.views import bench_blueprint, blueprint
from cds_service.net import is_loopback_host

if TYPE_CHECKING:
    from types import TracebackType

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("cds_service.request")
startup_log = logging.getLogger("cds_service")

# Probes and scrapes: their request lines are DEBUG when they answer 200, and they get no span.
_PROBE_ENDPOINTS = frozenset({"cds.health", "cds.ready"})
_UNTRACED_PATHS = frozenset({"/health", "/ready", "/metrics"})
# Servers that build the app themselves (``serve`` starts the served-card writer in server.serve).
_HOSTING_SERVERS = frozenset({"gunicorn", "uwsgi", "waitress-serve"})


# --- which server hosts the app ----------------------------------------------------------------


@dataclass(frozen=True)
class Hosting:
    """What ``create_app`` knows of the server it runs under: its name, how many worker processes
    share the app's port (each with its own in-memory state), and the addresses it listens on
    (``unix`` for a Unix socket). ``verified``: the addresses were read from the server itself;
    otherwise ``CDS_HOST`` is assumed and the app answers only loopback peers while it runs
    without authentication (``cds_service.http.app``)."""

    server: str  # serve, gunicorn, uwsgi, waitress-serve, or unknown
    processes: int
    addresses: tuple[str, ...]
    verified: bool
    where: str  # the addresses as the operator configured them, for messages
    preload: bool = False  # gunicorn's preload_app: the app built before the workers fork

    @classmethod
    def serve(cls, settings: Settings) -> Hosting:
        """``calciphylaxis-cds serve``: CDS_HOST, CDS_WORKERS."""
        return cls("serve", settings.workers, (settings.host,), True, f"{settings.host}:{settings.port}")

    @property
    def network_addresses(self) -> list[str]:
        """The addresses that are not loopback (nor a Unix socket)."""
        return [a for a in self.addresses if a != "unix" and not is_loopback_host(a)]


def detect_hosting(settings: Settings) -> Hosting:
    """The server hosting this process, read from the server itself where it can be: gunicorn
    (its worker's listening sockets and configured worker count, found on the call stack that is
    loading the app: this covers -c files, -w, WEB_CONCURRENCY and GUNICORN_CMD_ARGS alike), uWSGI
    (``uwsgi.numproc`` and its socket options) and ``waitress-serve`` (its listen options);
    otherwise ``unknown``, with CDS_HOST and CDS_WORKERS assumed."""
    if "gunicorn" in sys.modules:
        found = _gunicorn_hosting()
        if found is not None:
            return found
    if "uwsgi" in sys.modules:
        found = _uwsgi_hosting(sys.modules["uwsgi"])
        if found is not None:
            return found
    if "waitress.runner" in sys.modules:
        found = _waitress_runner_hosting()
        if found is not None:
            return found
    return Hosting("unknown", settings.workers, (settings.host,), False, f"{settings.host} (CDS_HOST)")


def _frames() -> Iterator[Any]:
    frame = sys._getframe(1)
    while frame is not None:
        yield frame
        frame = frame.f_back  # type: ignore[assignment]


def _gunicorn_hosting() -> Hosting | None:
    worker_base = import_module("gunicorn.workers.base").Worker
    arbiter_class = import_module("gunicorn.arbiter").Arbiter
    for frame in _frames():
        owner = frame.f_locals.get("self")
        if isinstance(owner, worker_base):
            cfg = owner.cfg
            addresses = tuple(_socket_host(listener.getsockname()) for listener in owner.sockets) or tuple(
                _bind_host(bind) for bind in cfg.bind
            )
            return Hosting(
                "gunicorn", int(cfg.workers), addresses, True, "gunicorn bind " + ", ".join(cfg.bind), cfg.preload_app
            )
        if isinstance(owner, arbiter_class):  # preload_app: loaded in the master, before binding
            cfg = owner.cfg
            addresses = tuple(_bind_host(bind) for bind in cfg.bind)
            return Hosting("gunicorn", int(cfg.workers), addresses, True, "gunicorn bind " + ", ".join(cfg.bind), True)
    return None


def _socket_host(name: Any) -> str:
    if isinstance(name, tuple):
        return str(name[0])
    return "unix"  # AF_UNIX: a path (str or bytes)


def _bind_host(bind: str) -> str:
    """The host of a gunicorn or uWSGI bind string (``0.0.0.0:8000``, ``[::1]:80``, ``:8080``,
    ``unix:/run/cds.sock``, ``fd://3``); an empty host means every interface."""
    if bind.startswith("unix:") or bind.startswith("/") or bind.startswith("@"):
        return "unix"
    if bind.startswith("fd://"):
        return "fd"  # an inherited socket (systemd): unknown, so not loopback
    host = bind.rsplit(":", 1)[0] if bind.count(":") == 1 or bind.startswith("[") else bind
    host = host.strip("[]").split(",")[0]
    return host or "0.0.0.0"


_UWSGI_SOCKET_OPTIONS = ("http", "https", "http-socket", "https-socket", "socket", "uwsgi-socket", "http11-socket")


def _uwsgi_hosting(uwsgi: Any) -> Hosting | None:
    """uWSGI's embedded module: its worker count and socket options (values are bytes, or lists
    of them; ``https`` values carry certificate paths after a comma)."""
    try:
        processes = int(uwsgi.numproc)
        options = dict(uwsgi.opt)
    except (AttributeError, TypeError, ValueError):
        return None
    binds: list[str] = []
    for name in _UWSGI_SOCKET_OPTIONS:
        values = options.get(name)
        for value in values if isinstance(values, list) else [values] if values is not None else []:
            text = value.decode() if isinstance(value, bytes) else str(value)
            binds.append(text.split(",")[0])
    if not binds:
        return None
    return Hosting("uwsgi", processes, tuple(_bind_host(b) for b in binds), True, "uWSGI " + ", ".join(binds))


def _waitress_runner_hosting() -> Hosting | None:
    """``waitress-serve --call``: its listen options, from the runner's frame (it builds the app
    before serving)."""
    for frame in _frames():
        if frame.f_globals.get("__name__") == "waitress.runner" and frame.f_code.co_name == "run":
            given = frame.f_locals.get("kw") or {}
            options = {k: v for k, v in given.items() if k in ("host", "port", "listen", "ipv4", "ipv6", "unix_socket")}
            try:
                listen = import_module("waitress.adjustments").Adjustments(**options).listen
            except (ValueError, OSError):
                return None
            addresses = tuple(_socket_host(address) for _family, _kind, _proto, address in listen)
            where = "waitress-serve " + " ".join(f"{k}={v}" for k, v in options.items())
            return Hosting("waitress-serve", 1, addresses, True, where)
    return None


class StartupRefused(Exception):
    """The app must not serve as configured; the message says why and what to change."""


class CdsApp(Flask):
    """The Flask app with ``RequestLimits`` in front of it: every WSGI call (from any server, or
    from a test client) passes the header, Content-Length and body limits first. Before that it
    gets its request id, trace context and client address (``logs.identify``), which every
    answer returns (``X-Request-ID``, ``traceparent``) and every line logged meanwhile carries;
    with tracing on, its span."""

    limits: RequestLimits | None = None
    tracing: calllog.Tracing | None = None
    trusted_proxies = logs.TrustedProxies(())
    loopback_only = False  # no authentication under an unrecognised server: loopback peers only

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        identity = logs.identify(environ, self.trusted_proxies)
        peer = environ.get("REMOTE_ADDR") or ""
        if identity.client != peer:  # named by a trusted proxy (as werkzeug's ProxyFix would set it)
            environ["cds.peer"] = peer
            environ["REMOTE_ADDR"] = identity.client
        trace = None
        if (
            self.tracing is not None
            and environ.get("PATH_INFO") not in _UNTRACED_PATHS
            and environ.get("REQUEST_METHOD") != "OPTIONS"
        ):
            parent = identity.parent
            trace = self.tracing.start_call(
                metrics.method_label(str(environ.get("REQUEST_METHOD", ""))),  # renamed with its route later
                (parent.trace_id, parent.span_id, parent.sampled) if parent else None,
            )
            identity.trace_id, identity.span_id, identity.sampled = trace.ids
        environ["cds.identity"] = identity
        environ["cds.trace"] = trace
        answered: list[int] = []

        def start(
            status: str,
            headers: list[tuple[str, str]],
            exc_info: tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None] | None = None,
        ) -> Callable[[bytes], object]:
            headers.append(("X-Request-ID", identity.request_id))
            headers.append(("traceparent", identity.traceparent))
            answered.append(int(status[:3]))
            return start_response(status, headers, exc_info)

        token = logs.bind_request({"request_id": identity.request_id, "trace_id": identity.trace_id})
        try:
            if self.loopback_only and not _is_loopback(peer):
                return _refuse_network_peer(environ, start)
            if self.limits is None:
                return self.wsgi_app(environ, start)
            return self.limits(environ, start)
        finally:
            logs.unbind_request(token)
            if trace is not None:
                trace.finish(answered[-1] if answered else None)


@lru_cache(maxsize=256)
def _is_loopback(address: str) -> bool:
    return is_loopback_host(address)


_NETWORK_PEER_REFUSED = (
    "This service runs without authentication and answers callers on this machine only: configure trusted "
    "JWT issuers (CDS_ISSUERS_FILE), or set CDS_ALLOW_UNAUTHENTICATED=true if something else authenticates callers."
)


def _refuse_network_peer(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    body = orjson.dumps(operation_outcome(403, _NETWORK_PEER_REFUSED))
    start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    log.warning(
        "request",
        extra={
            "method": str(environ.get("REQUEST_METHOD", ""))[:16],
            "path": str(environ.get("PATH_INFO", ""))[:200],
            "status": 403,
            "refused": "network caller without authentication",
        },
    )
    return [body]


def startup_refusal(settings: Settings, authenticated: bool, hosting: Hosting) -> str | None:
    """Why an app with these settings must not serve under ``hosting``, or None (``authenticated``:
    JWT authentication is on). Shared by ``create_app``, by ``serve`` and by gunicorn's master
    (``deploy/gunicorn.conf.py``), which check before anything is created or forked."""
    if hosting.preload:
        return (
            "gunicorn's preload_app is not supported: each worker process builds its own app (its database pool, "
            "threads and log queue do not survive a fork); remove --preload / preload_app."
        )
    exposed = hosting.network_addresses
    if not authenticated and exposed and not settings.allow_unauthenticated:
        loopback = "--host 127.0.0.1" if hosting.server == "serve" else "127.0.0.1"
        return (
            f"refusing to start on {', '.join(dict.fromkeys(exposed))} without authentication ({hosting.where}).\n"
            "  Configure trusted JWT issuers (CDS_ISSUERS_FILE, see docs/authentication.md),\n"
            f"  bind to a loopback address ({loopback}), or pass --allow-unauthenticated\n"
            "  (CDS_ALLOW_UNAUTHENTICATED=true) if something else authenticates callers."
        )
    if hosting.processes > 1 and authenticated and not settings.redis_url:
        one = {
            "serve": "serve with --workers 1",
            "gunicorn": "run gunicorn with one worker (--workers 1)",
            "uwsgi": "run one uWSGI worker process",
        }.get(hosting.server, "run one worker process (CDS_WORKERS=1)")
        return (
            f"refusing to start {hosting.processes} worker processes with the in-memory JWT replay cache "
            "(each process would accept a token another one has already seen): set CDS_REDIS_URL to a Redis "
            f"all processes share, or {one}."
        )
    return None


def log_startup_warnings(settings: Settings, authenticator: Authenticator, hosting: Hosting) -> None:
    """Say so when the service serves without authentication."""
    if authenticator.enabled:
        return
    exposed = hosting.network_addresses
    if not exposed and hosting.verified:
        startup_log.warning(
            "No trusted JWT issuers configured: serving WITHOUT authentication on loopback %s only.",
            ", ".join(hosting.addresses),
        )
    elif not exposed:
        startup_log.warning(
            "No trusted JWT issuers configured: serving WITHOUT authentication, to callers on this machine only "
            "(the server's own address is not known to the app)."
        )
    elif settings.allow_unauthenticated:
        startup_log.warning(
            "No trusted JWT issuers configured and --allow-unauthenticated given: anyone who can "
            "reach %s can call this service.",
            hosting.where if hosting.server != "serve" else f"{settings.host}:{settings.port}",
        )


def _refused_under(hosting: Hosting, message: str) -> BaseException:
    """How a server is told the app will not start, with one clear message and no traceback:
    gunicorn halts on AppImportError (exit status 4, "App failed to load"; any other exception in
    a worker is retried or printed with its traceback); the others stop with exit status 2."""
    text = f"calciphylaxis-cds: cannot start: {message}"
    if hosting.server == "gunicorn":
        refusal: BaseException = import_module("gunicorn.errors").AppImportError(text)
        return refusal
    print(text, file=sys.stderr)
    return SystemExit(2)


def create_app(
    settings: Settings | None = None,
    *,
    store: FeedbackStore | None = None,
    resolver: PrefetchResolver | None = None,
    authenticator: Authenticator | None = None,
    now: Callable[[], datetime] | None = None,
    hosting: Hosting | None = None,
    span_exporter: Any = None,
) -> Flask:
    """The app, for any WSGI server: ``gunicorn 'cds_service.http.app:create_app()'``,
    ``waitress-serve --call cds_service.http.app:create_app``, ``calciphylaxis-cds serve``.
    ``hosting``: the server, when the caller knows it (``serve``); else it is detected.
    ``span_exporter``: trace to this OpenTelemetry exporter (tests), as CDS_OTLP_ENDPOINT does."""
    settings = settings or Settings()
    hosting = hosting or detect_hosting(settings)
    if hosting.server not in _HOSTING_SERVERS:  # serve, a test, an unrecognised server: as it always did
        return _create_app(settings, hosting, store, resolver, authenticator, now, span_exporter)
    try:
        return _create_app(settings, hosting, store, resolver, authenticator, now, span_exporter)
    except (StartupRefused, IssuerConfigError, calllog.TracingUnavailable) as exc:
        raise _refused_under(hosting, " ".join(str(exc).split())) from None


def _create_app(
    settings: Settings,
    hosting: Hosting,
    store: FeedbackStore | None,
    resolver: PrefetchResolver | None,
    authenticator: Authenticator | None,
    now: Callable[[], datetime] | None,
    span_exporter: Any,
) -> Flask:
    logs.ensure_logging(settings.log_level)
    if hosting.verified and hosting.server != "serve":
        # What the server listens on decides, not CDS_HOST (the sandbox issuer's check reads it).
        exposed = hosting.network_addresses
        settings = settings.model_copy(
            update={"host": exposed[0] if exposed else "127.0.0.1", "workers": hosting.processes}
        )
    authenticator = authenticator or build_authenticator(settings)
    if authenticator.enabled and not settings.public_base_url:
        # The JWT audience is built from configuration only, never from request headers.
        raise IssuerConfigError(
            "authentication is on but CDS_PUBLIC_BASE_URL is not set: the JWT audience would have no trusted origin"
        )
    refusal = startup_refusal(settings, authenticator.enabled, hosting)
    if refusal is None and hosting.processes > 1 and not metrics.MULTIPROCESS:
        refusal = (
            f"{hosting.processes} worker processes but no shared metric files: each would answer /metrics with its "
            "own counts. Start gunicorn with -c deploy/gunicorn.conf.py (it prepares them), or set "
            "PROMETHEUS_MULTIPROC_DIR to an empty directory every worker can write, before the workers start."
        )
    if refusal is not None:
        raise StartupRefused(refusal)
    if hosting.server != "serve":  # serve says it itself, once for all its workers
        log_startup_warnings(settings, authenticator, hosting)
    tracing = None
    if settings.otlp_endpoint or span_exporter is not None:
        tracing = calllog.Tracing(endpoint=settings.otlp_endpoint, exporter=span_exporter, service_version=__version__)
    # Card content and substitute orders are clinician-edited data: a broken file must stop
    # start-up, not a hook call.
    engine.warm_up()
    metrics.BUILD_INFO.labels(version=__version__).set(1)
    app = CdsApp(__name__)
    app.trusted_proxies = logs.TrustedProxies(settings.trusted_proxies)
    app.loopback_only = not (hosting.verified or authenticator.enabled or settings.allow_unauthenticated)
    app.tracing = tracing
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    store = store or open_store(settings)
    replay = None
    if settings.redis_url:
        replay = (
            authenticator.replay_cache if isinstance(authenticator, JwtAuthenticator) else build_replay_cache(settings)
        )
    resolver = resolver or PrefetchResolver(settings)
    if tracing is not None:
        calllog.carry_trace(resolver.executor)  # FHIR fetch threads: their GETs join the call's trace
    app.extensions["cds"] = Deps(
        settings=settings,
        store=store,
        writer=open_writer(store, settings),
        resolver=resolver,
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
    from cds_service.smart import register_smart_app  # the SMART companion page under /app (issue 23)

    register_smart_app(app, settings, now=now)
    if settings.bench_echo:
        app.register_blueprint(bench_blueprint)
    if hosting.server in _HOSTING_SERVERS:
        app.extensions["cds"].writer.start()  # the served-card writer, which also runs the retention purge
        startup_log.info(
            "app ready",
            extra={
                "server": hosting.server,
                "processes": hosting.processes,
                "listening": hosting.where,
                "version": __version__,
                "tracing": bool(tracing),
            },
        )
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
    tracing = getattr(app, "tracing", None)
    if tracing is not None:
        tracing.shutdown()  # export the spans still batched


def _register_hooks(app: Flask) -> None:
    @app.before_request
    def _open_call() -> None:
        g.started = time.perf_counter()
        g.call, g.call_token = calllog.open_call(request.environ.get("cds.trace"))
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
    identity: logs.RequestIdentity | None = request.environ.get("cds.identity")
    if identity is not None:
        fields.update(identity.log_fields())
    if record.stages:
        fields["stages_ms"] = {stage: round(seconds * 1000, 3) for stage, seconds in record.stages.items()}
    if record.events:
        fields["events"] = record.events
    level = record.level
    if level == logging.INFO and status == 200 and request.endpoint in _PROBE_ENDPOINTS:
        level = logging.DEBUG  # a load balancer's probe every few seconds is not news
    log.log(level, "request", extra=fields)
    if record.trace is not None:
        attributes: dict[str, Any] = {"http.request.method": metrics.method_label(request.method), "http.route": route}
        if service:
            attributes["cds.service"] = service
        for name in ("hook", "cards"):
            if name in record.fields:
                attributes[f"cds.{name}"] = record.fields[name]
        if identity is not None:
            attributes["cds.request_id"] = identity.request_id
        record.trace.describe(f"{metrics.method_label(request.method)} {route}", attributes)


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
