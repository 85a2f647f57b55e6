"""One log line per call: what the layers below HTTP have to say about a call joins that call's
request line instead of becoming a line of its own.

The HTTP layer opens a call record for each request (``open_call``) and writes the one line when
the answer is ready (``cds_service.http.app``). In between, any layer may report an ``event``
(a refused token, the FHIR keys fetched, prefetch data about another patient ...): inside a call
the event is attached to the request line, whose level rises to the event's; outside one (the
``evaluate`` command, a unit test, a background thread) it is logged on its own, as usual.

Stage timings (``timed``) are collected the same way: the request line carries them, and the
HTTP layer turns them into metrics.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallRecord:
    """What one call's request line will carry, besides method, path, status and duration."""

    fields: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    level: int = logging.INFO


_current: ContextVar[CallRecord | None] = ContextVar("cds_call_record", default=None)


def open_call() -> tuple[CallRecord, Token[CallRecord | None]]:
    record = CallRecord()
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
    record = _current.get()
    if record is not None:
        record.stages[stage] = record.stages.get(stage, 0.0) + seconds


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
        add_stage(self.stage, time.perf_counter() - self.started)
