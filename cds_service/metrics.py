"""Prometheus metrics (``GET /metrics``), multi-process safe.

With one process the metrics live in process memory (plus the client library's process and GC
collectors). With several worker processes (``serve --workers N``) the server sets
``PROMETHEUS_MULTIPROC_DIR`` before this module is first imported, every process writes its
values to memory-mapped files there, and a scrape of any worker adds up all of them
(``prometheus_client.multiprocess``).

Labels carry only bounded, non-clinical values: service ids, route templates, HTTP statuses, rule
ids, card indicators, stage names and outcome words. Never a patient id, a resource id, a token,
a URL or an issuer's tenant.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.exposition import generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Decided when prometheus_client is first imported (it picks its value class then), so read once.
MULTIPROCESS = bool(os.environ.get(MULTIPROC_ENV))


# The HTTP methods a label may name; any other (a client may send any token as a method) counts as
# "other", so a stream of made-up methods cannot add a series each (issue 20).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def method_label(method: str) -> str:
    """The ``method`` label of a request: the method when it is a standard one, else "other"."""
    return method if method in KNOWN_METHODS else "other"


@lru_cache(maxsize=4096)  # label values are bounded (module doc); the library's lookup costs more
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, the same child every time, without the library's lookup."""
    return metric.labels(*labels)


# Hook calls take milliseconds; the FHIR budget is 300 ms and the spec's guidance about 500 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The stages of a hook call, in order (docs/operations.md).
STAGES = ("auth", "decode", "validate", "prefetch", "snoozes", "record", "checks", "render", "log", "encode")

HTTP_REQUESTS = Counter(
    "cds_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HOOK_CALLS = Counter("cds_hook_calls_total", "Hook calls answered, by service and status.", ["service", "status"])
HOOK_LATENCY = Histogram(
    "cds_hook_call_duration_seconds",
    "Time to answer a hook call (the app's part: from the request reaching Flask to the answer).",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "cds_hook_stage_duration_seconds",
    "Time per stage of a hook call: auth, decode, validate, prefetch (incl. FHIR fetches), snoozes, "
    "record, checks, render, log (queueing the served cards), encode.",
    ["service", "stage"],
    buckets=LATENCY_BUCKETS,
)
CARDS = Counter("cds_cards_total", "Cards returned, by service, rule and indicator.", ["service", "rule", "indicator"])
FHIR_FETCHES = Counter(
    "cds_fhir_fetches_total",
    "GETs to FHIR servers by outcome: ok, timeout, connection_failed, http_error, invalid_response, "
    "circuit_open, not_attempted, error.",
    ["outcome"],
)
FEEDBACK_ITEMS = Counter(
    "cds_feedback_items_total",
    "Feedback items received, by service, outcome (accepted, overridden) and result (stored, duplicate).",
    ["service", "outcome", "result"],
)
SERVED_CARDS_WRITTEN = Counter("cds_served_cards_written_total", "Served-card rows written to the store.")
SERVED_CARDS_DROPPED = Counter(
    "cds_served_cards_dropped_total",
    "Served-card rows never written (queue full, or the store unreachable at shutdown).",
)
SERVED_CARDS_PURGED = Counter(
    "cds_served_cards_purged_total", "Served-card rows deleted by the retention purge (this process)."
)
SERVED_CARD_WRITE_ERRORS = Counter(
    "cds_served_card_write_errors_total", "Failed attempts to write a batch of served-card rows (retried)."
)
SERVED_CARD_QUEUE = Gauge(
    "cds_served_card_queue_calls", "Hook calls whose served-card rows wait to be written.", multiprocess_mode="livesum"
)
LOG_LINES_DROPPED = Counter(
    "cds_log_lines_dropped_total", "Log lines dropped because the log queue was full (stderr not drained)."
)
BUILD_INFO = Gauge("cds_build_info", "The running version (always 1).", ["version"], multiprocess_mode="max")


def exposition() -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and its content type: this process's own, or the
    sum over every worker process in multi-process mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Forget a worker process that has exited (its live gauges) in multi-process mode."""
    if MULTIPROCESS:
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
