"""Served-card log and feedback store: the interface, and what both backends share.

Two backends behind one interface (``FeedbackStore``), on one schema (``migrations/``): the
embedded SQLite file by default (``sqlite.py``), PostgreSQL when ``CDS_DATABASE_URL`` is set
(``postgres.py``), shared by every replica. The SQL is the same for both (written with ``?``
markers, see ``migrations.Dialect``); only connections, locking and timestamps differ.

Every row carries the **scope** of the caller it belongs to (``scope.py``: the verified JWT's
issuer and tenant, or ``unauthenticated``).

* ``write_served``: one row per card we sent (card uuid, service, rule id, indicator, drug, a
  salted hash of the patient id, the caller's scope, time), so feedback can be attributed to the
  rule that produced the card and an override checked against what the card offered. The app
  queues these rows and writes them in batches off the request thread (``writer.py``); with
  several processes, cards that offer override reasons are written before the answer leaves
  (``write_served_now``), so an override sent to any process finds its card.
* ``record_feedback``: idempotent, also across replicas and under concurrency (a unique key per
  item and ``INSERT ... ON CONFLICT DO NOTHING``); a client resending the same item stores nothing
  new. It returns only once the rows are committed durably (SQLite ``synchronous=FULL``;
  PostgreSQL ``synchronous_commit=on``): feedback answered 200 survives a crash or a power loss.
  What is stored of an item is bounded and holds no text the EHR chose except a clinician's
  comment (cut to ``MAX_COMMENT_CHARS``): an override's coded reason is kept as its code, and
  only when it is one the served card offered, in the service's code system; its display is
  never stored. Feedback on a card that is not in the sender's served-card log is stored too
  (the EHR did see some card), attributed to no rule (``UNKNOWN_RULE``), and within a daily
  allowance per caller; each card takes at most ``max_per_card`` distinct items.
* ``report``: per rule, cards served, accepted, overridden and the override reasons given, counted
  by the governance report's rule (the latest feedback per card: ``governance.build``).
* ``purge_served`` / ``purge_feedback``: delete rows older than the retention period, in small
  batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import orjson

from cds_service.checks.findings import Snooze
from cds_service.errors import BadRequest
from cds_service.feedback.guard import HookPathGuard
from cds_service.feedback.migrations import Dialect
from cds_service.feedback.scope import UNAUTHENTICATED
from cds_service.governance.build import governance_data_from_records, reason_label
from cds_service.governance.model import GovernanceData
from cds_service.knowledge.content import CardContentError, content
from cds_service.protocol import Card, FeedbackItem

log = logging.getLogger("cds_service.feedback")

# The rule id the report gives feedback on a card that is not in the served-card log: a card this
# service never served (or one served before the log was started, or purged by retention).
UNKNOWN_RULE = "(card not in served log)"
UNATTRIBUTED = "(unattributed)"

# Rows deleted per statement by the retention purge: short transactions, no long lock.
PURGE_BATCH = 5000

# Bounds on what a feedback request may hold (a request past them is refused with 400) and on the
# one free text that is stored (cut, not refused: a clinician's comment is never lost for its size).
MAX_ITEMS_PER_REQUEST = 100
MAX_ID_CHARS = 128  # a card uuid, a suggestion id (the service's own are 36 characters)
MAX_SUGGESTIONS_PER_ITEM = 20
MAX_COMMENT_CHARS = 1000
# The window of the per-caller allowance for feedback on cards not in its served-card log.
UNSERVED_WINDOW = timedelta(days=1)

# What became of an override's coded reason (feedback.reason_check).
RECORDED = "recorded"
NOT_OFFERED = "not-offered"
CARD_UNKNOWN = "card-unknown"

SERVED_COLUMNS = ("card_uuid", "service_id", "hook", "rule_id", "patient_hash", "served_at", "scope")
FEEDBACK_COLUMNS = (
    "dedup_key",
    "service_id",
    "card_uuid",
    "outcome",
    "accepted_suggestions",
    "override_system",
    "override_code",
    "override_display",
    "user_comment",
    "outcome_timestamp",
    "received_at",
    "body",
    "scope",
    "reason_check",
    "card_served",
)
TIMESTAMP_COLUMNS = frozenset({"served_at", "outcome_timestamp", "received_at"})


@dataclass
class RuleReport:
    rule_id: str
    served: int = 0
    accepted: int = 0
    overridden: int = 0
    override_reasons: dict[str, int] = field(default_factory=dict)
    # False for the UNKNOWN_RULE line: feedback on cards this service has no record of serving.
    attributed: bool = True


@dataclass(frozen=True)
class GovernanceRecords:
    """Plain rows for the governance report (cds_service.governance builds the page from them)."""

    # card uuid, rule id, indicator, served at, suggestion uuid -> label
    served: list[tuple[str, str, str, datetime, dict[str, str]]]
    # card uuid, outcome, outcome time, override reason label, has a comment, suggestion ids taken,
    # attributed (the card is in the log as served to the sender by the same service)
    feedback: list[tuple[str, str, datetime, str | None, bool, tuple[str, ...], bool]]
    snoozes: list[tuple[str, str, int, datetime, datetime]]  # rule, drug, count, first end, last end


@dataclass(frozen=True)
class ServedCard:
    """One card sent to an EHR, as queued for the served-card log (the patient id is hashed
    when the row is written, never stored)."""

    card_uuid: str
    service_id: str
    hook: str
    rule_id: str
    patient_id: str
    served_at: datetime
    subject: str = ""  # the drug the card was about ("" for a chart review)
    indicator: str = ""
    suggestion_labels: str = "{}"  # JSON: suggestion uuid -> label
    scope: str = UNAUTHENTICATED  # whom it was served to (scope.py)


@dataclass(frozen=True)
class FeedbackResult:
    """What became of one feedback item (the endpoint answers one per item, in order).

    ``result``: ``stored``, ``duplicate`` (the same item was stored before) or ``refused`` (a bound
    was reached: ``detail`` says which; nothing stored). ``reason``, for an override that named a
    coded reason: ``recorded`` (one the card offered: kept, and it may snooze),
    ``not-offered`` (not one the card offered, or not in the service's code system: the override
    is stored without it and snoozes nothing) or ``card-unknown`` (the card is not in the sender's
    served-card log for this service: likewise). ``snoozed_until``: the snooze this item started."""

    result: Literal["stored", "duplicate", "refused"]
    reason: str | None = None
    snoozed_until: datetime | None = None
    detail: str | None = None

    @property
    def stored(self) -> bool:
        return self.result == "stored"

    def as_json(self) -> dict[str, str]:
        out: dict[str, str] = {"result": self.result}
        if self.reason is not None:
            out["overrideReason"] = self.reason
        if self.snoozed_until is not None:
            out["snoozedUntil"] = self.snoozed_until.astimezone(UTC).isoformat(timespec="seconds")
        if self.detail is not None:
            out["detail"] = self.detail
        return out


def served_rows(
    service_id: str, hook: str, patient_id: str, cards: Iterable[Card], scope: str = UNAUTHENTICATED
) -> list[ServedCard]:
    now = utcnow()
    return [
        ServedCard(
            c.uuid,
            service_id,
            hook,
            c.rule_id or UNATTRIBUTED,
            patient_id,
            now,
            c.subject or "",
            c.indicator,
            orjson.dumps({s.uuid: s.label for s in c.suggestions or []}).decode(),
            scope,
        )
        for c in cards
    ]


def check_feedback_bounds(items: Sequence[FeedbackItem]) -> None:
    """Refuse (``BadRequest``: 400) a feedback request past the bounds on what it may hold; the
    message names the member, never its value."""
    if len(items) > MAX_ITEMS_PER_REQUEST:
        raise BadRequest(f"feedback: at most {MAX_ITEMS_PER_REQUEST} items per request; send the rest in another.")
    for n, item in enumerate(items):
        if len(item.card) > MAX_ID_CHARS:
            raise BadRequest(f"feedback.{n}.card: at most {MAX_ID_CHARS} characters (a card's uuid).")
        suggestions = item.acceptedSuggestions or []
        if len(suggestions) > MAX_SUGGESTIONS_PER_ITEM:
            raise BadRequest(f"feedback.{n}.acceptedSuggestions: at most {MAX_SUGGESTIONS_PER_ITEM} suggestions.")
        for m, suggestion in enumerate(suggestions):
            if len(suggestion.id) > MAX_ID_CHARS:
                raise BadRequest(
                    f"feedback.{n}.acceptedSuggestions.{m}.id: at most {MAX_ID_CHARS} characters (a suggestion's uuid)."
                )


def offered_reasons(rule_id: str, indicator: str) -> frozenset[str]:
    """The override reason codes a card of this rule and indicator offers, as the card renderer
    computes them (a critical card never offers a snooze longer than its cap); none for a rule the
    card content does not know."""
    # The card content's own function, the one the renderer uses: what is accepted back is
    # exactly what cards offer.
    try:
        return frozenset(content().offered_reasons(rule_id, indicator))
    except CardContentError:
        return frozenset()


def reason_display(code: str) -> str:
    """The service's own wording of one of its override reason codes (the code itself otherwise)."""
    return content().override_codes.get(code, code)


class FeedbackStore(Protocol):
    """What the app and the ``feedback-report`` command use; both backends implement it."""

    backend: str  # "sqlite" | "postgresql"
    snooze_days: dict[str, int]

    def migrate(self) -> list[int]: ...

    def record_served(
        self, service_id: str, hook: str, patient_id: str, cards: Iterable[Card], scope: str = UNAUTHENTICATED
    ) -> None: ...

    def write_served(self, rows: Sequence[ServedCard]) -> None: ...

    def write_served_now(self, rows: Sequence[ServedCard]) -> bool: ...

    def add_feedback(
        self, service_id: str, items: Iterable[FeedbackItem], scope: str = UNAUTHENTICATED
    ) -> tuple[int, int]: ...

    def store_feedback(
        self, service_id: str, items: Iterable[FeedbackItem], scope: str = UNAUTHENTICATED
    ) -> list[bool]: ...

    def record_feedback(
        self, service_id: str, items: Iterable[FeedbackItem], scope: str = UNAUTHENTICATED
    ) -> list[FeedbackResult]: ...

    def report(self) -> list[RuleReport]: ...

    def active_snoozes(self, patient_id: str, now: datetime, scope: str = UNAUTHENTICATED) -> tuple[Snooze, ...]: ...

    def governance_records(self, now: datetime) -> GovernanceRecords: ...

    def end_snooze(self, card_uuid: str) -> bool: ...

    def purge_served(self, older_than: datetime) -> int: ...

    def purge_feedback(self, older_than: datetime) -> int: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def dedup_key(service_id: str, body: dict[str, Any], scope: str = UNAUTHENTICATED) -> str:
    """The item's identity: the same item sent again by the same caller to the same service. Its
    form without a scope (authentication off) is the one used before scopes existed, so items
    stored then are still recognised when resent."""
    parts: list[Any] = [service_id, body] if scope == UNAUTHENTICATED else [service_id, scope, body]
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Cursor(Protocol):
    """What the shared SQL needs of a DB-API cursor (sqlite3 and psycopg alike)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: Any, params: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class _Served:
    """A served-card row as feedback needs it."""

    patient_hash: str
    rule_id: str
    subject: str
    indicator: str
    service_id: str
    scope: str


class SqlFeedbackStore:
    """The queries both backends run. A backend supplies ``_transaction`` (a cursor inside one
    transaction, committed at the end of the block, rolled back on error; with ``timeout``, a
    hook call's bound on every wait; ``durable=False``: the commit need not wait for the disk,
    only be visible), ``_timestamp`` (how a datetime is bound) and ``migrate``; it may supply
    ``_reading`` for reads that never write and ``_lock`` for per-key locks inside a transaction."""

    backend = "sql"
    dialect: Dialect

    def __init__(self) -> None:
        self._salt: str | None = None
        # Override reason code -> days it snoozes a card (cards/common.toml); {} turns snoozing off.
        self.snooze_days: dict[str, int] = dict(content().snooze_days)
        # Indicator -> the longest snooze a card of that indicator may get (critical: 30 days).
        self.max_snooze_days: dict[str, int] = dict(content().max_snooze_days)
        # Bounds on feedback (CDS_FEEDBACK_MAX_PER_CARD, CDS_FEEDBACK_UNSERVED_PER_DAY).
        self.max_per_card = 4
        self.unserved_per_day = 1000
        # A hook call's bound on waiting for this store (CDS_SNOOZE_LOOKUP_TIMEOUT), and the
        # circuit that stops hook calls asking while it is down (guard.py).
        self.hook_timeout = 0.2
        self.hook_guard = HookPathGuard()

    # -- backend hooks ----------------------------------------------------------------------------
    def _transaction(self, timeout: float | None = None, durable: bool = True) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _reading(self, *, snapshot: bool = True) -> AbstractContextManager[Cursor]:
        """A cursor for reads only. By default a transaction like any other; SQLite overrides it
        so that a hook call's snooze lookup never queues for the write lock behind a commit.
        ``snapshot=False``: the block runs a single statement, which needs no transaction."""
        return self._transaction()

    def _select(self, sql: str, params: tuple[Any, ...], timeout: float | None = None) -> list[Any]:
        """The rows of one SELECT (a single statement needs no transaction around it)."""
        if timeout is not None:
            with self._transaction(timeout=timeout) as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        with self._reading(snapshot=False) as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def _lock(self, cur: Cursor, keys: Iterable[str]) -> None:
        """Hold a lock on each key until the transaction ends (taken in a fixed order). SQLite
        needs none: its write transactions are serialised already."""

    def _timestamp(self, value: datetime) -> Any:
        raise NotImplementedError

    def migrate(self) -> list[int]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (nothing to do by default)."""

    # -- shared ------------------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return self.dialect.sql(text)

    def _patient_salt(self, timeout: float | None = None) -> str:
        # A random salt per database keeps patient hashes stable here (and across replicas sharing
        # the database) but unlinkable elsewhere.
        if self._salt is None:
            with self._transaction(timeout=timeout) as cur:
                cur.execute(
                    self._sql("INSERT INTO meta(key, value) VALUES ('patient_salt', ?) ON CONFLICT (key) DO NOTHING"),
                    (secrets.token_hex(16),),
                )
                cur.execute("SELECT value FROM meta WHERE key = 'patient_salt'")
                self._salt = str(cur.fetchone()[0])
        return self._salt

    def patient_hash(self, patient_id: str, timeout: float | None = None) -> str:
        return hashlib.sha256(f"{self._patient_salt(timeout)}:{patient_id}".encode()).hexdigest()

    def record_served(
        self, service_id: str, hook: str, patient_id: str, cards: Iterable[Card], scope: str = UNAUTHENTICATED
    ) -> None:
        """Write the served cards of one call now (the app queues them instead: ``writer.py``)."""
        self.write_served(served_rows(service_id, hook, patient_id, cards, scope))

    def write_served(self, rows: Sequence[ServedCard]) -> None:
        """Write served-card rows in one transaction (one commit for the whole batch)."""
        if not rows:
            return
        values = self._served_values(rows, self._patient_salt())
        with self._transaction() as cur:
            self._insert_served(cur, values)

    def write_served_now(self, rows: Sequence[ServedCard]) -> bool:
        """On a hook call, before its answer leaves: write its served-card rows so that every
        process sees them at once. Bounded by the hook call's timeout and skipped while the store
        is known to be down (``guard.py``); the commit is visible at once but not waited on to
        reach the disk (the rows are as durable as queued ones). False when not written: the
        caller queues the rows instead."""
        if not rows:
            return True

        def write() -> None:
            values = self._served_values(rows, self._patient_salt(self.hook_timeout))
            with self._transaction(timeout=self.hook_timeout, durable=False) as cur:
                self._insert_served(cur, values)

        try:
            # Skipped while the circuit is open; a failure here does not open it (a lock held a
            # moment too long by another writer is not an outage: the snooze lookup, which runs
            # first on every such call, is what notices a store that is down).
            self.hook_guard.run(write, failure_opens=False)
        except Exception as exc:  # the store is down or slow: the rows go to the queue
            log.debug("served-card rows not written through", extra={"reason": type(exc).__name__})
            return False
        return True

    def _served_values(self, rows: Sequence[ServedCard], salt: str) -> list[tuple[Any, ...]]:
        hashes: dict[str, str] = {}
        values = []
        for row in rows:
            if row.patient_id not in hashes:
                hashes[row.patient_id] = hashlib.sha256(f"{salt}:{row.patient_id}".encode()).hexdigest()
            values.append(
                (
                    row.card_uuid,
                    row.service_id,
                    row.hook,
                    row.rule_id,
                    hashes[row.patient_id],
                    self._timestamp(row.served_at),
                    row.subject,
                    row.indicator,
                    row.suggestion_labels,
                    row.scope,
                )
            )
        return values

    def _insert_served(self, cur: Cursor, values: list[tuple[Any, ...]]) -> None:
        cur.executemany(
            self._sql(
                "INSERT INTO served_card(card_uuid, service_id, hook, rule_id, patient_hash, served_at,"
                " subject, indicator, suggestion_labels, scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (card_uuid) DO NOTHING"
            ),
            values,
        )

    # -- feedback ----------------------------------------------------------------------------------

    def add_feedback(
        self, service_id: str, items: Iterable[FeedbackItem], scope: str = UNAUTHENTICATED
    ) -> tuple[int, int]:
        """Store each item once; return (stored, duplicates) once committed (refused items, past a
        bound, are in neither)."""
        results = self.record_feedback(service_id, items, scope)
        return sum(r.result == "stored" for r in results), sum(r.result == "duplicate" for r in results)

    def store_feedback(
        self, service_id: str, items: Iterable[FeedbackItem], scope: str = UNAUTHENTICATED
    ) -> list[bool]:
        """Per item, True when it was stored now (``record_feedback`` says more)."""
        return [r.stored for r in self.record_feedback(service_id, items, scope)]

    def record_feedback(
        self, service_id: str, items: Iterable[FeedbackItem], scope: str = UNAUTHENTICATED
    ) -> list[FeedbackResult]:
        """Store each item once, in one transaction, for the caller ``scope`` on the service
        ``service_id``; what became of each item, once committed."""
        items = list(items)
        received = utcnow()
        received_at = self._timestamp(received)
        insert = self._sql(
            "INSERT INTO feedback(dedup_key, service_id, card_uuid, outcome, accepted_suggestions,"
            " override_system, override_code, override_display, user_comment, outcome_timestamp,"
            " received_at, body, scope, reason_check, card_served)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING"
        )
        results: list[FeedbackResult] = []
        with self._transaction() as cur:
            served: dict[str, _Served | None] = {}
            for item in items:
                if item.card not in served:
                    served[item.card] = self._served_card(cur, item.card)
            mine = {card for card, row in served.items() if row and row.scope == scope and row.service_id == service_id}
            locks = {f"card\n{scope}\n{service_id}\n{card}" for card in served}
            if len(mine) < len(served):
                locks.add(f"unserved\n{scope}")
            self._lock(cur, locks)
            unserved_today: int | None = None
            for item in items:
                body = item.model_dump(mode="json", exclude_none=True)
                key = dedup_key(service_id, body, scope)
                cur.execute(self._sql("SELECT 1 FROM feedback WHERE dedup_key = ?"), (key,))
                if cur.fetchone() is not None:
                    results.append(FeedbackResult("duplicate"))
                    continue
                known = item.card in mine
                cur.execute(
                    self._sql("SELECT COUNT(*) FROM feedback WHERE card_uuid = ? AND scope = ? AND service_id = ?"),
                    (item.card, scope, service_id),
                )
                if int(cur.fetchone()[0]) >= self.max_per_card:
                    results.append(
                        FeedbackResult(
                            "refused",
                            detail=f"this card already has {self.max_per_card} feedback items; no more are stored",
                        )
                    )
                    continue
                if not known:
                    if unserved_today is None:
                        cur.execute(
                            self._sql(
                                "SELECT COUNT(*) FROM feedback WHERE scope = ? AND card_served = 0 AND received_at > ?"
                            ),
                            (scope, self._timestamp(received - UNSERVED_WINDOW)),
                        )
                        unserved_today = int(cur.fetchone()[0])
                    if unserved_today >= self.unserved_per_day:
                        results.append(
                            FeedbackResult(
                                "refused",
                                detail="daily allowance reached for feedback on cards not served to this caller "
                                "by this service",
                            )
                        )
                        continue
                row = served[item.card] if known else None
                outcome = self._checked_reason(item, row, known)
                stored = self._stored_item(item, outcome)
                cur.execute(
                    insert,
                    (
                        key,
                        service_id,
                        item.card,
                        item.outcome,
                        stored["accepted"],
                        content().override_system if outcome.code else None,
                        outcome.code,
                        None,  # the display an EHR sends is never stored
                        stored["comment"],
                        self._outcome_timestamp(item.outcomeTimestamp),
                        received_at,
                        stored["body"],
                        scope,
                        outcome.check,
                        1 if known else 0,
                    ),
                )
                if cur.rowcount <= 0:  # stored by a concurrent request a moment ago
                    results.append(FeedbackResult("duplicate"))
                    continue
                if not known:
                    unserved_today = (unserved_today or 0) + 1
                until = None
                if row is not None and outcome.code and item.outcome == "overridden":
                    until = self._record_snooze(cur, item.card, outcome.code, row, received)
                results.append(FeedbackResult("stored", reason=outcome.check or None, snoozed_until=until))
        return results

    def _served_card(self, cur: Cursor, card_uuid: str) -> _Served | None:
        cur.execute(
            self._sql(
                "SELECT patient_hash, rule_id, subject, indicator, service_id, scope FROM served_card"
                " WHERE card_uuid = ?"
            ),
            (card_uuid,),
        )
        found = cur.fetchone()
        return _Served(*(str(v) for v in found)) if found is not None else None

    @staticmethod
    def _checked_reason(item: FeedbackItem, served: _Served | None, known: bool) -> _Reason:
        """An override's coded reason, kept only when it is one the served card offered, in the
        service's own code system."""
        coding = item.overrideReason.reason if item.overrideReason else None
        if item.outcome != "overridden" or coding is None:
            return _Reason(None, "")
        if not known or served is None:
            return _Reason(None, CARD_UNKNOWN)
        if coding.system == content().override_system and coding.code in offered_reasons(
            served.rule_id, served.indicator
        ):
            return _Reason(coding.code, RECORDED)
        return _Reason(None, NOT_OFFERED)

    @staticmethod
    def _stored_item(item: FeedbackItem, reason: _Reason) -> dict[str, str | None]:
        """What is stored of an item, bounded: suggestion ids (bounded by ``check_feedback_bounds``),
        the comment cut to ``MAX_COMMENT_CHARS``, and the item as stored (no member the service
        does not use, no display)."""
        taken = [s.id[:MAX_ID_CHARS] for s in (item.acceptedSuggestions or [])[:MAX_SUGGESTIONS_PER_ITEM]]
        comment = item.overrideReason.userComment if item.overrideReason else None
        if comment is not None:
            comment = comment[:MAX_COMMENT_CHARS]
        body: dict[str, Any] = {
            "card": item.card[:MAX_ID_CHARS],
            "outcome": item.outcome,
            "outcomeTimestamp": item.outcomeTimestamp.isoformat(),
        }
        if taken:
            body["acceptedSuggestions"] = [{"id": s} for s in taken]
        override: dict[str, Any] = {}
        if reason.code:
            override["reason"] = {"system": content().override_system, "code": reason.code}
        if comment is not None:
            override["userComment"] = comment
        if override:
            body["overrideReason"] = override
        return {
            "accepted": json.dumps(taken) if taken else None,
            "comment": comment,
            "body": json.dumps(body, sort_keys=True),
        }

    # -- snoozes (checks/snooze.py says what they do) ----------------------------------------------

    def _record_snooze(self, cur: Cursor, card_uuid: str, code: str, served: _Served, now: datetime) -> datetime | None:
        """An override with a snoozing reason the card offered, from the caller it was served to:
        remember it for that caller's patient (hashed), rule and drug until the period ends."""
        days = self.snooze_days.get(code)
        if not days:
            return None
        # A critical card is never snoozed longer than its indicator allows (clinical review F24),
        # whatever reason an EHR sends back (the card does not offer a longer one either).
        cap = self.max_snooze_days.get(served.indicator)
        if cap is not None:
            days = min(days, cap)
        until = now + timedelta(days=days)
        cur.execute(
            self._sql(
                "INSERT INTO snooze(card_uuid, patient_hash, rule_id, subject, indicator, reason_code,"
                " reason_display, created_at, until_at, scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (card_uuid) DO NOTHING"
            ),
            (
                card_uuid,
                served.patient_hash,
                served.rule_id,
                served.subject,
                served.indicator,
                code,
                reason_display(code),
                self._timestamp(now),
                self._timestamp(until),
                served.scope,
            ),
        )
        return until if cur.rowcount > 0 else None

    def active_snoozes(self, patient_id: str, now: datetime, scope: str = UNAUTHENTICATED) -> tuple[Snooze, ...]:
        """The snoozes of the caller ``scope`` that hold now for a patient (none when snoozing is
        off). On the hook calls' path: bounded by ``hook_timeout`` and refused at once while the
        store is known to be down (``ServiceUnavailable`` either way)."""
        if not self.snooze_days:
            return ()

        def read() -> list[Any]:
            patient_hash = self.patient_hash(patient_id, self.hook_timeout)
            return self._select(
                self._sql(
                    "SELECT rule_id, subject, indicator, until_at, reason_code FROM snooze"
                    " WHERE scope = ? AND patient_hash = ? AND until_at > ? AND ended_at IS NULL"
                ),
                (scope, patient_hash, self._timestamp(now)),
                timeout=self.hook_timeout,
            )

        rows = self.hook_guard.run(read)
        return tuple(
            Snooze(rule_id, subject, indicator, _as_datetime(until), reason_display(code), reason_code=code)
            for rule_id, subject, indicator, until, code in rows
        )

    def governance_records(self, now: datetime) -> GovernanceRecords:
        """What both reports are built from: every served card (rule, indicator, when), every
        feedback item (outcome, the label of its reason, suggestions taken; never a comment's
        text), whether it is attributed to the card it names, and the snoozes in force, counted
        per rule and drug. No patient hash leaves the store."""
        with self._reading() as cur:
            cur.execute(
                "SELECT card_uuid, rule_id, indicator, served_at, suggestion_labels, scope, service_id FROM served_card"
            )
            served = []
            owners: dict[str, tuple[str, str]] = {}
            for uuid, rule, indicator, at, labels, scope, service in cur.fetchall():
                served.append((uuid, rule, indicator, _as_datetime(at), json.loads(labels or "{}")))
                owners[uuid] = (scope, service)
            cur.execute(
                "SELECT card_uuid, outcome, outcome_timestamp, override_code, reason_check, user_comment,"
                " accepted_suggestions, scope, service_id FROM feedback ORDER BY id"
            )
            feedback = [
                (
                    uuid,
                    outcome,
                    _as_datetime(at),
                    reason_label(code, check),
                    bool(comment),
                    tuple(json.loads(taken or "[]")),
                    _attributed(owners.get(uuid), scope, service),
                )
                for uuid, outcome, at, code, check, comment, taken, scope, service in cur.fetchall()
            ]
            cur.execute(
                self._sql(
                    "SELECT rule_id, subject, COUNT(*), MIN(until_at), MAX(until_at) FROM snooze"
                    " WHERE until_at > ? AND ended_at IS NULL GROUP BY rule_id, subject"
                ),
                (self._timestamp(now),),
            )
            snoozes = [
                (rule, subject, int(count), _as_datetime(first), _as_datetime(last))
                for rule, subject, count, first, last in cur.fetchall()
            ]
        return GovernanceRecords(served, feedback, snoozes)

    def end_snooze(self, card_uuid: str) -> bool:
        """End a snooze early (the command ``snooze-end``); False when none is active for the card."""
        with self._transaction() as cur:
            cur.execute(
                self._sql("UPDATE snooze SET ended_at = ? WHERE card_uuid = ? AND ended_at IS NULL"),
                (self._timestamp(utcnow()), card_uuid),
            )
            return bool(cur.rowcount > 0)

    def _outcome_timestamp(self, value: datetime) -> Any:
        return self._timestamp(value)

    def report(self) -> list[RuleReport]:
        """Per rule: cards served, accepted, overridden, override reasons; then feedback no rule
        can be credited with. Counted as the committee's page counts (``governance.build``: the
        latest feedback per card), so the two never disagree."""
        records = self.governance_records(utcnow())
        data = governance_data_from_records(
            records.served, records.feedback, records.snoozes, snoozing_enabled=bool(self.snooze_days)
        )
        return rule_reports(data)

    def purge_served(self, older_than: datetime) -> int:
        """Delete served-card rows served before ``older_than``, and snoozes that ended before it,
        a batch per transaction; return how many served-card rows were deleted. Safe to run in
        several replicas at once."""
        total = self._purge(
            "DELETE FROM served_card WHERE card_uuid IN"
            " (SELECT card_uuid FROM served_card WHERE served_at < ? ORDER BY served_at LIMIT ?)",
            older_than,
        )
        self._purge(
            "DELETE FROM snooze WHERE card_uuid IN (SELECT card_uuid FROM snooze WHERE until_at < ? LIMIT ?)",
            older_than,
        )
        return total

    def purge_feedback(self, older_than: datetime) -> int:
        """Delete feedback received before ``older_than``, a batch per transaction; how many."""
        return self._purge(
            "DELETE FROM feedback WHERE id IN"
            " (SELECT id FROM feedback WHERE received_at < ? ORDER BY received_at LIMIT ?)",
            older_than,
        )

    def _purge(self, statement: str, older_than: datetime) -> int:
        sql = self._sql(statement)
        cutoff = self._timestamp(older_than)
        total = 0
        while True:
            with self._transaction() as cur:
                cur.execute(sql, (cutoff, PURGE_BATCH))
                deleted = max(cur.rowcount, 0)
            total += deleted
            if deleted < PURGE_BATCH:
                return total

    def ping(self) -> None:
        """Raise unless the database answers a query."""
        with self._transaction() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    # -- moving from one store to another (feedback-import) ----------------------------------------
    def export_rows(self) -> tuple[str | None, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The patient-hash salt, every served-card row and every feedback row (columns as in
        ``SERVED_COLUMNS`` and ``FEEDBACK_COLUMNS``)."""
        with self._reading() as cur:
            cur.execute("SELECT value FROM meta WHERE key = 'patient_salt'")
            found = cur.fetchone()
            cur.execute(f"SELECT {', '.join(SERVED_COLUMNS)} FROM served_card")  # noqa: S608 - fixed names
            served = [tuple(row) for row in cur.fetchall()]
            cur.execute(f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM feedback ORDER BY id")  # noqa: S608
            feedback = [tuple(row) for row in cur.fetchall()]
        return (str(found[0]) if found else None), served, feedback

    def import_rows(
        self, salt: str | None, served: list[tuple[Any, ...]], feedback: list[tuple[Any, ...]]
    ) -> tuple[int, int]:
        """Add rows exported from another store; rows already here (same card, same feedback item)
        are skipped, so importing twice changes nothing. A store without a patient-hash salt yet
        takes the source's, so old and new rows hash a patient alike. Returns (served, feedback)
        rows added."""
        if salt is not None and self._salt is None:
            with self._transaction() as cur:
                cur.execute(
                    self._sql("INSERT INTO meta(key, value) VALUES ('patient_salt', ?) ON CONFLICT (key) DO NOTHING"),
                    (salt,),
                )
        added_served = added_feedback = 0
        served_sql = self._sql(
            f"INSERT INTO served_card({', '.join(SERVED_COLUMNS)}) VALUES ({', '.join('?' * len(SERVED_COLUMNS))})"
            " ON CONFLICT (card_uuid) DO NOTHING"
        )
        feedback_sql = self._sql(
            f"INSERT INTO feedback({', '.join(FEEDBACK_COLUMNS)}) VALUES ({', '.join('?' * len(FEEDBACK_COLUMNS))})"
            " ON CONFLICT (dedup_key) DO NOTHING"
        )
        with self._transaction() as cur:
            for row in served:
                cur.execute(served_sql, self._imported(SERVED_COLUMNS, row))
                added_served += max(cur.rowcount, 0)
            for row in feedback:
                cur.execute(feedback_sql, self._imported(FEEDBACK_COLUMNS, row))
                added_feedback += max(cur.rowcount, 0)
        return added_served, added_feedback

    def _imported(self, columns: tuple[str, ...], row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = []
        for column, value in zip(columns, row, strict=True):
            if column in TIMESTAMP_COLUMNS:
                moment = datetime.fromisoformat(value) if isinstance(value, str) else value
                value = self._outcome_timestamp(moment) if column == "outcome_timestamp" else self._timestamp(moment)
            values.append(value)
        return tuple(values)

    def feedback_count(self) -> int:
        return self._count("feedback")

    def served_count(self) -> int:
        return self._count("served_card")

    def _count(self, table: str) -> int:
        with self._transaction() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - a fixed table name
            return int(cur.fetchone()[0])

    def feedback_rows(self) -> list[tuple[str, str]]:
        """(card uuid, outcome) of every stored feedback item."""
        with self._transaction() as cur:
            cur.execute("SELECT card_uuid, outcome FROM feedback ORDER BY card_uuid, outcome")
            return [(str(a), str(b)) for a, b in cur.fetchall()]


@dataclass(frozen=True)
class _Reason:
    code: str | None  # the code stored (a reason the card offered), else None
    check: str  # RECORDED, NOT_OFFERED, CARD_UNKNOWN or "" (no coded reason)


def _attributed(owner: tuple[str, str] | None, scope: str, service_id: str) -> bool:
    """Whether a feedback row counts for the card it names: the card is in the log, served by the
    same service to the same caller (rows from before scopes were recorded, scope '', count as
    they always did)."""
    if owner is None:
        return False
    served_scope, served_service = owner
    if served_scope == "" or scope == "":
        return True
    return served_scope == scope and served_service == service_id


def rule_reports(data: GovernanceData) -> list[RuleReport]:
    """The plain-text report's lines from the governance data: one per rule (its indicators
    added up), then the feedback no rule can be credited with."""
    reports: dict[str, RuleReport] = {}
    for stats in data.rules:
        report = reports.setdefault(stats.rule_id, RuleReport(stats.rule_id))
        outcomes = stats.outcomes
        report.served += outcomes.served
        report.accepted += outcomes.accepted
        report.overridden += outcomes.overridden
        for reason, count in stats.override_reasons.items():
            report.override_reasons[reason] = report.override_reasons.get(reason, 0) + count
    unserved = data.unserved_feedback
    if unserved.total:
        reports[UNKNOWN_RULE] = RuleReport(
            UNKNOWN_RULE,
            0,
            unserved.accepted,
            unserved.overridden,
            dict(unserved.override_reasons),
            attributed=False,
        )
    # The rules in order, then feedback that no rule can be credited with.
    return sorted(reports.values(), key=lambda r: (not r.attributed, r.rule_id))


def format_report(reports: list[RuleReport]) -> str:
    if not reports:
        return "No cards served and no feedback recorded yet."
    lines = [f"{'rule':<44} {'served':>7} {'accepted':>9} {'overridden':>11}"]
    for r in reports:
        if not r.attributed:
            lines += [
                "",
                "Feedback on cards this service has no record of serving to the sender (never served by it,",
                "served to another EHR or tenant or by another of its services, served before its served-card",
                "log began, or purged by retention); not attributed to any rule:",
                f"{'  not served by this service':<44} {'-':>7} {r.accepted:>9} {r.overridden:>11}",
            ]
        else:
            lines.append(f"{r.rule_id:<44} {r.served:>7} {r.accepted:>9} {r.overridden:>11}")
        for reason, count in sorted(r.override_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    override reason: {reason} ({count})")
    lines += [
        "",
        "Each card counts once, with its latest feedback (as on the governance report, --html).",
    ]
    return "\n".join(lines)


def _as_datetime(value: Any) -> datetime:
    """A timestamp as the database returns it (an ISO string from SQLite, a datetime from
    PostgreSQL), timezone-aware."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
