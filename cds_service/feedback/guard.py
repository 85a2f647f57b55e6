"""Keeping a feedback store that is down from slowing hook calls.

A hook call touches the store twice at most: it reads the patient's snoozes, and (with several
processes) writes its served-card rows before answering (``writer.py``). Neither may cost a call
more than ``CDS_SNOOZE_LOOKUP_TIMEOUT`` (each store bounds its wait for a connection, a lock and
the statement by it), and once one has failed the store is not asked again on a hook call for
``cooldown`` seconds: calls in between cost nothing and are served without snoozes (their
served-card rows are queued). After the cool-down one call tries again (half-open): success closes
the circuit, failure opens it for another cool-down.

Feedback, ``/ready`` and the served-card writer thread do not go through this guard: they have
their own timeouts and answer 503 or retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from cds_service.errors import ServiceUnavailable

log = logging.getLogger("cds_service.feedback")

T = TypeVar("T")

COOLDOWN_SECONDS = 10.0
NOT_ASKED = "The feedback store failed a moment ago; not asked again on hook calls until the cool-down ends."


class HookPathGuard:
    """A circuit breaker for the hook calls' use of the feedback store (one per store object)."""

    def __init__(self, *, cooldown: float = COOLDOWN_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until: float | None = None  # set while open: when one trial may go
        self._trial_running = False

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open_until is not None

    def run(self, action: Callable[[], T], *, failure_opens: bool = True) -> T:
        """``action()``, unless the circuit is open (then ``ServiceUnavailable`` at once). A
        ``ServiceUnavailable`` from ``action`` opens the circuit (unless ``failure_opens`` is
        False: a write that waited too long for a lock says nothing of the store being down); any
        other error counts as nothing."""
        trial = self._admit()
        try:
            result = action()
        except ServiceUnavailable:
            if failure_opens or trial:
                self._record(trial, failed=True)
            raise
        except BaseException:
            self._release(trial)
            raise
        self._record(trial, failed=False)
        return result

    def _admit(self) -> bool:
        with self._lock:
            if self._open_until is None:
                return False
            if self._clock() < self._open_until or self._trial_running:
                raise ServiceUnavailable(NOT_ASKED)
            self._trial_running = True
            return True

    def _release(self, trial: bool) -> None:
        if trial:
            with self._lock:
                self._trial_running = False

    def _record(self, trial: bool, *, failed: bool) -> None:
        with self._lock:
            if trial:
                self._trial_running = False
            if not failed:
                if self._open_until is not None:
                    log.info("feedback store answers hook calls again: snoozes are read again")
                self._open_until = None
                return
            opening = self._open_until is None or trial
            self._open_until = self._clock() + self.cooldown
        if opening:
            log.warning(
                "feedback store unavailable on a hook call: hook calls are served without snoozes, "
                "and their served-card rows queued, for the cool-down",
                extra={"cooldown_s": self.cooldown},
            )
