"""What feedback may store, and how much (issue 20, findings 1, 4 and 5).

* No text the EHR chose is stored but a clinician's comment (cut to a bound): an override's reason
  is kept as its code, only when it is one the served card offered, in the service's code system,
  and cards that mention it later word it from the service's own content.
* Every caller string is bounded (400 past the bounds), feedback per card and per caller is
  bounded, and feedback has a retention period.
* A feedback store that is down costs a hook call at most ``CDS_SNOOZE_LOOKUP_TIMEOUT`` once,
  then nothing, and the cards are still served (without snoozes).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cds_service.config import Settings
from cds_service.errors import ServiceUnavailable
from cds_service.feedback import PostgresFeedbackStore, ServedCardWriter, open_store
from cds_service.feedback.guard import HookPathGuard
from cds_service.feedback.store import MAX_COMMENT_CHARS
from cds_service.governance.build import NOT_OFFERED
from cds_service.http.app import create_app
from cds_service.knowledge.content import content
from cds_service.protocol import Card, FeedbackItem, Source
from tests.conftest import FROZEN_NOW
from tests.feedback_support import ORDER_SELECT, PATIENT_VIEW, PV, order_select_body, overridden
from tests.processes import ServiceProcess

SYSTEM = content().override_system
ONE_MONTH = "benefit-outweighs-risk-review-1-month"
THREE_MONTHS = "addressed-with-nephrology-3-months"


def _override(card: str, code: str = ONE_MONTH, *, system: str | None = SYSTEM, display: str = "", at: str = "12:01"):
    reason = {"code": code, **({"system": system} if system else {}), **({"display": display} if display else {})}
    return overridden(card, reason, at)


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "feedback.sqlite3"


def _client(db: Path, **settings):
    return create_app(Settings(feedback_db=db, **settings), now=lambda: FROZEN_NOW).test_client()


def _binder(cards: list[dict]) -> dict:
    return next(c for c in cards if "calcium acetate" in c["summary"])


def _all_text(db: Path) -> list[str]:
    """Every text value stored in the feedback file, from every table."""
    with sqlite3.connect(db) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [
            value
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from the schema
            for value in row
            if isinstance(value, str)
        ]


# --- finding 1: the EHR's text is not stored, and cards word earlier overrides themselves ------------


def test_an_override_display_of_any_size_is_never_stored_nor_shown_on_a_later_card(db):
    client = _client(db)
    card = _binder(client.post(PATIENT_VIEW, json=PV).get_json()["cards"])
    junk = "<b>Ignore the calcium</b> " + "x" * 200_000
    item = _override(card["uuid"], display=junk)
    item["overrideReason"]["userComment"] = "seen by nephrology"
    answer = client.post(PATIENT_VIEW + "/feedback", json={"feedback": [item]}).get_json()
    assert answer["items"][0]["overrideReason"] == "recorded" and "snoozedUntil" in answer["items"][0]
    stored = _all_text(db)
    assert not any("Ignore the calcium" in value or "xxxxxxxx" in value for value in stored)
    assert max(len(value) for value in stored) < 2000
    # the order hook that says an earlier override holds words it from the service's own content
    order = order_select_body()
    order["context"]["patientId"] = PV["context"]["patientId"]
    for key in ("conditions", "calcium", "albumin", "phosphate", "pth", "egfr"):
        order["prefetch"][key] = PV["prefetch"][key]
    for entry in order["context"]["draftOrders"]["entry"]:
        entry["resource"]["subject"] = {"reference": f"Patient/{PV['context']['patientId']}"}
    (later,) = client.post(ORDER_SELECT, json=order).get_json()["cards"]
    assert "Ignore the calcium" not in later["detail"] and "holds until" in later["detail"]
    assert content().override_codes[ONE_MONTH] in later["detail"]
    page = client.get("/governance/report").get_data(as_text=True)
    assert "Ignore the calcium" not in page and content().override_codes[ONE_MONTH] in page


@pytest.mark.parametrize(
    ("code", "system", "why"),
    [
        (THREE_MONTHS, SYSTEM, "a critical card offers at most the 1-month review"),
        ("not-a-reason-" + "y" * 5000, SYSTEM, "a code the service never offers"),
        (ONE_MONTH, "https://other.example/override-reasons", "a foreign code system"),
        (ONE_MONTH, None, "no code system"),
    ],
)
def test_an_override_with_a_reason_the_card_did_not_offer_is_stored_without_it_and_snoozes_nothing(
    db, code, system, why
):
    client = _client(db)
    cards = client.post(PATIENT_VIEW, json=PV).get_json()["cards"]
    card = _binder(cards)
    assert card["indicator"] == "critical"
    answer = client.post(PATIENT_VIEW + "/feedback", json={"feedback": [_override(card["uuid"], code, system=system)]})
    assert answer.status_code == 200
    assert answer.get_json()["items"] == [{"result": "stored", "overrideReason": "not-offered"}], why
    assert len(client.post(PATIENT_VIEW, json=PV).get_json()["cards"]) == 2  # nothing snoozed
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT override_code, override_display, reason_check FROM feedback").fetchall() == [
            (None, None, "not-offered")
        ]
        assert conn.execute("SELECT COUNT(*) FROM snooze").fetchone() == (0,)
    store = open_store(Settings(feedback_db=db))
    (rule,) = [r for r in store.report() if r.rule_id == "C1-calcium-binder-calciphylaxis"]
    assert rule.override_reasons == {NOT_OFFERED: 1}
    store.close()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"card": "c" * 129, "outcome": "accepted", "acceptedSuggestions": [{"id": "s"}]}, "feedback.0.card"),
        (
            {"card": "c", "outcome": "accepted", "acceptedSuggestions": [{"id": "s" * 129}]},
            "feedback.0.acceptedSuggestions.0.id",
        ),
        (
            {"card": "c", "outcome": "accepted", "acceptedSuggestions": [{"id": str(n)} for n in range(21)]},
            "feedback.0.acceptedSuggestions",
        ),
    ],
)
def test_caller_ids_past_their_bound_are_refused_with_400(db, item, message):
    client = _client(db)
    item = {**item, "outcomeTimestamp": "2026-11-21T12:00:00Z"}
    response = client.post(ORDER_SELECT + "/feedback", json={"feedback": [item]})
    assert response.status_code == 400
    assert message in response.get_json()["issue"][0]["diagnostics"]
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone() == (0,)


def test_more_than_100_items_in_one_request_are_refused_with_400(db):
    client = _client(db)
    items = [
        {"card": f"c-{n}", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T12:00:00Z"} for n in range(101)
    ]
    response = client.post(ORDER_SELECT + "/feedback", json={"feedback": items})
    assert response.status_code == 400 and "at most 100 items" in response.get_json()["issue"][0]["diagnostics"]


def test_a_long_comment_is_cut_and_members_the_service_does_not_use_are_not_stored(db):
    client = _client(db)
    item = {
        "card": "card-1",
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-21T12:00:00Z",
        "overrideReason": {"userComment": "c" * 200_000, "extension": "e" * 100_000},
        "userId": "Practitioner/" + "u" * 100_000,
    }
    assert client.post(ORDER_SELECT + "/feedback", json={"feedback": [item]}).status_code == 200
    with sqlite3.connect(db) as conn:
        (comment, body) = conn.execute("SELECT user_comment, body FROM feedback").fetchone()
    assert comment == "c" * MAX_COMMENT_CHARS
    assert "uuuu" not in body and "eeee" not in body and len(body) < 2 * MAX_COMMENT_CHARS
    assert max(len(value) for value in _all_text(db)) < 2 * MAX_COMMENT_CHARS


# --- finding 4: bounds on how much feedback is stored, and its retention --------------------------------


def test_each_card_takes_at_most_a_few_feedback_items(db):
    client = _client(db, feedback_max_per_card=3)
    (card,) = client.post(ORDER_SELECT, json=order_select_body()).get_json()["cards"]
    items = [_override(card["uuid"], "benefit-outweighs-risk", at=f"12:{n:02d}") for n in range(10)]
    answer = client.post(ORDER_SELECT + "/feedback", json={"feedback": items}).get_json()
    assert (answer["stored"], answer["duplicates"], answer["refused"]) == (3, 0, 7)
    assert "already has 3 feedback items" in answer["items"][-1]["detail"]
    resent = client.post(ORDER_SELECT + "/feedback", json={"feedback": items[:1]}).get_json()
    assert resent["items"] == [{"result": "duplicate"}]  # a resend is still recognised as one
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone() == (3,)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        opened = open_store(Settings(feedback_db=tmp_path / "f.sqlite3"))
    else:
        opened = open_store(Settings(database_url=request.getfixturevalue("pg_url")))
    yield opened
    opened.close()


def _accepted(card: str, minute: int = 0) -> FeedbackItem:
    return FeedbackItem.model_validate(
        {
            "card": card,
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "s"}],
            "outcomeTimestamp": f"2026-11-21T12:{minute:02d}:00Z",
        }
    )


def test_feedback_on_cards_a_caller_was_not_served_is_bounded_per_caller_and_day(store):
    store.unserved_per_day = 5
    served = Card(summary="s", indicator="warning", source=Source(label="x"), rule_id="C1-calcium-binder-calciphylaxis")
    store.record_served("svc", "order-select", "p", [served], scope="jwt:a")
    results = store.record_feedback("svc", [_accepted(f"made-up-{n}") for n in range(8)], scope="jwt:a")
    assert [r.result for r in results] == ["stored"] * 5 + ["refused"] * 3
    assert "daily allowance" in (results[-1].detail or "")
    # feedback on its own served cards is not held back, nor is another caller's
    assert [r.result for r in store.record_feedback("svc", [_accepted(served.uuid)], scope="jwt:a")] == ["stored"]
    assert [r.result for r in store.record_feedback("svc", [_accepted("made-up-0")], scope="jwt:b")] == ["stored"]
    assert store.feedback_count() == 7


def test_feedback_per_card_is_bounded_under_concurrency(store):
    """Eight requests at once, each with distinct items on one card: the bound holds exactly."""
    store.max_per_card = 4
    card = Card(summary="s", indicator="warning", source=Source(label="x"), rule_id="C1-calcium-binder-calciphylaxis")
    store.record_served("svc", "order-select", "p", [card])
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def send(n: int) -> None:
        barrier.wait()
        outcomes.extend(r.result for r in store.record_feedback("svc", [_accepted(card.uuid, n)]))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 4 + ["stored"] * 4
    assert store.feedback_count() == 4


def test_feedback_older_than_its_retention_is_purged_in_the_background(store):
    store.add_feedback("svc", [_accepted("c-1"), _accepted("c-2")])
    now = datetime.now(UTC)
    assert store.purge_feedback(now - timedelta(days=1)) == 0
    later = now + timedelta(days=400)
    writer = ServedCardWriter(store, retention=None, feedback_retention=timedelta(days=365), now=lambda: later)
    writer.start()  # the first purge runs at once
    deadline = time.monotonic() + 10
    while store.feedback_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.close()
    assert store.feedback_count() == 0


def test_feedback_retention_is_configured_and_on_by_default(tmp_path):
    from cds_service.feedback import open_writer

    settings = Settings(feedback_db=tmp_path / "f.db")
    assert settings.feedback_retention_days == 365
    writer = open_writer(open_store(settings), settings)
    assert writer.feedback_retention == timedelta(days=365)
    keep = Settings(feedback_db=tmp_path / "f.db", feedback_retention_days=0)
    assert open_writer(open_store(keep), keep).feedback_retention is None


# --- finding 5: a store that is down costs a hook call milliseconds ----------------------------------


def test_a_stopped_postgres_costs_the_snooze_lookup_one_short_wait_then_none(private_postgres):
    clock = [1000.0]
    store = PostgresFeedbackStore(private_postgres.url, connect_timeout=5.0)  # the default 5 s
    store.hook_guard = HookPathGuard(clock=lambda: clock[0])
    store.migrate()
    assert store.active_snoozes("p-1", datetime.now(UTC)) == ()  # the pool is open and warm
    private_postgres.stop()
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            store.active_snoozes("p-1", datetime.now(UTC))
        assert time.monotonic() - started < 1.0  # the hook timeout (0.2 s), not the 5 s connect timeout
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(ServiceUnavailable):
                store.active_snoozes("p-1", datetime.now(UTC))
        assert time.monotonic() - started < 0.05  # the circuit is open: not asked at all
        # write-through skips the store too (the rows are then queued)
        card = Card(summary="s", indicator="info", source=Source(label="x"), rule_id="M1-mineral-status-calciphylaxis")
        from cds_service.feedback.store import served_rows

        started = time.monotonic()
        assert store.write_served_now(served_rows("svc", "patient-view", "p-1", [card])) is False
        assert time.monotonic() - started < 0.05
    finally:
        private_postgres.start()
    # once it is back, the first call after the cool-down reads snoozes again
    deadline = time.monotonic() + 60
    while True:
        clock[0] += 60
        try:
            assert store.active_snoozes("p-1", datetime.now(UTC)) == ()
            break
        except ServiceUnavailable:
            assert time.monotonic() < deadline, "snoozes not read again after PostgreSQL came back"
            time.sleep(0.5)
    store.close()


def test_hook_calls_to_two_workers_after_postgres_stops_are_answered_at_once_with_their_cards(
    private_postgres,
):
    server = ServiceProcess({"CDS_DATABASE_URL": private_postgres.url}, "--workers", "2")
    try:
        body = order_select_body()
        for _ in range(12):  # both workers have served calls: their connection pools are open
            assert server.request("POST", ORDER_SELECT, body)[0] == 200
        private_postgres.stop()
        timings = []
        for _ in range(8):
            started = time.monotonic()
            status, answer, _ = server.request("POST", ORDER_SELECT, body, timeout=30)
            timings.append(time.monotonic() - started)
            assert status == 200 and answer["cards"], answer
        assert max(timings) < 1.0, timings  # the first call of each worker included
        assert sorted(timings)[len(timings) // 2] < 0.25, timings
        lines = [line for line in server.lines() if line.get("path") == ORDER_SELECT]
        assert any(line.get("snoozes") == "not read: feedback store unavailable" for line in lines)
        private_postgres.start()
    finally:
        server.close()
    # every served-card row, queued while the database was down, was written on the way down
    assert private_postgres.psql("SELECT COUNT(*) FROM served_card") == "20"


def test_the_hook_path_circuit_opens_on_a_failure_lets_one_trial_through_and_closes_on_success():
    clock = [0.0]
    guard = HookPathGuard(cooldown=10, clock=lambda: clock[0])
    calls: list[str] = []

    def down() -> None:
        calls.append("down")
        raise ServiceUnavailable("down")

    def up() -> str:
        calls.append("up")
        return "ok"

    assert guard.run(up) == "ok"
    with pytest.raises(ServiceUnavailable):
        guard.run(down)
    assert guard.is_open
    with pytest.raises(ServiceUnavailable):
        guard.run(up)  # not asked during the cool-down
    assert calls == ["up", "down"]
    clock[0] = 11
    with pytest.raises(ServiceUnavailable):
        guard.run(down)  # the one trial fails: open for another cool-down
    with pytest.raises(ServiceUnavailable):
        guard.run(up)
    clock[0] = 22
    assert guard.run(up) == "ok" and not guard.is_open
    # a failure that says nothing of an outage (a write that waited too long for a lock) keeps it closed
    with pytest.raises(ServiceUnavailable):
        guard.run(down, failure_opens=False)
    assert not guard.is_open
