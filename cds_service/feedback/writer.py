"""Served-card rows, written off the request thread (or before the answer, where an override
sent to another process must find them), and the retention of served cards and feedback.

A hook call only puts its cards' rows on a queue (``submit``: microseconds, no lock on the
database). One thread per process takes whatever has accumulated and writes it in one transaction
(one commit for many calls, none waited for by a caller). Once rows arrive the thread lingers a
moment (``linger``, 0.2 s) before writing, so that the calls of that moment share one
transaction and one fsync instead of each waking the thread and committing: the hook calls'
threads then spend their time on hook calls. Feedback asks for the rows first (``flush``), which
ends the linger at once, so an override always finds its card. The same thread deletes
served-card rows older than the retention period, and feedback older than its own, every
``purge_interval`` seconds.

Write-through (``write_through``: PostgreSQL, or several worker processes on the SQLite file): an
override is checked against the served-card row of its card (the caller, the service, the reasons
the card offered) by whichever process gets it, and ``flush`` only reaches this process's queue.
So the rows of a hook call whose cards offer override reasons (snoozing or not: a reason is only
kept when the card is found) are written before its answer leaves
(``FeedbackStore.write_served_now``: one short transaction, its commit visible at once, not waited
on to reach the disk), bounded by the hook call's store timeout and skipped while the store is
down; rows not written so are queued as any others. A call without cards writes nothing.

What is kept, and what may be lost:

* a clean shutdown (SIGTERM/SIGINT: ``close``) writes every queued row before the process ends;
* while the store is unreachable, rows wait in the queue and the write is retried; when the queue
  is full, a hook call waits up to ``put_timeout`` seconds, then its rows are dropped (counted in
  ``cds_served_cards_dropped_total`` and logged): the hook call itself is never failed for them;
* a crash (SIGKILL, power loss) loses at most the rows still queued: the report then attributes
  feedback on those cards to no rule. Feedback itself is never queued: it is written and
  committed before the EHR gets its 200.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from cds_service import metrics
from cds_service.errors import ServiceUnavailable
from cds_service.feedback.scope import UNAUTHENTICATED
from cds_service.feedback.store import FeedbackStore, ServedCard, log, served_rows, utcnow
from cds_service.protocol import Card

BATCH_ROWS = 1000  # most rows per transaction
LINGER_SECONDS = 0.2  # how long rows may wait for others to share their transaction
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)  # backoff between failed writes


class ServedCardWriter:
    def __init__(
        self,
        store: FeedbackStore,
        *,
        max_queue: int = 10_000,
        retention: timedelta | None = timedelta(days=365),
        feedback_retention: timedelta | None = None,
        purge_interval: float = 3600.0,
        put_timeout: float = 2.0,
        linger: float = LINGER_SECONDS,
        now: Callable[[], datetime] = utcnow,
        write_through: bool = False,
    ):
        self.store = store
        self.retention = retention
        self.feedback_retention = feedback_retention
        self.write_through = write_through
        self.purge_interval = purge_interval
        self.put_timeout = put_timeout
        self.linger = linger
        self._now = now
        self._write_now_please = threading.Event()  # set by flush and close: stop lingering
        # One item per hook call (its cards' rows); None asks the thread to stop.
        self._queue: queue.Queue[list[ServedCard] | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._submitted = 0
        self._finished = 0  # written or dropped
        self._thread: threading.Thread | None = None
        self._closing = False
        self._next_purge = 0.0  # monotonic: the first purge runs when the thread starts

    # -- request side -----------------------------------------------------------------------------
    def submit(
        self, service_id: str, hook: str, patient_id: str, cards: Iterable[Card], scope: str = UNAUTHENTICATED
    ) -> None:
        cards = list(cards)
        rows = served_rows(service_id, hook, patient_id, cards, scope)
        if not rows:
            return
        if self.write_through and self._offers_override_reasons(cards) and self.store.write_served_now(rows):
            metrics.SERVED_CARDS_WRITTEN.inc(len(rows))
            return
        if self._closing:  # a call finishing during shutdown: write it now, the thread is gone
            self._write_now(rows)
            return
        self.start()
        with self._lock:
            self._submitted += len(rows)
        try:
            self._queue.put(rows, timeout=self.put_timeout)  # one item per call: one lock, one wake-up
        except queue.Full:
            self._dropped(len(rows), "served-card queue full (the store is slow or unreachable)")

    @staticmethod
    def _offers_override_reasons(cards: list[Card]) -> bool:
        return any(card.overrideReasons for card in cards)

    def _write_now(self, rows: list[ServedCard]) -> None:
        with self._lock:
            self._submitted += len(rows)
        try:
            self.store.write_served(rows)
        except Exception as exc:
            self._dropped(len(rows), f"written at shutdown and failed ({type(exc).__name__})")
            return
        metrics.SERVED_CARDS_WRITTEN.inc(len(rows))
        with self._lock:
            self._finished += len(rows)
            self._done.notify_all()

    def _dropped(self, count: int, why: str) -> None:
        metrics.SERVED_CARDS_DROPPED.inc(count)
        log.error("served-card rows dropped", extra={"rows": count, "reason": why})
        with self._lock:
            self._finished += count
            self._done.notify_all()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (once; also started by the first ``submit``)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closing:
                    self._thread = threading.Thread(target=self._run, name="served-card-writer", daemon=True)
                    self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row submitted so far is written (or dropped); False on timeout."""
        with self._lock:
            target = self._submitted
            if self._thread is None or self._finished >= target:
                return self._finished >= target
            self._write_now_please.set()
            return self._done.wait_for(lambda: self._finished >= target, timeout=timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the thread (the process is shutting down)."""
        with self._lock:
            self._closing = True
            thread = self._thread
        if thread is None:
            return
        self._queue.put(None)  # wakes the thread; it drains the queue and stops
        self._write_now_please.set()
        thread.join(timeout)
        if thread.is_alive():
            pending = self._queue.qsize()
            log.error("served-card rows not written at shutdown", extra={"rows": pending})

    def pending(self) -> int:
        with self._lock:
            return self._submitted - self._finished

    # -- the writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while True:
            batch: list[ServedCard] = []
            try:
                first = self._queue.get(timeout=self._seconds_to_purge())
            except queue.Empty:
                first = None
                self._maybe_purge()
                continue
            if first is None:
                stopping = True
            else:
                batch.extend(first)
                # Let the rows of the calls of the next moment join this transaction (flush and
                # close cut it short).
                self._write_now_please.wait(self.linger)
            self._write_now_please.clear()
            # Whatever else is already waiting goes into the same transaction.
            while len(batch) < BATCH_ROWS:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    batch.extend(item)
            if batch:
                self._write(batch, give_up=stopping)
            metrics.SERVED_CARD_QUEUE.set(self._queue.qsize())
            if stopping and self._queue.empty():
                return
            self._maybe_purge()

    def _write(self, batch: list[ServedCard], *, give_up: bool) -> None:
        attempt = 0
        while True:
            try:
                self.store.write_served(batch)
            except Exception as exc:  # the store is down, or a bug: never lose the thread
                metrics.SERVED_CARD_WRITE_ERRORS.inc()
                attempt += 1
                reason = exc.message if isinstance(exc, ServiceUnavailable) else type(exc).__name__
                if give_up and attempt >= len(RETRY_SECONDS):
                    self._dropped(len(batch), f"store unreachable at shutdown ({reason})")
                    return
                log.warning(
                    "served-card rows not written yet; retrying",
                    extra={"rows": len(batch), "attempt": attempt, "reason": reason},
                )
                time.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS)) - 1])
                continue
            metrics.SERVED_CARDS_WRITTEN.inc(len(batch))
            with self._lock:
                self._finished += len(batch)
                self._done.notify_all()
            return

    def _seconds_to_purge(self) -> float:
        if self.retention is None and self.feedback_retention is None:
            return 3600.0
        return max(0.01, self._next_purge - time.monotonic())

    def _maybe_purge(self) -> None:
        if self.retention is None and self.feedback_retention is None:
            return
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + self.purge_interval
        if self.retention is not None:
            cutoff = self._now() - self.retention
            deleted = self._purge("served-card", self.store.purge_served, cutoff)
            if deleted:
                metrics.SERVED_CARDS_PURGED.inc(deleted)
        if self.feedback_retention is not None:
            self._purge("feedback", self.store.purge_feedback, self._now() - self.feedback_retention)

    def _purge(self, what: str, purge: Callable[[datetime], int], cutoff: datetime) -> int:
        try:
            deleted = purge(cutoff)
        except Exception as exc:
            reason = exc.message if isinstance(exc, ServiceUnavailable) else type(exc).__name__
            log.warning(f"{what} retention purge failed; next try at the next interval", extra={"reason": reason})
            return 0
        if deleted:
            log.info(
                f"{what} rows past retention deleted",
                extra={"rows": deleted, "older_than": cutoff.isoformat(timespec="seconds")},
            )
        return deleted
