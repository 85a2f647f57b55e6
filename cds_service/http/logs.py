"""Structured logging: one JSON object per line on stderr, written off the request threads.

* Format: python-json-logger's orjson formatter: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
  ``message``, ``pid`` (which worker process), then the record's fields.
* Off the hot path: the root logger's only handler is a ``QueueHandler``; one listener thread
  formats the records and writes them. A request thread only puts a record on a queue (no lock
  on stderr, no formatting). When the queue is full (stderr not being read), records are dropped
  and counted (``cds_log_lines_dropped_total``) rather than blocking calls.
* One line per call: a hook, feedback or discovery call logs exactly one ``request`` line (method,
  path, status, duration, service, hook, hookInstance, card count, stage timings, issuer), to
  which the layers below add their events (``cds_service.calllog``). Never tokens, JWTs or
  resource contents.
"""

from __future__ import annotations

import atexit
import copy
import logging
import logging.handlers
import queue
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.orjson import OrjsonFormatter

from cds_service import metrics

LOG_QUEUE_SIZE = 10_000

_listener: logging.handlers.QueueListener | None = None


class JsonFormatter(OrjsonFormatter):
    """``time``, ``level``, ``logger``, ``message`` and every extra field of the record."""

    def __init__(self) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}{process}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class _QueueHandler(logging.handlers.QueueHandler):
    """Hands records to the listener thread as they are (the listener formats them), and never
    blocks: a full queue drops the record and counts it."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Merge the arguments now (they may change after this call returns); keep everything else,
        # exc_info included, for the formatter on the listener thread (same process: no pickling).
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            metrics.LOG_LINES_DROPPED.inc()


def configure_logging(level: str = "INFO", *, queued: bool = True, stream: TextIO | None = None) -> None:
    """JSON lines on ``stream`` (stderr), through a queue and a listener thread unless ``queued``
    is False (the parent process of the workers logs directly: it must hold no thread when it
    forks)."""
    stop_logging()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.setLevel(level)
    if not queued:
        root.handlers[:] = [handler]
        return
    records: queue.Queue[Any] = queue.Queue(LOG_QUEUE_SIZE)
    global _listener
    _listener = logging.handlers.QueueListener(records, handler, respect_handler_level=False)
    _listener.start()
    root.handlers[:] = [_QueueHandler(records)]
    atexit.register(stop_logging)


def stop_logging() -> None:
    """Write out every queued record and stop the listener thread (at shutdown; idempotent)."""
    global _listener
    listener, _listener = _listener, None
    if listener is not None:
        listener.stop()
        root = logging.getLogger()
        root.handlers[:] = list(listener.handlers)  # anything logged after this goes straight out
