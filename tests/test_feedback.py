"""Feedback endpoint and store: validation, idempotency, attribution to rules, report."""

from __future__ import annotations

import sqlite3

import pytest

from cds_service.feedback import UNKNOWN_RULE, SQLiteFeedbackStore, format_report
from cds_service.protocol import Card, FeedbackItem, Source
from tests.conftest import load_shared

FEEDBACK = "/cds-services/calciphylaxis-order-select/feedback"


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
        reason["reason"] = {"system": "https://example.org/override", "code": code, "display": display}
    if comment:
        reason["userComment"] = comment
    if reason:
        item["overrideReason"] = reason
    return item


def stored_rows(settings):
    with sqlite3.connect(settings.feedback_db) as conn:
        return conn.execute("SELECT card_uuid, outcome FROM feedback").fetchall()


def test_feedback_is_validated_stored_and_answered_200(client, settings):
    response = client.post(FEEDBACK, json={"feedback": [accepted(), overridden(card="card-2")]})
    assert response.status_code == 200
    assert response.get_json() == {"stored": 2, "duplicates": 0}
    assert sorted(stored_rows(settings)) == [("card-1", "accepted"), ("card-2", "overridden")]


def test_resent_feedback_is_stored_once(client, settings):
    body = {"feedback": [accepted()]}
    assert client.post(FEEDBACK, json=body).get_json() == {"stored": 1, "duplicates": 0}
    assert client.post(FEEDBACK, json=body).get_json() == {"stored": 0, "duplicates": 1}
    assert len(stored_rows(settings)) == 1


def test_feedback_database_uses_wal_and_is_created_on_first_use(client, settings):
    assert not settings.feedback_db.exists()
    client.post(FEEDBACK, json={"feedback": [accepted()]})
    assert settings.feedback_db.exists()
    with sqlite3.connect(settings.feedback_db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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
def test_invalid_feedback_is_400_naming_the_field(client, settings, body, expected):
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 400
    assert expected in response.get_json()["issue"][0]["diagnostics"]
    assert not settings.feedback_db.exists() or stored_rows(settings) == []


def test_feedback_for_unknown_service_is_404(client):
    response = client.post("/cds-services/nope/feedback", json={"feedback": [accepted()]})
    assert response.status_code == 404


def test_feedback_body_must_be_an_object(client):
    response = client.post(FEEDBACK, json=[accepted()])
    assert response.status_code == 400


def _card(rule_id: str) -> Card:
    return Card(summary="s", indicator="warning", source=Source(label="x"), rule_id=rule_id)


def test_report_attributes_feedback_to_the_rule_that_served_the_card(tmp_path):
    store = SQLiteFeedbackStore(tmp_path / "f.db")
    c1, c2, c3 = _card("C1-binder"), _card("C1-binder"), _card("C2-vka")
    store.record_served("svc", "order-select", "patient-1", [c1, c2, c3])
    items = [
        FeedbackItem.model_validate(accepted(card=c1.uuid)),
        FeedbackItem.model_validate(overridden(card=c2.uuid)),
        FeedbackItem.model_validate(overridden(card=c3.uuid, code=None, comment="seen by nephrology")),
        FeedbackItem.model_validate(overridden(card="never-served")),
    ]
    assert store.add_feedback("svc", items) == (4, 0)
    reports = {r.rule_id: r for r in store.report()}
    assert (reports["C1-binder"].served, reports["C1-binder"].accepted, reports["C1-binder"].overridden) == (2, 1, 1)
    assert reports["C1-binder"].override_reasons == {"Benefit outweighs risk": 1}
    assert reports["C2-vka"].override_reasons == {"free-text comment only": 1}
    assert reports[UNKNOWN_RULE].overridden == 1
    text = format_report(store.report())
    assert "C1-binder" in text and "Benefit outweighs risk (1)" in text


def test_served_card_log_hashes_the_patient_id(tmp_path):
    store = SQLiteFeedbackStore(tmp_path / "f.db")
    store.record_served("svc", "patient-view", "patient-123", [_card("C1")])
    with sqlite3.connect(tmp_path / "f.db") as conn:
        (patient_hash,) = conn.execute("SELECT patient_hash FROM served_card").fetchone()
    assert "patient-123" not in patient_hash and len(patient_hash) == 64


# --- where the database is, and how durable ----------------------------------------------------


def test_relative_feedback_db_is_the_same_file_from_any_working_directory(tmp_path, monkeypatch, capsys):
    """The server and `feedback-report` find the same file wherever each is started."""
    from cds_service import cli
    from cds_service.config import Settings
    from cds_service.http.app import create_app

    base = tmp_path / "data"
    monkeypatch.setattr("cds_service.config.data_dir", lambda: base)
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
    assert "No feedback database" not in out and "Benefit outweighs risk (1)" in out
    assert not (server_dir / "var").exists() and not (shell_dir / "var").exists()


def test_relative_feedback_db_defaults_to_the_project_directory_of_a_checkout(monkeypatch, tmp_path):
    from cds_service.config import Settings
    from tests.conftest import REPO

    monkeypatch.delenv("CDS_FEEDBACK_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings().feedback_db == REPO / "var" / "feedback.sqlite3"
    assert Settings(feedback_db=tmp_path / "abs.db").feedback_db == tmp_path / "abs.db"


def test_feedback_report_db_flag_is_relative_to_the_working_directory(tmp_path, monkeypatch, capsys):
    from cds_service import cli

    store = SQLiteFeedbackStore(tmp_path / "here.db")
    store.add_feedback("svc", [FeedbackItem.model_validate(overridden())])
    monkeypatch.chdir(tmp_path)
    assert cli.main(["feedback-report", "--db", "here.db"]) == 0
    assert "Benefit outweighs risk (1)" in capsys.readouterr().out


def test_acknowledged_feedback_is_durable_wal_with_synchronous_full(tmp_path):
    store = SQLiteFeedbackStore(tmp_path / "f.db")
    store.add_feedback("svc", [FeedbackItem.model_validate(accepted())])
    assert store.durability() == {"journal_mode": "wal", "synchronous": 2}  # 2 = FULL


# --- feedback on a card the service never served ------------------------------------------------


def test_feedback_for_a_card_never_served_is_stored_but_reported_apart_from_every_rule(tmp_path, client):
    response = client.post(FEEDBACK, json={"feedback": [overridden(card="never-served"), accepted(card="also-not")]})
    assert response.status_code == 200 and response.get_json() == {"stored": 2, "duplicates": 0}

    store = SQLiteFeedbackStore(tmp_path / "f.db")
    c1 = _card("C1-binder")
    store.record_served("svc", "order-select", "p", [c1])
    store.add_feedback(
        "svc",
        [FeedbackItem.model_validate(i) for i in (accepted(card=c1.uuid), overridden(card="never-served"))],
    )
    reports = store.report()
    assert [(r.rule_id, r.attributed) for r in reports] == [("C1-binder", True), (UNKNOWN_RULE, False)]
    unknown = reports[-1]
    assert (unknown.served, unknown.accepted, unknown.overridden) == (0, 0, 1)
    text = format_report(reports)
    rule_lines, _, unattributed = text.partition("no record of serving")
    assert "C1-binder" in rule_lines and UNKNOWN_RULE not in text
    assert "not attributed to any rule" in unattributed and "not served by this service" in unattributed
    assert "Benefit outweighs risk (1)" in unattributed
