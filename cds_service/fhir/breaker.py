"""Keeping one bad FHIR server from hurting calls to the others: a concurrency cap and a circuit
breaker per server origin (scheme, host, port).

Why both:

* The fetch threads are shared by every hook call. A server that answers slowly (or one byte at a
  time) holds a thread for as long as each call's deadline allows. The **cap** bounds how many
  threads one server can hold at once, so the remaining threads keep serving every other server.
  A slot is waited for on the hook call's own thread, never on a fetch thread, and no longer than
  the hook call's deadline.
* A server that keeps timing out or refusing connections will most likely do so on the next call
  too. The **breaker** stops trying for a cool-down after ``threshold`` consecutive failures, so
  calls fail at once (with a reason the cards show) instead of each spending its whole deadline.
  After the cool-down one trial call is let through (half-open): if it gets an answer the breaker
  closes; if it fails, the breaker stays open for another cool-down.

Only "no answer" failures count (timeouts, connection refused or lost). A server that answers,
even with 404 or 500, is reachable and resets the count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger("cds_service.fhir")

# What a FhirFetchError says about the server (``FhirFetchError.failure``): ``None`` = it answered
# (with something unusable), TIMEOUT / CONNECTION = it gave no answer (what the breaker counts),
# UNKNOWN = we cannot tell (the request failed on our side): counts as nothing.
TIMEOUT = "timeout"
CONNECTION = "connection"
UNKNOWN = "unknown"
_KIND_WORDS = {TIMEOUT: "timeouts", CONNECTION: "connection failures"}

BUSY_REASON = "FHIR server busy (too many calls in progress)"

# Guards are kept per origin; host patterns (``*.example.org``) could name many origins, so idle
# guards are dropped once there are more than this.
_MAX_ORIGINS = 256


@dataclass(frozen=True)
class Admission:
    """The breaker's answer before one GET: ``refused`` is the reason it may not go (else ``None``);
    ``trial`` says it goes as the one half-open trial."""

    refused: str | None
    trial: bool


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive no-answer failures → half-open after
    ``cooldown`` seconds (one trial call) → closed on an answer, open again on a failure."""

    def __init__(
        self, *, threshold: int, cooldown: float, label: str = "", clock: Callable[[], float] = time.monotonic
    ):
        self.threshold = max(1, threshold)
        self.label = label  # host:port, for the log
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._kind = TIMEOUT
        self._retry_at: float | None = None  # set while open (or half-open): when a trial may go
        self._trial_running = False

    @property
    def is_closed(self) -> bool:
        with self._lock:
            return self._retry_at is None

    def refusal(self) -> str | None:
        """Why a call would be refused right now (``None``: it would be let through). Takes no
        trial; used before waiting for a slot, so a call to an open circuit does not wait."""
        with self._lock:
            if self._retry_at is None:
                return None
            if self._clock() >= self._retry_at and not self._trial_running:
                return None
            return self._reason()

    def admit(self) -> Admission:
        """Before one GET: let it through (as the half-open trial once the cool-down is over) or
        refuse it. When let through, ``record`` must follow, whatever happens."""
        with self._lock:
            if self._retry_at is None:
                return Admission(None, trial=False)
            if self._clock() < self._retry_at or self._trial_running:
                return Admission(self._reason(), trial=False)
            self._trial_running = True
            return Admission(None, trial=True)

    def record(self, trial: bool, failure: str | None) -> None:
        """After one GET: ``failure`` is ``None`` (the server answered), ``TIMEOUT``/``CONNECTION``
        (it did not) or ``UNKNOWN`` (counts as nothing, but frees the trial)."""
        with self._lock:
            if trial:
                self._trial_running = False
            if failure not in (None, TIMEOUT, CONNECTION):
                return
            if failure is None:
                if self._retry_at is not None:
                    log.info("FHIR server circuit closed", extra={"fhir_server": self.label})
                self._failures, self._retry_at = 0, None
                return
            self._failures += 1
            self._kind = failure
            if trial or (self._retry_at is None and self._failures >= self.threshold):
                self._retry_at = self._clock() + self.cooldown
                log.warning(
                    "FHIR server circuit opened",
                    extra={
                        "fhir_server": self.label,
                        "consecutive_failures": self._failures,
                        "failure": failure,
                        "cooldown_s": self.cooldown,
                    },
                )

    def _reason(self) -> str:
        return (
            f"FHIR server unavailable (circuit open after repeated {_KIND_WORDS.get(self._kind, 'failures')}; "
            f"retrying after {self.cooldown:g} s)"
        )


class ServerGuard:
    """The cap and the breaker of one FHIR server origin."""

    def __init__(self, *, concurrency: int, breaker: CircuitBreaker):
        self.concurrency = max(1, concurrency)
        self.breaker = breaker
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._lock = threading.Lock()
        self._in_use = 0

    def acquire(self, deadline: float) -> str | None:
        """Take a slot, waiting at most until ``deadline`` (a ``time.monotonic()`` instant).
        ``None`` when a slot was taken (``release`` must follow), else the reason there is none.
        Call from the hook call's own thread: waiting here must not hold a shared fetch thread."""
        refusal = self.breaker.refusal()
        if refusal:
            return refusal
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return BUSY_REASON
        with self._lock:
            self._in_use += 1
        refusal = self.breaker.refusal()  # the circuit may have opened while we waited
        if refusal:
            self.release()
        return refusal

    def release(self) -> None:
        with self._lock:
            self._in_use -= 1
        self._slots.release()

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    @property
    def idle(self) -> bool:
        return self.in_use == 0 and self.breaker.is_closed


def origin_of(url: str) -> tuple[str, str, int | None]:
    """The (scheme, host, port) a URL connects to; the key of its guard."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", url, None)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").rstrip(".").lower(), port or {"http": 80, "https": 443}.get(scheme)


class ServerGuards:
    """One ``ServerGuard`` per FHIR server origin, created on first use (thread-safe)."""

    def __init__(
        self,
        *,
        concurrency: int,
        failure_threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.concurrency = concurrency
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._guards: dict[tuple[str, str, int | None], ServerGuard] = {}

    def for_url(self, url: str) -> ServerGuard:
        key = origin_of(url)
        with self._lock:
            guard = self._guards.get(key)
            if guard is None:
                if len(self._guards) >= _MAX_ORIGINS:
                    self._guards = {k: g for k, g in self._guards.items() if not g.idle}
                breaker = CircuitBreaker(
                    threshold=self.failure_threshold,
                    cooldown=self.cooldown,
                    label=f"{key[1]}:{key[2]}",
                    clock=self._clock,
                )
                guard = self._guards[key] = ServerGuard(concurrency=self.concurrency, breaker=breaker)
            return guard
