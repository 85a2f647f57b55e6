"""gunicorn configuration for calciphylaxis-cds (docs/operations.md, "Which server, for what").

    pip install 'calciphylaxis-cds[gunicorn]'          # or: .venv/bin/pip install -e '.[gunicorn]'
    gunicorn -c deploy/gunicorn.conf.py                # serves cds_service.http.app:create_app()

Every value comes from the service's own settings, so one set of CDS_* variables configures
`calciphylaxis-cds serve` and gunicorn alike: CDS_HOST and CDS_PORT (bind), CDS_WORKERS (worker
processes), CDS_THREADS (threads per worker), CDS_CONNECTION_LIMIT (connections per worker),
CDS_SHUTDOWN_TIMEOUT_SECONDS (graceful shutdown), CDS_LOG_LEVEL, CDS_TRUSTED_PROXIES
(forwarded_allow_ips). A gunicorn command-line flag still wins over this file (e.g. -w 4).

Supported behind a proxy or ingress that buffers requests (HAProxy, nginx, a Kubernetes ingress):
gunicorn's threaded worker has no deadline for a request's headers once their first byte arrived,
so slow clients reaching it directly can hold every thread. Exposed directly, use
`calciphylaxis-cds serve --workers N` (docs/operations.md has the measurement).

What the app does itself under gunicorn (create_app): the start-up refusals (no authentication on a
non-loopback bind, several workers with the in-memory JWT replay cache, preload_app), the JSON
request log with request and trace ids, tracing, metrics shared by the workers. What this file adds:
the worker class (gthread answering gunicorn's own refusals as OperationOutcomes, /ready failing at
SIGTERM, served-card rows written out at exit), the workers' metric directory, JSON lines for
gunicorn's own messages, and no access log (the app logs every call once).
"""

import os
import sys

from pydantic import ValidationError

from cds_service.config import Settings
from cds_service.errors import describe_validation_error
from cds_service.http import workers as _cds

# The workers' shared metric files (PROMETHEUS_MULTIPROC_DIR), before anything imports prometheus_client.
_cds.gunicorn_metrics_dir()

try:
    _settings = Settings()
except ValidationError as _exc:
    print(
        f"calciphylaxis-cds: invalid configuration: {' '.join(describe_validation_error(_exc).split())}",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

wsgi_app = "cds_service.http.app:create_app()"

# --- processes, threads, connections --------------------------------------------------------------
_host = _settings.host.strip("[]")
bind = [f"[{_host}]:{_settings.port}" if ":" in _host else f"{_host}:{_settings.port}"]
workers = _settings.workers
worker_class = _cds.gunicorn_worker_class()  # gthread, with OperationOutcome error pages
threads = _settings.threads
worker_connections = _settings.connection_limit
backlog = 1024
# Each worker builds its own app (database pool, threads, log queue): never before the fork.
preload_app = False
# Recent gunicorn opens a control socket under $HOME by default; a container's root filesystem is
# read-only. (Settings an older gunicorn does not know are ignored.)
control_socket_disable = True

# --- timeouts and shutdown ------------------------------------------------------------------------
# A worker that does not report to the master for this long (a hung call) is killed and replaced.
timeout = 30
# On SIGTERM: stop accepting, let calls in progress finish for this long (then /ready has failed
# all along and the served-card rows are written out before the worker exits).
graceful_timeout = int(_settings.shutdown_timeout_seconds + 0.999)
# Idle keep-alive connections are closed after this many seconds (keep it below the load
# balancer's own idle timeout, so the balancer never sends on a connection being closed).
keepalive = 5
# The workers' heartbeat files on tmpfs: no disk writes, and it works with a read-only root filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# --- request limits (the app's own, in RequestLimits, are checked after these) ----------------------
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 65536  # a JWT with an x5c chain fits

# --- proxies ---------------------------------------------------------------------------------------
# Only the proxies of CDS_TRUSTED_PROXIES may set X-Forwarded-Proto and the like; never
# FORWARDED_ALLOW_IPS from the environment, and not even loopback unless listed. The app reads
# X-Forwarded-For from the same list only.
forwarded_allow_ips = ",".join(_settings.trusted_proxies)
proxy_allow_ips = ""

# --- logs ------------------------------------------------------------------------------------------
accesslog = None  # the app writes one JSON line per call
errorlog = "-"
loglevel = _settings.log_level.lower()
# gunicorn's own lines (starting, booting worker, worker exits) as JSON lines too.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": _settings.log_level, "handlers": ["json"]},
    "loggers": {
        "gunicorn.error": {"level": _settings.log_level, "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
    "handlers": {"json": {"class": "cds_service.http.logs.JsonStreamHandler"}},
    "formatters": {},
}

# --- hooks -----------------------------------------------------------------------------------------
on_starting = _cds.gunicorn_on_starting  # the start-up refusals, once, before any worker (exit status 2)
child_exit = _cds.gunicorn_child_exit  # a dead worker's live gauges are dropped
post_worker_init = _cds.gunicorn_post_worker_init  # the start-up heap frozen before the first call
on_exit = _cds.gunicorn_on_exit  # the metric directory made here is removed
nworkers_changed = _cds.gunicorn_nworkers_changed  # TTIN never makes several workers unsafe
