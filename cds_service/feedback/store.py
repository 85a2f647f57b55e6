"""Served-card log and feedback store.

Embedded SQLite by default (created on first use). ``FeedbackStore`` is the small interface the
app uses, so a server database can replace SQLite later without touching routes.

* ``record_served``: one row per card we send (card uuid, service, rule id, a salted hash of the
  patient id, time), so feedback can be attributed to the rule that produced the card.
* ``add_feedback``: idempotent; a client resending the same feedback item stores nothing new.
  Feedback on a card that is not in the served-card log is stored too (the EHR did see some
  card), but attributed to no rule: the report lists it apart, as ``UNKNOWN_RULE``.
* ``report``: per rule, cards served, accepted, overridden and the override reasons given.

Durability, chosen deliberately: WAL journal with ``synchronous=FULL`` (and ``fullfsync`` where
the OS has it, i.e. macOS), so every commit is on stable storage before it returns. Feedback
answered 200 survives a crash or a power loss. The price is one fsync per commit: one per hook
call that returns cards (its served cards are written in one transaction) and one per feedback
call. ``synchronous=NORMAL`` would be faster but may lose the last commits on power loss.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cds_service.protocol import Card, FeedbackItem

# The rule id the report gives feedback on a card that is not in the served-card log: a card this
# service never served (or one served by another instance, or before the log was started).
UNKNOWN_RULE = "(card not in served log)"

# Per connection; see the module docstring.
DURABILITY_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "fullfsync=ON", "busy_timeout=10000")


@dataclass
class RuleReport:
    rule_id: str
    served: int = 0
    accepted: int = 0
    overridden: int = 0
    override_reasons: dict[str, int] = field(default_factory=dict)
    # False for the UNKNOWN_RULE line: feedback on cards this service has no record of serving.
    attributed: bool = True


class FeedbackStore(Protocol):
    def record_served(self, service_id: str, hook: str, patient_id: str, cards: Iterable[Card]) -> None: ...

    def add_feedback(self, service_id: str, items: Iterable[FeedbackItem]) -> tuple[int, int]: ...

    def report(self) -> list[RuleReport]: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS served_card (
    card_uuid TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    hook TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    patient_hash TEXT NOT NULL,
    served_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key TEXT NOT NULL UNIQUE,
    service_id TEXT NOT NULL,
    card_uuid TEXT NOT NULL,
    outcome TEXT NOT NULL,
    accepted_suggestions TEXT,
    override_system TEXT,
    override_code TEXT,
    override_display TEXT,
    user_comment TEXT,
    outcome_timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback(card_uuid);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SQLiteFeedbackStore:
    """Thread-safe: one connection per thread, WAL so readers never block the writer."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._local = threading.local()
        self._init_lock = threading.Lock()
        self._initialised = False
        self._salt: str | None = None

    # -- connection handling ---------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)
            for pragma in DURABILITY_PRAGMAS:
                conn.execute(f"PRAGMA {pragma}")
            self._local.conn = conn
            self._ensure_schema(conn)
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        with self._init_lock:
            if self._initialised:
                return
            conn.executescript(_SCHEMA)
            # A random salt per database keeps patient hashes stable here but unlinkable elsewhere.
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('patient_salt', ?)",
                (secrets.token_hex(16),),
            )
            self._salt = conn.execute("SELECT value FROM meta WHERE key='patient_salt'").fetchone()[0]
            self._initialised = True

    def durability(self) -> dict[str, str | int]:
        """The journal mode and synchronous level in force (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA)."""
        conn = self._conn()
        journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        return {"journal_mode": str(journal_mode), "synchronous": int(synchronous)}

    def _patient_hash(self, patient_id: str) -> str:
        self._conn()
        return hashlib.sha256(f"{self._salt}:{patient_id}".encode()).hexdigest()

    # -- interface ---------------------------------------------------------------------------
    def record_served(self, service_id: str, hook: str, patient_id: str, cards: Iterable[Card]) -> None:
        cards = list(cards)
        if not cards:
            return
        patient_hash = self._patient_hash(patient_id)
        served_at = _now()
        rows = [(c.uuid, service_id, hook, c.rule_id or "(unattributed)", patient_hash, served_at) for c in cards]
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")  # one transaction (one fsync) for all the cards of a call
        try:
            conn.executemany(
                "INSERT OR IGNORE INTO served_card(card_uuid, service_id, hook, rule_id, patient_hash, served_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def add_feedback(self, service_id: str, items: Iterable[FeedbackItem]) -> tuple[int, int]:
        """Store each item once; return (stored, duplicates)."""
        conn = self._conn()
        stored = duplicates = 0
        received_at = _now()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                body = item.model_dump(mode="json", exclude_none=True)
                canonical = json.dumps([service_id, body], sort_keys=True, separators=(",", ":"))
                dedup_key = hashlib.sha256(canonical.encode()).hexdigest()
                reason = item.overrideReason.reason if item.overrideReason else None
                accepted = json.dumps([s.id for s in item.acceptedSuggestions]) if item.acceptedSuggestions else None
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO feedback(dedup_key, service_id, card_uuid, outcome,"
                    " accepted_suggestions, override_system, override_code, override_display,"
                    " user_comment, outcome_timestamp, received_at, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        dedup_key,
                        service_id,
                        item.card,
                        item.outcome,
                        accepted,
                        reason.system if reason else None,
                        reason.code if reason else None,
                        reason.display if reason else None,
                        item.overrideReason.userComment if item.overrideReason else None,
                        item.outcomeTimestamp.isoformat(),
                        received_at,
                        json.dumps(body, sort_keys=True),
                    ),
                )
                if cursor.rowcount:
                    stored += 1
                else:
                    duplicates += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return stored, duplicates

    def report(self) -> list[RuleReport]:
        conn = self._conn()
        reports: dict[str, RuleReport] = {}

        def get(rule_id: str) -> RuleReport:
            return reports.setdefault(rule_id, RuleReport(rule_id, attributed=rule_id != UNKNOWN_RULE))

        for rule_id, served in conn.execute("SELECT rule_id, COUNT(*) FROM served_card GROUP BY rule_id"):
            get(rule_id).served = served
        rows = conn.execute(
            "SELECT COALESCE(s.rule_id, ?), f.outcome, f.override_code, f.override_display, f.user_comment"
            " FROM feedback f LEFT JOIN served_card s ON s.card_uuid = f.card_uuid",
            (UNKNOWN_RULE,),
        )
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

    def feedback_count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM feedback").fetchone()[0])


def format_report(reports: list[RuleReport]) -> str:
    if not reports:
        return "No cards served and no feedback recorded yet."
    lines = [f"{'rule':<44} {'served':>7} {'accepted':>9} {'overridden':>11}"]
    for r in reports:
        if not r.attributed:
            lines += [
                "",
                "Feedback on cards this service has no record of serving (never served by it, served by",
                "another instance, or before its served-card log began); not attributed to any rule:",
                f"{'  not served by this service':<44} {'-':>7} {r.accepted:>9} {r.overridden:>11}",
            ]
        else:
            lines.append(f"{r.rule_id:<44} {r.served:>7} {r.accepted:>9} {r.overridden:>11}")
        for reason, count in sorted(r.override_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    override reason: {reason} ({count})")
    return "\n".join(lines)
