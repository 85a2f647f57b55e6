"""Served-card log and feedback store: the interface, and what both backends share.

Two backends behind one interface (``FeedbackStore``), on one schema (``migrations/``): the
embedded SQLite file by default (``sqlite.py``), PostgreSQL when ``CDS_DATABASE_URL`` is set
(``postgres.py``), shared by every replica. The SQL is the same for both (written with ``?``
markers, see ``migrations.Dialect``); only connections, locking and timestamps differ.

* ``write_served``: one row per card we sent (card uuid, service, rule id, a salted hash of the
  patient id, time), so feedback can be attributed to the rule that produced the card. The app
  queues these rows and writes them in batches off the request thread (``writer.py``).
* ``add_feedback``: idempotent, also across replicas and under concurrency (a unique key per item
  and ``INSERT ... ON CONFLICT DO NOTHING``); a client resending the same item stores nothing new.
  It returns only once the rows are committed durably (SQLite ``synchronous=FULL``; PostgreSQL
  ``synchronous_commit=on``): feedback answered 200 survives a crash or a power loss.
  Feedback on a card that is not in the served-card log is stored too (the EHR did see some card),
  but attributed to no rule: the report lists it apart, as ``UNKNOWN_RULE``.
* ``report``: per rule, cards served, accepted, overridden and the override reasons given.
* ``purge_served``: deletes served-card rows older than the retention period, in small batches.
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
from typing import Any, Protocol

import orjson

from cds_service.checks.findings import Snooze
from cds_service.feedback.migrations import Dialect
from cds_service.knowledge.content import content
from cds_service.protocol import Card, FeedbackItem

log = logging.getLogger("cds_service.feedback")

# The rule id the report gives feedback on a card that is not in the served-card log: a card this
# service never served (or one served before the log was started, or purged by retention).
UNKNOWN_RULE = "(card not in served log)"
UNATTRIBUTED = "(unattributed)"

# Rows deleted per statement by the retention purge: short transactions, no long lock.
PURGE_BATCH = 5000

SERVED_COLUMNS = ("card_uuid", "service_id", "hook", "rule_id", "patient_hash", "served_at")
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
    # card uuid, outcome, outcome time, override reason, has a comment, suggestion ids taken
    feedback: list[tuple[str, str, datetime, str | None, bool, tuple[str, ...]]]
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


def served_rows(service_id: str, hook: str, patient_id: str, cards: Iterable[Card]) -> list[ServedCard]:
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
        )
        for c in cards
    ]


class FeedbackStore(Protocol):
    """What the app and the ``feedback-report`` command use; both backends implement it."""

    backend: str  # "sqlite" | "postgresql"

    def migrate(self) -> list[int]: ...

    def record_served(self, service_id: str, hook: str, patient_id: str, cards: Iterable[Card]) -> None: ...

    def write_served(self, rows: Sequence[ServedCard]) -> None: ...

    def add_feedback(self, service_id: str, items: Iterable[FeedbackItem]) -> tuple[int, int]: ...

    def store_feedback(self, service_id: str, items: Iterable[FeedbackItem]) -> list[bool]: ...

    def report(self) -> list[RuleReport]: ...

    def active_snoozes(self, patient_id: str, now: datetime) -> tuple[Snooze, ...]: ...

    def governance_records(self, now: datetime) -> GovernanceRecords: ...

    def end_snooze(self, card_uuid: str) -> bool: ...

    def purge_served(self, older_than: datetime) -> int: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def dedup_key(service_id: str, body: dict[str, Any]) -> str:
    canonical = json.dumps([service_id, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Cursor(Protocol):
    """What the shared SQL needs of a DB-API cursor (sqlite3 and psycopg alike)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: Any, params: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class SqlFeedbackStore:
    """The queries both backends run. A backend supplies ``_transaction`` (a cursor inside one
    transaction, committed at the end of the block, rolled back on error), ``_timestamp`` (how a
    datetime is bound) and ``migrate``; it may supply ``_reading`` for reads that never write."""

    backend = "sql"
    dialect: Dialect

    def __init__(self) -> None:
        self._salt: str | None = None
        # Override reason code -> days it snoozes a card (cards/common.toml); {} turns snoozing off.
        self.snooze_days: dict[str, int] = dict(content().snooze_days)
        # Indicator -> the longest snooze a card of that indicator may get (critical: 30 days).
        self.max_snooze_days: dict[str, int] = dict(content().max_snooze_days)

    # -- backend hooks ----------------------------------------------------------------------------
    def _transaction(self) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _reading(self, *, snapshot: bool = True) -> AbstractContextManager[Cursor]:
        """A cursor for reads only. By default a transaction like any other; SQLite overrides it
        so that a hook call's snooze lookup never queues for the write lock behind a commit.
        ``snapshot=False``: the block runs a single statement, which needs no transaction."""
        return self._transaction()

    def _select(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """The rows of one SELECT (a single statement needs no transaction around it)."""
        with self._reading(snapshot=False) as cur:
            cur.execute(sql, params)
            return cur.fetchall()

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

    def _patient_salt(self) -> str:
        # A random salt per database keeps patient hashes stable here (and across replicas sharing
        # the database) but unlinkable elsewhere.
        if self._salt is None:
            with self._transaction() as cur:
                cur.execute(
                    self._sql("INSERT INTO meta(key, value) VALUES ('patient_salt', ?) ON CONFLICT (key) DO NOTHING"),
                    (secrets.token_hex(16),),
                )
                cur.execute("SELECT value FROM meta WHERE key = 'patient_salt'")
                self._salt = str(cur.fetchone()[0])
        return self._salt

    def patient_hash(self, patient_id: str) -> str:
        return hashlib.sha256(f"{self._patient_salt()}:{patient_id}".encode()).hexdigest()

    def record_served(self, service_id: str, hook: str, patient_id: str, cards: Iterable[Card]) -> None:
        """Write the served cards of one call now (the app queues them instead: ``writer.py``)."""
        self.write_served(served_rows(service_id, hook, patient_id, cards))

    def write_served(self, rows: Sequence[ServedCard]) -> None:
        """Write served-card rows in one transaction (one commit for the whole batch)."""
        if not rows:
            return
        salt = self._patient_salt()
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
                )
            )
        with self._transaction() as cur:
            cur.executemany(
                self._sql(
                    "INSERT INTO served_card(card_uuid, service_id, hook, rule_id, patient_hash, served_at,"
                    " subject, indicator, suggestion_labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (card_uuid) DO NOTHING"
                ),
                values,
            )

    def add_feedback(self, service_id: str, items: Iterable[FeedbackItem]) -> tuple[int, int]:
        """Store each item once; return (stored, duplicates) once committed."""
        results = self.store_feedback(service_id, items)
        stored = sum(results)
        return stored, len(results) - stored

    def store_feedback(self, service_id: str, items: Iterable[FeedbackItem]) -> list[bool]:
        """Store each item once, in one transaction; per item, True when it was new (False: a
        duplicate of an item already stored), once committed."""
        results: list[bool] = []
        received_at = self._timestamp(utcnow())
        sql = self._sql(
            "INSERT INTO feedback(dedup_key, service_id, card_uuid, outcome, accepted_suggestions,"
            " override_system, override_code, override_display, user_comment, outcome_timestamp,"
            " received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (dedup_key) DO NOTHING"
        )
        with self._transaction() as cur:
            for item in items:
                body = item.model_dump(mode="json", exclude_none=True)
                reason = item.overrideReason.reason if item.overrideReason else None
                accepted = json.dumps([s.id for s in item.acceptedSuggestions]) if item.acceptedSuggestions else None
                cur.execute(
                    sql,
                    (
                        dedup_key(service_id, body),
                        service_id,
                        item.card,
                        item.outcome,
                        accepted,
                        reason.system if reason else None,
                        reason.code if reason else None,
                        reason.display if reason else None,
                        item.overrideReason.userComment if item.overrideReason else None,
                        self._outcome_timestamp(item.outcomeTimestamp),
                        received_at,
                        json.dumps(body, sort_keys=True),
                    ),
                )
                new = cur.rowcount > 0
                results.append(new)
                if new and self.snooze_days and item.outcome == "overridden" and reason is not None:
                    self._record_snooze(cur, item.card, reason.code, reason.display)
        return results

    # -- snoozes (checks/snooze.py says what they do) ----------------------------------------------

    def _record_snooze(self, cur: Cursor, card_uuid: str, code: str | None, display: str | None) -> None:
        """An override with a snoozing reason, on a card this service served: remember it for that
        patient (hashed), rule and drug until the period ends. Unknown cards record nothing."""
        days = self.snooze_days.get(code or "")
        if not days:
            return
        cur.execute(
            self._sql("SELECT patient_hash, rule_id, subject, indicator FROM served_card WHERE card_uuid = ?"),
            (card_uuid,),
        )
        served = cur.fetchone()
        if served is None:
            return
        # A critical card is never snoozed longer than its indicator allows (clinical review F24),
        # whatever reason an EHR sends back.
        cap = self.max_snooze_days.get(str(served[3]))
        if cap is not None:
            days = min(days, cap)
        now = utcnow()
        cur.execute(
            self._sql(
                "INSERT INTO snooze(card_uuid, patient_hash, rule_id, subject, indicator, reason_code,"
                " reason_display, created_at, until_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (card_uuid) DO NOTHING"
            ),
            (
                card_uuid,
                *served,
                code,
                display or code,
                self._timestamp(now),
                self._timestamp(now + timedelta(days=days)),
            ),
        )

    def active_snoozes(self, patient_id: str, now: datetime) -> tuple[Snooze, ...]:
        """The snoozes that hold now for a patient (none when snoozing is off)."""
        if not self.snooze_days:
            return ()
        patient_hash = self.patient_hash(patient_id)  # reads the salt in its own transaction
        rows = self._select(
            self._sql(
                "SELECT rule_id, subject, indicator, until_at, reason_display FROM snooze"
                " WHERE patient_hash = ? AND until_at > ? AND ended_at IS NULL"
            ),
            (patient_hash, self._timestamp(now)),
        )
        return tuple(
            Snooze(rule_id, subject, indicator, _as_datetime(until), display)
            for rule_id, subject, indicator, until, display in rows
        )

    def governance_records(self, now: datetime) -> GovernanceRecords:
        """What the committee's report is built from: every served card (rule, indicator, when),
        every feedback item (outcome, reason, suggestions taken; never a comment's text) and the
        snoozes in force, counted per rule and drug. No patient hash leaves the store."""
        with self._reading() as cur:
            cur.execute("SELECT card_uuid, rule_id, indicator, served_at, suggestion_labels FROM served_card")
            served = [
                (uuid, rule, indicator, _as_datetime(at), json.loads(labels or "{}"))
                for uuid, rule, indicator, at, labels in cur.fetchall()
            ]
            cur.execute(
                "SELECT card_uuid, outcome, outcome_timestamp, override_code, override_display,"
                " user_comment, accepted_suggestions FROM feedback"
            )
            feedback = [
                (uuid, outcome, _as_datetime(at), display or code, bool(comment), tuple(json.loads(taken or "[]")))
                for uuid, outcome, at, code, display, comment, taken in cur.fetchall()
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
        reports: dict[str, RuleReport] = {}

        def get(rule_id: str) -> RuleReport:
            return reports.setdefault(rule_id, RuleReport(rule_id, attributed=rule_id != UNKNOWN_RULE))

        with self._reading() as cur:
            cur.execute("SELECT rule_id, COUNT(*) FROM served_card GROUP BY rule_id")
            served = cur.fetchall()
            cur.execute(
                self._sql(
                    "SELECT COALESCE(s.rule_id, ?), f.outcome, f.override_code, f.override_display, f.user_comment"
                    " FROM feedback f LEFT JOIN served_card s ON s.card_uuid = f.card_uuid"
                ),
                (UNKNOWN_RULE,),
            )
            rows = cur.fetchall()
        for rule_id, count in served:
            get(rule_id).served = int(count)
        for rule_id, outcome, code, display, comment in rows:
            report = get(rule_id)
            if outcome == "accepted":
                report.accepted += 1
            else:
                report.overridden += 1
                reason = display or code or ("free-text comment only" if comment else "no reason given")
                report.override_reasons[reason] = report.override_reasons.get(reason, 0) + 1
        # The rules in order, then feedback that no rule can be credited with.
        return sorted(reports.values(), key=lambda r: (not r.attributed, r.rule_id))

    def purge_served(self, older_than: datetime) -> int:
        """Delete served-card rows served before ``older_than``, a batch per transaction; return how
        many were deleted. Safe to run in several replicas at once."""
        sql = self._sql(
            "DELETE FROM served_card WHERE card_uuid IN"
            " (SELECT card_uuid FROM served_card WHERE served_at < ? ORDER BY served_at LIMIT ?)"
        )
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


def format_report(reports: list[RuleReport]) -> str:
    if not reports:
        return "No cards served and no feedback recorded yet."
    lines = [f"{'rule':<44} {'served':>7} {'accepted':>9} {'overridden':>11}"]
    for r in reports:
        if not r.attributed:
            lines += [
                "",
                "Feedback on cards this service has no record of serving (never served by it, served",
                "before its served-card log began, or purged by retention); not attributed to any rule:",
                f"{'  not served by this service':<44} {'-':>7} {r.accepted:>9} {r.overridden:>11}",
            ]
        else:
            lines.append(f"{r.rule_id:<44} {r.served:>7} {r.accepted:>9} {r.overridden:>11}")
        for reason, count in sorted(r.override_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    override reason: {reason} ({count})")
    return "\n".join(lines)


def _as_datetime(value: Any) -> datetime:
    """A timestamp as the database returns it (an ISO string from SQLite, a datetime from
    PostgreSQL), timezone-aware."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
