"""Feedback endpoint and store: validation, idempotency, attribution to rules, report, the
served-card queue and its retention, the schema's migrations.

The same test functions run against both backends (the ``backend`` fixture): the embedded SQLite
file and a real PostgreSQL server (`make services`; skipped with that hint when it is not running).
What only one backend has (SQLite's file and pragmas, PostgreSQL's commit setting) is tested apart.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cds_service.config import Settings
from cds_service.feedback import (
    UNKNOWN_RULE,
    ServedCard,
    ServedCardWriter,
    SQLiteFeedbackStore,
    format_report,
    open_store,
)
from cds_service.feedback.migrations import LATEST, MIGRATIONS, POSTGRESQL, SQLITE
from cds_service.governance.build import UNVERIFIED
from cds_service.knowledge.content import content
from cds_service.protocol import Card, FeedbackItem, Source
from tests.conftest import FIXTURES, FROZEN_NOW, load_shared

FEEDBACK = "/cds-services/calciphylaxis-order-select/feedback"
ORDER_SELECT = "/cds-services/calciphylaxis-order-select"
SYSTEM = content().override_system  # the code system of the override reasons cards offer
BENEFIT = "Benefit outweighs the risk for this patient"  # the service's display of benefit-outweighs-risk


@dataclass
class Backend:
    name: str
    options: dict[str, Any]

    def settings(self, **more: Any) -> Settings:
        return Settings(**self.options, **more)

    def store(self):
        return open_store(self.settings())

    def rows(self) -> list[tuple[str, str]]:
        store = self.store()
        try:
            return store.feedback_rows()
        finally:
            store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", {"feedback_db": tmp_path / "feedback.sqlite3"})
    return Backend("postgresql", {"database_url": request.getfixturevalue("pg_url")})


@pytest.fixture
def settings(backend) -> Settings:  # the app and client fixtures (conftest) use this backend
    return backend.settings()


@pytest.fixture
def store(backend):
    opened = backend.store()
    yield opened
    opened.close()


def accepted(card="card-1", suggestion="sugg-1"):
    return {
        "card": card,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion}],
        "outcomeTimestamp": "2026-11-21T10:00:00Z",
    }


def overridden(card="card-1", code="benefit-outweighs-risk", display="Benefit outweighs risk", comment=None):
    item = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:05:00.52Z"}
    reason = {}
    if code:
        reason["reason"] = {"system": SYSTEM, "code": code, "display": display}
    if comment:
        reason["userComment"] = comment
    if reason:
        item["overrideReason"] = reason
    return item


def _card(rule_id: str) -> Card:
    return Card(summary="s", indicator="warning", source=Source(label="x"), rule_id=rule_id)


def _answer(stored: int = 0, duplicates: int = 0, refused: int = 0, items: list | None = None) -> dict:
    """The endpoint's answer: the counts, then one result per item in order."""
    items = items if items is not None else [{"result": "stored"}] * stored + [{"result": "duplicate"}] * duplicates
    return {"stored": stored, "duplicates": duplicates, "refused": refused, "items": items}


def _query(store, sql: str) -> list[tuple]:
    with store._transaction() as cur:
        cur.execute(sql)
        return [tuple(row) for row in cur.fetchall()]


# --- the endpoint, on either backend --------------------------------------------------------------


def test_feedback_is_validated_stored_and_answered_200(client, backend):
    response = client.post(FEEDBACK, json={"feedback": [accepted(), overridden(card="card-2")]})
    assert response.status_code == 200
    # card-2 was never served to this caller: its coded reason is not kept (see test_feedback_scoping)
    assert response.get_json() == _answer(
        2, items=[{"result": "stored"}, {"result": "stored", "overrideReason": "card-unknown"}]
    )
    assert backend.rows() == [("card-1", "accepted"), ("card-2", "overridden")]


def test_resent_feedback_is_stored_once(client, backend):
    body = {"feedback": [accepted()]}
    assert client.post(FEEDBACK, json=body).get_json() == _answer(stored=1)
    assert client.post(FEEDBACK, json=body).get_json() == _answer(duplicates=1)
    assert len(backend.rows()) == 1


@pytest.mark.parametrize(
    "name", ["feedback-accepted.json", "feedback-overridden.json", "feedback-overridden-with-reason.json"]
)
def test_spec_feedback_examples_are_accepted(client, name):
    body = load_shared(f"reference/cds-hooks-examples/2.0/{name}")
    assert client.post(FEEDBACK, json=body).status_code == 200


def test_sandbox_style_override_without_system_or_display_is_accepted(client):
    item = {
        "card": "c",
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-21T10:00:00.000Z",
        "overrideReason": {"reason": {"code": "already-addressed"}},
    }
    assert client.post(FEEDBACK, json={"feedback": [item]}).status_code == 200


@pytest.mark.parametrize(
    "body, expected",
    [
        ({}, "feedback: Field required"),
        ({"feedback": []}, "feedback: List should have at least 1 item"),
        ({"feedback": [{"outcome": "accepted"}]}, "feedback.0.card: Field required"),
        ({"feedback": [dict(accepted(), outcome="ignored")]}, "feedback.0.outcome"),
        ({"feedback": [dict(accepted(), acceptedSuggestions=None)]}, "acceptedSuggestions is required"),
        ({"feedback": [dict(accepted(), outcomeTimestamp="yesterday")]}, "feedback.0.outcomeTimestamp"),
        ({"feedback": [dict(accepted(), outcomeTimestamp="2026-11-21T10:00:00")]}, "timezone"),
        ({"feedback": [dict(accepted(), acceptedSuggestions=[{}])]}, "feedback.0.acceptedSuggestions.0.id"),
    ],
)
def test_invalid_feedback_is_400_naming_the_field(client, backend, body, expected):
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 400
    assert expected in response.get_json()["issue"][0]["diagnostics"]
    assert backend.rows() == []


def test_feedback_for_unknown_service_is_404(client):
    response = client.post("/cds-services/nope/feedback", json={"feedback": [accepted()]})
    assert response.status_code == 404


def test_feedback_body_must_be_an_object(client):
    response = client.post(FEEDBACK, json=[accepted()])
    assert response.status_code == 400


def test_the_same_items_posted_concurrently_are_stored_once(client, backend):
    """Eight clients send the same batch at once: every item is stored exactly once, and exactly
    one response counts each item as stored (a unique key and INSERT ... ON CONFLICT DO NOTHING)."""
    items = [accepted(card=f"card-{i}") for i in range(20)]
    barrier = threading.Barrier(8)
    answers: list[dict] = []
    app = client.application

    def send():
        local = app.test_client()
        barrier.wait()
        answers.append(local.post(FEEDBACK, json={"feedback": items}).get_json())

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all("stored" in a for a in answers), answers
    assert sum(a["stored"] for a in answers) == 20
    assert sum(a["duplicates"] for a in answers) == 7 * 20
    assert len(backend.rows()) == 20


# --- the store, on either backend ---------------------------------------------------------------


def test_report_attributes_feedback_to_the_rule_that_served_the_card(store):
    c1, c2 = _card("C1-calcium-binder-calciphylaxis"), _card("C1-calcium-binder-calciphylaxis")
    c3 = _card("C2-vka-calciphylaxis")
    store.record_served("svc", "order-select", "patient-1", [c1, c2, c3])
    items = [
        FeedbackItem.model_validate(accepted(card=c1.uuid)),
        FeedbackItem.model_validate(overridden(card=c2.uuid)),
        FeedbackItem.model_validate(overridden(card=c3.uuid, code=None, comment="seen by nephrology")),
        FeedbackItem.model_validate(overridden(card="never-served")),
    ]
    assert store.add_feedback("svc", items) == (4, 0)
    reports = {r.rule_id: r for r in store.report()}
    c1_report = reports["C1-calcium-binder-calciphylaxis"]
    assert (c1_report.served, c1_report.accepted, c1_report.overridden) == (2, 1, 1)
    # the service's own wording of the code, not the display the EHR sent
    assert c1_report.override_reasons == {BENEFIT: 1}
    assert reports["C2-vka-calciphylaxis"].override_reasons == {"Free-text comment only": 1}
    assert reports[UNKNOWN_RULE].overridden == 1
    text = format_report(store.report())
    assert "C1-calcium-binder-calciphylaxis" in text and f"{BENEFIT} (1)" in text


def test_served_card_log_hashes_the_patient_id(store):
    store.record_served("svc", "patient-view", "patient-123", [_card("C1")])
    ((patient_hash,),) = _query(store, "SELECT patient_hash FROM served_card")
    assert "patient-123" not in patient_hash and len(patient_hash) == 64


def test_the_patient_hash_salt_is_one_per_database_shared_by_every_store_on_it(backend):
    first, second = backend.store(), backend.store()
    try:
        assert first.patient_hash("p-1") == second.patient_hash("p-1")
    finally:
        first.close()
        second.close()


def test_feedback_for_a_card_never_served_is_stored_but_reported_apart_from_every_rule(client, store):
    response = client.post(FEEDBACK, json={"feedback": [overridden(card="never-served"), accepted(card="also-not")]})
    assert response.status_code == 200 and response.get_json()["stored"] == 2

    c1 = _card("C1-binder")
    store.record_served("svc", "order-select", "p", [c1])
    store.add_feedback(
        "svc",
        [FeedbackItem.model_validate(i) for i in (accepted(card=c1.uuid), overridden(card="never-served"))],
    )
    reports = store.report()
    assert [(r.rule_id, r.attributed) for r in reports] == [("C1-binder", True), (UNKNOWN_RULE, False)]
    unknown = reports[-1]
    # From the endpoint: never-served (overridden) and also-not (accepted); the store's own
    # never-served item (service "svc") is a new item too, but each card counts once, with its
    # latest feedback (the governance report's rule).
    assert store.feedback_count() == 4
    assert (unknown.served, unknown.accepted, unknown.overridden) == (0, 1, 1)
    text = format_report(reports)
    rule_lines, _, unattributed = text.partition("no record of serving")
    assert "C1-binder" in rule_lines and UNKNOWN_RULE not in text
    assert "not attributed to any rule" in unattributed and "not served by this service" in unattributed
    assert f"{UNVERIFIED} (1)" in unattributed  # a reason on a card not served to the sender is not vouched for


def test_hook_calls_queue_their_served_cards_and_the_writer_writes_them(client, app, store):
    body = (FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_bytes()
    for _ in range(3):
        assert client.post(ORDER_SELECT, data=body, content_type="application/json").status_code == 200
    writer = app.extensions["cds"].writer
    assert writer.flush(timeout=10)
    assert store.served_count() == 3
    (report,) = [r for r in store.report() if r.attributed]
    assert report.rule_id.startswith("C1") and report.served == 3


def test_closing_the_writer_writes_every_queued_row(store):
    writer = ServedCardWriter(store, retention=None)
    for i in range(50):
        writer.submit("svc", "order-select", f"patient-{i}", [_card("C1"), _card("C3")])
    writer.close()
    assert store.served_count() == 100 and writer.pending() == 0


def test_rows_of_calls_close_together_share_one_transaction(store, monkeypatch):
    transactions: list[int] = []
    real = store.write_served

    def counting(rows):
        transactions.append(len(rows))
        real(rows)

    monkeypatch.setattr(store, "write_served", counting)
    writer = ServedCardWriter(store, retention=None, linger=0.5)
    for i in range(20):
        writer.submit("svc", "order-select", f"patient-{i}", [_card("C1")])
    assert writer.flush(timeout=10)
    writer.close()
    assert sum(transactions) == 20 and store.served_count() == 20
    assert len(transactions) <= 2  # not one commit (and fsync) per call


def test_feedback_does_not_wait_for_the_linger(store):
    writer = ServedCardWriter(store, retention=None, linger=30.0)
    writer.submit("svc", "order-select", "patient-1", [_card("C1")])
    started = datetime.now()
    assert writer.flush(timeout=10)  # what the feedback endpoint does before storing feedback
    assert datetime.now() - started < timedelta(seconds=10)
    assert store.served_count() == 1
    writer.close()


def test_retention_deletes_only_served_cards_older_than_the_period(store):
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    old = [ServedCard(f"old-{i}", "svc", "order-select", "C1", "p", now - timedelta(days=400)) for i in range(3)]
    recent = [ServedCard(f"new-{i}", "svc", "order-select", "C1", "p", now - timedelta(days=10)) for i in range(2)]
    store.write_served(old + recent)
    store.add_feedback("svc", [FeedbackItem.model_validate(accepted(card="old-0"))])
    writer = ServedCardWriter(store, retention=timedelta(days=365), purge_interval=3600, now=lambda: now)
    writer.start()  # the first purge runs at once
    deadline = datetime.now() + timedelta(seconds=10)
    while store.served_count() != 2 and datetime.now() < deadline:
        threading.Event().wait(0.05)
    writer.close()
    assert sorted(r[0] for r in _query(store, "SELECT card_uuid FROM served_card")) == ["new-0", "new-1"]
    assert store.feedback_count() == 1  # feedback has a retention of its own (test_feedback_bounds)


def test_purge_works_through_many_batches(store, monkeypatch):
    monkeypatch.setattr("cds_service.feedback.store.PURGE_BATCH", 7)
    then = datetime(2020, 1, 1, tzinfo=UTC)
    store.write_served([ServedCard(f"c-{i}", "svc", "patient-view", "M1", "p", then) for i in range(30)])
    assert store.purge_served(then + timedelta(seconds=1)) == 30
    assert store.served_count() == 0


def test_a_store_that_cannot_be_written_keeps_the_rows_queued_and_retries(store):
    calls = {"n": 0}
    real = store.write_served

    def flaky(rows):
        calls["n"] += 1
        if calls["n"] == 1:
            from cds_service.errors import ServiceUnavailable

            raise ServiceUnavailable("down for a moment")
        real(rows)

    store.write_served = flaky
    writer = ServedCardWriter(store, retention=None)
    writer.submit("svc", "order-select", "p", [_card("C1")])
    assert writer.flush(timeout=10)
    writer.close()
    assert store.served_count() == 1 and calls["n"] == 2


# --- the schema ---------------------------------------------------------------------------------


def test_migrations_are_applied_once_and_recorded(store):
    store.migrate()
    assert store.migrate() == []  # nothing left to apply
    versions = [row[0] for row in _query(store, "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))


def test_one_schema_definition_renders_for_both_dialects():
    for migration in MIGRATIONS:
        sqlite_sql, postgres_sql = migration.statements(SQLITE), migration.statements(POSTGRESQL)
        assert len(sqlite_sql) == len(postgres_sql) and all("{{" not in s for s in sqlite_sql + postgres_sql)
    first = " ".join(MIGRATIONS[0].statements(POSTGRESQL))
    assert "TIMESTAMPTZ" in first and "GENERATED BY DEFAULT AS IDENTITY" in first


# --- SQLite only: where the file is, and how durable ---------------------------------------------


def test_feedback_database_uses_wal_and_is_created_on_first_use(tmp_path):
    settings = Settings(feedback_db=tmp_path / "feedback.sqlite3")
    from cds_service.http.app import create_app

    client = create_app(settings, now=lambda: FROZEN_NOW).test_client()
    assert not settings.feedback_db.exists()
    client.post(FEEDBACK, json={"feedback": [accepted()]})
    assert settings.feedback_db.exists()
    with sqlite3.connect(settings.feedback_db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_made_before_versioned_migrations_is_taken_over(tmp_path):
    """The schema as it was before migrations were numbered: its data stays, version 1 is recorded
    without changing it, version 2 adds the retention index."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE served_card (card_uuid TEXT PRIMARY KEY, service_id TEXT NOT NULL, hook TEXT NOT NULL,
                rule_id TEXT NOT NULL, patient_hash TEXT NOT NULL, served_at TEXT NOT NULL);
            CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL UNIQUE,
                service_id TEXT NOT NULL, card_uuid TEXT NOT NULL, outcome TEXT NOT NULL, accepted_suggestions TEXT,
                override_system TEXT, override_code TEXT, override_display TEXT, user_comment TEXT,
                outcome_timestamp TEXT NOT NULL, received_at TEXT NOT NULL, body TEXT NOT NULL);
            INSERT INTO meta VALUES ('patient_salt', 'old-salt');
            INSERT INTO served_card VALUES ('c-old', 'svc', 'order-select', 'C1', 'h', '2026-01-01T00:00:00.000+00:00');
            """
        )
    store = SQLiteFeedbackStore(path)
    assert store.migrate() == [1, 2, 3, 4]  # taken over as 1, then every later migration
    assert store.served_count() == 1 and store._patient_salt() == "old-salt"
    with sqlite3.connect(path) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "served_card_served_at" in indexes
    store.close()


def test_relative_feedback_db_is_the_same_file_from_any_working_directory(tmp_path, monkeypatch, capsys):
    """The server and `feedback-report` find the same file wherever each is started."""
    from cds_service import cli
    from cds_service.http.app import create_app

    base = tmp_path / "data"
    monkeypatch.setattr("cds_service.config.data_dir", lambda: base)
    monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    monkeypatch.setenv("CDS_FEEDBACK_DB", "var/feedback.sqlite3")
    server_dir, shell_dir = tmp_path / "server-cwd", tmp_path / "shell-cwd"
    server_dir.mkdir()
    shell_dir.mkdir()

    monkeypatch.chdir(server_dir)
    client = create_app(Settings()).test_client()
    assert client.post(FEEDBACK, json={"feedback": [overridden(card="card-9")]}).status_code == 200

    monkeypatch.chdir(shell_dir)
    assert Settings().feedback_db == base / "var" / "feedback.sqlite3"
    assert cli.main(["feedback-report"]) == 0
    out = capsys.readouterr().out
    assert "No feedback database" not in out and f"{UNVERIFIED} (1)" in out
    assert not (server_dir / "var").exists() and not (shell_dir / "var").exists()


def test_relative_feedback_db_defaults_to_the_project_directory_of_a_checkout(monkeypatch, tmp_path):
    from tests.conftest import REPO

    monkeypatch.delenv("CDS_FEEDBACK_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings().feedback_db == REPO / "var" / "feedback.sqlite3"
    assert Settings(feedback_db=tmp_path / "abs.db").feedback_db == tmp_path / "abs.db"


def test_feedback_report_db_flag_is_relative_to_the_working_directory(tmp_path, monkeypatch, capsys):
    from cds_service import cli

    monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    store = SQLiteFeedbackStore(tmp_path / "here.db")
    store.add_feedback("svc", [FeedbackItem.model_validate(overridden())])
    monkeypatch.chdir(tmp_path)
    assert cli.main(["feedback-report", "--db", "here.db"]) == 0
    assert f"{UNVERIFIED} (1)" in capsys.readouterr().out


def test_acknowledged_feedback_is_durable_wal_with_synchronous_full(tmp_path):
    store = SQLiteFeedbackStore(tmp_path / "f.db")
    store.add_feedback("svc", [FeedbackItem.model_validate(accepted())])
    assert store.durability() == {"journal_mode": "wal", "synchronous": 2}  # 2 = FULL


def test_a_durable_write_after_a_quick_hook_path_read_and_a_visible_at_once_write_still_waits_and_syncs(tmp_path):
    """A connection's settings are changed only when a use needs others (one statement per snooze
    lookup): whatever ran on the thread before, a durable write runs with FULL and the 10 s wait."""
    store = SQLiteFeedbackStore(tmp_path / "f.db")
    store._select("SELECT 1", (), timeout=0.05)  # a snooze lookup: a 50 ms bound on lock waits
    conn = store._conn()
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 50
    with store._transaction(timeout=0.05, durable=False):  # a served-card row visible at once
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    with store._transaction():  # feedback
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10000


# --- PostgreSQL only -------------------------------------------------------------------------------


def test_postgres_commits_feedback_with_synchronous_commit_on(pg_url):
    store = open_store(Settings(database_url=pg_url))
    try:
        store.add_feedback("svc", [FeedbackItem.model_validate(accepted())])
        assert _query(store, "SHOW synchronous_commit") == [("on",)]
    finally:
        store.close()


def test_postgres_migrations_from_several_processes_at_once_apply_each_file_once(pg_url):
    """Replicas starting together: the advisory lock lets one apply the files, the others find
    them applied."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        applied = pool.map(_migrate, [pg_url] * 4)
    assert sorted(applied, key=len) == [[], [], [], list(range(1, LATEST + 1))]


def _migrate(url: str) -> list[int]:
    from cds_service.feedback import PostgresFeedbackStore

    return PostgresFeedbackStore(url).migrate()


def test_postgres_feedback_report_command_reads_the_database(pg_url, capsys, monkeypatch):
    from cds_service import cli

    store = open_store(Settings(database_url=pg_url))
    card = _card("C2-vka-calciphylaxis")
    store.record_served("svc", "order-select", "p", [card])
    store.add_feedback("svc", [FeedbackItem.model_validate(accepted(card=card.uuid))])
    store.close()
    monkeypatch.setenv("CDS_DATABASE_URL", pg_url)
    assert cli.main(["feedback-report"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("C2-vka"))
    assert row.split()[1:] == ["1", "1", "0"]


def test_paths_do_not_matter_for_postgres(pg_url, tmp_path):
    assert open_store(Settings(database_url=pg_url, feedback_db=tmp_path / "unused.db")).backend == "postgresql"
    assert not Path(tmp_path / "unused.db").exists()


def test_feedback_import_copies_a_sqlite_file_into_postgres_once(pg_url, tmp_path, capsys, monkeypatch):
    """Moving from the embedded default to PostgreSQL keeps what the SQLite file holds."""
    from cds_service import cli

    sqlite = SQLiteFeedbackStore(tmp_path / "old.sqlite3")
    card = _card("C1-binder")
    sqlite.record_served("svc", "order-select", "patient-7", [card, _card("C3-vitd")])
    sqlite.add_feedback(
        "svc", [FeedbackItem.model_validate(i) for i in (overridden(card=card.uuid), accepted(card="elsewhere"))]
    )
    expected = sqlite.report()
    hashed = sqlite.patient_hash("patient-7")
    sqlite.close()

    monkeypatch.setenv("CDS_DATABASE_URL", pg_url)
    assert cli.main(["feedback-import", "--from-sqlite", str(tmp_path / "old.sqlite3")]) == 0
    assert "Imported 2 of 2 served cards and 2 of 2 feedback items" in capsys.readouterr().out
    assert cli.main(["feedback-import", "--from-sqlite", str(tmp_path / "old.sqlite3")]) == 0
    assert "Imported 0 of 2 served cards and 0 of 2 feedback items" in capsys.readouterr().out

    postgres = open_store(Settings(database_url=pg_url))
    try:
        assert postgres.report() == expected
        assert postgres.patient_hash("patient-7") == hashed  # the file's salt was taken over
        # Resending a feedback item the file already held is still a duplicate.
        assert postgres.add_feedback("svc", [FeedbackItem.model_validate(overridden(card=card.uuid))]) == (0, 1)
    finally:
        postgres.close()


def test_feedback_import_needs_a_target_and_a_source(tmp_path, monkeypatch, capsys):
    from cds_service import cli

    monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    assert cli.main(["feedback-import", "--from-sqlite", str(tmp_path / "x.db")]) == 2
    monkeypatch.setenv("CDS_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert cli.main(["feedback-import", "--from-sqlite", str(tmp_path / "missing.db")]) == 2
    assert "no SQLite feedback file" in capsys.readouterr().err


# --- one counting rule for both reports (issue 20, finding 6) ------------------------------------------


def test_feedback_report_and_the_governance_page_count_a_card_overridden_then_accepted_alike(
    backend, store, tmp_path, capsys, monkeypatch
):
    """A card overridden, then accepted (a corrected decision): its latest feedback counts, once,
    in the plain-text report and on the committee's page alike."""
    from cds_service import cli
    from cds_service.governance.build import governance_data_from_records

    card, other = _card("C1-calcium-binder-calciphylaxis"), _card("C1-calcium-binder-calciphylaxis")
    store.record_served("svc", "order-select", "p", [card, other])
    items = [
        overridden(card=card.uuid),  # 10:05
        dict(accepted(card=card.uuid), outcomeTimestamp="2026-11-21T10:10:00Z"),  # later: it counts
        overridden(card=other.uuid, code=None, comment="seen"),
        dict(overridden(card=other.uuid), outcomeTimestamp="2026-11-21T09:00:00Z"),  # earlier: it does not
    ]
    store.add_feedback("svc", [FeedbackItem.model_validate(i) for i in items])

    (line,) = [r for r in store.report() if r.attributed]
    records = store.governance_records(datetime.now(UTC))
    data = governance_data_from_records(records.served, records.feedback, records.snoozes, snoozing_enabled=True)
    (stats,) = data.rules
    assert (line.served, line.accepted, line.overridden) == (2, 1, 1)
    assert (stats.outcomes.served, stats.outcomes.accepted, stats.outcomes.overridden) == (2, 1, 1)
    assert line.override_reasons == dict(stats.override_reasons) == {"Free-text comment only": 1}

    # ... and so the two commands an operator runs
    for key, value in backend.options.items():
        monkeypatch.setenv(f"CDS_{key.upper()}", str(value))
    if backend.name == "sqlite":
        monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    assert cli.main(["feedback-report"]) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("C1-calcium-binder-calciphylaxis"))
    assert row.split()[1:] == ["2", "1", "1"]
    page = tmp_path / "report.html"
    assert cli.main(["feedback-report", "--html", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    for label, value in (("Cards served", 2), ("Accepted", 1), ("Overridden", 1)):
        assert f'<span class="tile__label">{label}</span><span class="tile__value">{value}</span>' in html, label


# --- snoozes, on either backend -------------------------------------------------------------------

SNOOZE_CODE = "addressed-with-nephrology-3-months"


def _subject_card(rule_id: str, subject: str, indicator: str = "critical") -> Card:
    return Card(summary="s", indicator=indicator, source=Source(label="x"), rule_id=rule_id, subject=subject or None)


def test_an_override_with_a_snoozing_reason_records_a_snooze_for_that_patient_rule_and_drug(store):
    card = _subject_card("C1-calcium-binder-calciphylaxis", "calcium acetate", indicator="warning")
    store.record_served("svc", "patient-view", "patient-1", [card])
    store.add_feedback(
        "svc", [FeedbackItem.model_validate(overridden(card=card.uuid, code=SNOOZE_CODE, display="3 months"))]
    )
    now = datetime.now(UTC)
    (snooze,) = store.active_snoozes("patient-1", now)
    assert (snooze.rule_id, snooze.subject, snooze.indicator) == (
        "C1-calcium-binder-calciphylaxis",
        "calcium acetate",
        "warning",
    )
    assert timedelta(days=90) < snooze.until - now <= timedelta(days=91)
    # the code the card offered, worded by the service (never the display sent back: "3 months")
    assert (snooze.reason_code, snooze.reason) == (SNOOZE_CODE, content().override_codes[SNOOZE_CODE])
    assert store.active_snoozes("patient-2", now) == ()
    assert store.active_snoozes("patient-1", now + timedelta(days=92)) == ()  # expired


def test_a_critical_card_is_never_snoozed_for_3_months_whatever_reason_comes_back(store):
    # Clinical review F24: the card offers at most a 1-month review; an EHR that sends the
    # 3-month reason anyway snoozes nothing (the card did not offer it), the 1-month one is capped.
    card = _subject_card("C1-calcium-binder-calciphylaxis", "calcium acetate")
    store.record_served("svc", "patient-view", "patient-1", [card])
    (result,) = store.record_feedback(
        "svc", [FeedbackItem.model_validate(overridden(card=card.uuid, code=SNOOZE_CODE))]
    )
    assert (result.result, result.reason, result.snoozed_until) == ("stored", "not-offered", None)
    assert store.active_snoozes("patient-1", datetime.now(UTC)) == ()
    item = dict(
        overridden(card=card.uuid, code="benefit-outweighs-risk-review-1-month"),
        outcomeTimestamp="2026-11-21T11:00:00Z",
    )
    store.add_feedback("svc", [FeedbackItem.model_validate(item)])
    now = datetime.now(UTC)
    (snooze,) = store.active_snoozes("patient-1", now)
    assert snooze.indicator == "critical" and snooze.until - now <= timedelta(days=30)
    assert snooze.reason_code == "benefit-outweighs-risk-review-1-month"


def test_overrides_without_a_snoozing_reason_or_on_unknown_cards_record_no_snooze(store):
    card = _subject_card("C1-calcium-binder-calciphylaxis", "calcium acetate")
    store.record_served("svc", "patient-view", "patient-1", [card])
    store.add_feedback(
        "svc",
        [
            FeedbackItem.model_validate(overridden(card=card.uuid)),  # benefit-outweighs-risk: no period
            FeedbackItem.model_validate(overridden(card="never-served", code=SNOOZE_CODE)),
        ],
    )
    assert store.active_snoozes("patient-1", datetime.now(UTC)) == ()
    assert _query(store, "SELECT COUNT(*) FROM snooze") == [(0,)]


def test_a_snooze_ends_early_on_command_and_snoozing_can_be_off(store):
    card = _subject_card("M1-mineral-status-calciphylaxis", "", indicator="info")
    store.record_served("svc", "patient-view", "patient-1", [card])
    store.add_feedback("svc", [FeedbackItem.model_validate(overridden(card=card.uuid, code=SNOOZE_CODE))])
    assert len(store.active_snoozes("patient-1", datetime.now(UTC))) == 1
    assert store.end_snooze(card.uuid) and not store.end_snooze(card.uuid)
    assert store.active_snoozes("patient-1", datetime.now(UTC)) == ()
    store.snooze_days = {}  # CDS_SNOOZE_ENABLED=false
    again = _subject_card("M1-mineral-status-calciphylaxis", "", indicator="info")
    store.record_served("svc", "patient-view", "patient-1", [again])
    store.add_feedback("svc", [FeedbackItem.model_validate(overridden(card=again.uuid, code=SNOOZE_CODE))])
    assert store.active_snoozes("patient-1", datetime.now(UTC)) == ()


def test_a_new_sqlite_file_first_used_by_many_threads_at_once_is_never_unavailable(tmp_path):
    """Twelve threads open a new file at the same moment, forty times: switching it to WAL needs
    an exclusive lock that SQLite refuses at once (no busy wait) when two connections race for
    it; connections are set up one at a time, so no call ever gets a 503 for it."""
    from cds_service.errors import ServiceUnavailable

    failures = 0
    for round_ in range(40):
        store = SQLiteFeedbackStore(tmp_path / f"round-{round_}.sqlite3")
        barrier = threading.Barrier(12)
        errors: list[Exception] = []

        def first_use(store=store, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                store.ping()
            except ServiceUnavailable as exc:
                errors.append(exc)

        threads = [threading.Thread(target=first_use) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failures += bool(errors)
        store.close()
    assert failures == 0
