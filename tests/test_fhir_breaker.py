"""The per-server guard: the concurrency cap (slots waited for up to the deadline, never longer)
and the circuit breaker's states (closed, open, half-open with exactly one trial)."""

from __future__ import annotations

import threading
import time

from cds_service.fhir.breaker import (
    BUSY_REASON,
    CONNECTION,
    TIMEOUT,
    UNKNOWN,
    CircuitBreaker,
    ServerGuard,
    ServerGuards,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def opened_breaker(clock: FakeClock, failure: str = TIMEOUT) -> CircuitBreaker:
    breaker = CircuitBreaker(threshold=2, cooldown=30, clock=clock)
    for _ in range(2):
        breaker.record(breaker.admit().trial, failure)
    return breaker


def test_the_circuit_stays_closed_below_the_threshold_and_opens_at_it():
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    for _ in range(2):
        breaker.record(False, CONNECTION)
    assert breaker.admit().refused is None
    breaker.record(False, CONNECTION)
    assert breaker.admit().refused == (
        "FHIR server unavailable (circuit open after repeated connection failures; retrying after 30 s)"
    )


def test_in_half_open_exactly_one_trial_goes_through_at_a_time():
    clock = FakeClock()
    breaker = opened_breaker(clock)
    clock.now += 30
    assert breaker.refusal() is None  # a caller may wait for a slot: a trial is possible
    first, second = breaker.admit(), breaker.admit()
    assert first.refused is None and first.trial
    assert second.refused and not second.trial
    assert breaker.refusal() == second.refused
    breaker.record(True, None)  # the trial got an answer: closed
    assert breaker.admit().refused is None and breaker.is_closed


def test_a_trial_that_never_reached_the_server_frees_the_trial_without_deciding():
    clock = FakeClock()
    breaker = opened_breaker(clock)
    clock.now += 30
    breaker.record(breaker.admit().trial, UNKNOWN)
    assert not breaker.is_closed
    assert breaker.admit().trial  # another trial may go


def test_a_failed_trial_reopens_the_circuit_for_a_whole_cool_down():
    clock = FakeClock()
    breaker = opened_breaker(clock)
    clock.now += 30
    breaker.record(breaker.admit().trial, TIMEOUT)
    clock.now += 29
    assert breaker.admit().refused and "repeated timeouts" in breaker.admit().refused
    clock.now += 1
    assert breaker.admit().trial


def test_a_slot_is_waited_for_only_until_the_deadline_then_the_reason_is_busy():
    guard = ServerGuard(concurrency=1, breaker=CircuitBreaker(threshold=5, cooldown=30))
    assert guard.acquire(time.monotonic() + 1) is None
    started = time.monotonic()
    assert guard.acquire(started + 0.05) == BUSY_REASON
    assert 0.04 < time.monotonic() - started < 0.5
    assert guard.acquire(started - 1) == BUSY_REASON  # deadline already past: no wait at all
    guard.release()
    assert guard.acquire(time.monotonic() + 1) is None and guard.in_use == 1


def test_a_slot_freed_while_waiting_is_taken():
    guard = ServerGuard(concurrency=1, breaker=CircuitBreaker(threshold=5, cooldown=30))
    guard.acquire(time.monotonic() + 1)
    threading.Timer(0.02, guard.release).start()
    assert guard.acquire(time.monotonic() + 1) is None


def test_with_the_circuit_open_no_slot_is_waited_for():
    clock = FakeClock()
    guard = ServerGuard(concurrency=1, breaker=opened_breaker(clock, CONNECTION))
    started = time.monotonic()
    assert "circuit open" in (guard.acquire(started + 5) or "")
    assert time.monotonic() - started < 0.1 and guard.in_use == 0


def test_guards_are_kept_per_origin():
    guards = ServerGuards(concurrency=2, failure_threshold=3, cooldown=30)
    assert guards.for_url("https://fhir.example.org/r4") is guards.for_url("https://FHIR.example.org:443/other")
    assert guards.for_url("https://fhir.example.org/r4") is not guards.for_url("https://fhir.example.org:8443/r4")
    assert guards.for_url("http://127.0.0.1:8081/a") is not guards.for_url("http://127.0.0.1:8082/a")
