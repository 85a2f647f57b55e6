"""Snoozes and feedback belong to the caller they were served to (issue 20, findings 2 and 3).

A snooze hides a card for a patient id, and patient ids are only unique within one EHR. Every
served card, feedback item and snooze carries the scope of the verified caller (JWT issuer and
tenant; one fixed scope with authentication off): a hook call reads only its own scope's snoozes,
and an override counts only on a card served to the same caller by the same service.

With several processes, the card an override names may have been served by another process: its
served-card row is written before the card leaves (write-through), so every override finds it.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import psycopg
import pytest

from cds_service.config import Settings
from cds_service.feedback import UNAUTHENTICATED, open_store, scope_of
from cds_service.http.app import create_app
from cds_service.knowledge.content import content
from cds_service.protocol import Card, FeedbackItem, OverrideReason, Source
from tests.auth_support import BASE, ISS, bearer, claims, default_issuer, ec_key, jwks, public_jwk, sign, write_issuers
from tests.conftest import FROZEN_NOW
from tests.feedback_support import ORDER_SELECT, PATIENT_VIEW, PV, order_select_body, overridden
from tests.processes import ServiceProcess

SYSTEM = content().override_system
SNOOZING = set(content().snooze_days)
OTHER_ISS = "https://other-hospital.test.example/cds-client"

# --- callers -------------------------------------------------------------------------------------


class Caller:
    """One EHR (an issuer, and a tenant of it or none) calling the service through a test client."""

    def __init__(self, client, iss: str = ISS, tenant: str | None = None, key: str = "ec", kid: str = "ec-1"):
        self.client, self.iss, self.tenant, self.key, self.kid = client, iss, tenant, key, kid

    def _headers(self, path: str) -> dict[str, str]:
        if self.iss is None:  # authentication off
            return {}
        extra = {"tenant": self.tenant} if self.tenant is not None else {}
        token = sign(ec_key(self.key), claims(aud=BASE + path, now=time.time(), iss=self.iss, **extra), kid=self.kid)
        return {"Authorization": bearer(token)}

    def cards(self, body=PV, path=PATIENT_VIEW) -> list[dict]:
        response = self.client.post(path, json=body, headers=self._headers(path))
        assert response.status_code == 200, response.get_json()
        return response.get_json()["cards"]

    def override(self, card: dict, code: str | None = None, path=PATIENT_VIEW, system=SYSTEM) -> dict:
        code = code or next(r["code"] for r in card["overrideReasons"] if r["code"] in SNOOZING)
        item = overridden(card["uuid"], {"system": system, "code": code, "display": "whatever the EHR says"})
        response = self.client.post(
            path + "/feedback", json={"feedback": [item]}, headers=self._headers(path + "/feedback")
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()["items"][0]


def _binder(cards: list[dict]) -> dict | None:
    return next((c for c in cards if "calcium acetate" in c["summary"]), None)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "feedback.sqlite3"


@pytest.fixture
def secured(tmp_path, db):
    """The service with two trusted issuers (the second one signs with its own key)."""
    second = {"iss": OTHER_ISS, "jwks": jwks(public_jwk(ec_key("other-hospital"), "ec-2", "ES384"))}
    issuers = write_issuers(tmp_path, default_issuer(), second)
    settings = Settings(feedback_db=db, issuers_file=issuers, public_base_url=BASE)
    return create_app(settings, now=lambda: FROZEN_NOW).test_client()


# --- the scope -------------------------------------------------------------------------------------


def test_the_scope_is_the_verified_issuer_and_tenant_or_one_fixed_scope_without_authentication():
    assert scope_of(None) == UNAUTHENTICATED
    a = scope_of({"iss": ISS, "tenant": "hospital-a"})
    assert a.startswith("jwt:") and len(a) == 68
    others = {scope_of({"iss": ISS, "tenant": t}) for t in ("hospital-b", "", None)} | {
        scope_of({"iss": OTHER_ISS, "tenant": "hospital-a"})
    }
    assert a not in others and len(others) == 4 and UNAUTHENTICATED not in others
    assert len(scope_of({"iss": ISS, "tenant": "x" * 100_000})) == 68  # bounded whatever the claim


# --- finding 2: snoozes are scoped ------------------------------------------------------------------


def test_two_tenants_of_one_issuer_with_the_same_patient_id_do_not_share_snoozes(secured):
    a, b = Caller(secured, tenant="hospital-a"), Caller(secured, tenant="hospital-b")
    card = _binder(a.cards())
    assert card is not None and card["indicator"] == "critical"
    result = a.override(card)
    assert result["overrideReason"] == "recorded" and "snoozedUntil" in result
    assert _binder(a.cards()) is None  # A's own snooze holds for A
    assert _binder(b.cards()) is not None  # B's patient with the same id still gets the critical card


def test_two_issuers_with_the_same_patient_id_do_not_share_snoozes(secured):
    first, second = Caller(secured), Caller(secured, iss=OTHER_ISS, key="other-hospital", kid="ec-2")
    first.override(_binder(first.cards()))
    assert _binder(first.cards()) is None
    assert _binder(second.cards()) is not None


def test_an_override_of_a_card_served_to_another_caller_snoozes_nothing(secured):
    a, b = Caller(secured, tenant="hospital-a"), Caller(secured, tenant="hospital-b")
    stranger = Caller(secured, iss=OTHER_ISS, key="other-hospital", kid="ec-2")
    card = _binder(a.cards())
    assert b.override(card) == {"result": "stored", "overrideReason": "card-unknown"}
    assert stranger.override(card) == {"result": "stored", "overrideReason": "card-unknown"}
    assert _binder(a.cards()) is not None and _binder(b.cards()) is not None


def test_an_override_sent_to_another_services_feedback_endpoint_snoozes_nothing(secured):
    a = Caller(secured, tenant="hospital-a")
    card = _binder(a.cards())
    assert a.override(card, path=ORDER_SELECT) == {"result": "stored", "overrideReason": "card-unknown"}
    assert _binder(a.cards()) is not None
    assert a.override(card)["overrideReason"] == "recorded"  # to the service that served it: it counts
    assert _binder(a.cards()) is None


def test_a_forged_unauthenticated_override_never_hides_a_card_served_to_an_authenticated_caller(secured, db):
    """An open instance (authentication off) on the same database: whatever it records lives in
    the one unauthenticated scope, which no authenticated hook call reads."""
    a = Caller(secured, tenant="hospital-a")
    served_to_a = _binder(a.cards())
    forger = Caller(create_app(Settings(feedback_db=db), now=lambda: FROZEN_NOW).test_client(), iss=None)
    # its own forged hook call for the same patient id, overridden: a snooze, in its own scope only
    assert forger.override(_binder(forger.cards()))["overrideReason"] == "recorded"
    assert _binder(forger.cards()) is None
    # and the authenticated caller's card, by its uuid: not its card
    assert forger.override(served_to_a) == {"result": "stored", "overrideReason": "card-unknown"}
    assert _binder(a.cards()) is not None


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        opened = open_store(Settings(feedback_db=tmp_path / "f.sqlite3"))
    else:
        opened = open_store(Settings(database_url=request.getfixturevalue("pg_url")))
    yield opened
    opened.close()


def test_snoozes_and_served_cards_carry_the_callers_scope_on_either_backend(store):
    reasons = [OverrideReason(system=SYSTEM, code=c, display="d") for c in sorted(SNOOZING)]
    card = Card(
        summary="s",
        indicator="warning",
        source=Source(label="x"),
        rule_id="C1-calcium-binder-calciphylaxis",
        subject="calcium acetate",
        overrideReasons=reasons,
    )
    a, b = scope_of({"iss": ISS, "tenant": "a"}), scope_of({"iss": ISS, "tenant": "b"})
    store.record_served("svc", "patient-view", "patient-1", [card], scope=a)
    item = FeedbackItem.model_validate(
        overridden(card.uuid, {"system": SYSTEM, "code": "addressed-with-nephrology-3-months"}, at="12:00")
    )
    (wrong_caller,) = store.record_feedback("svc", [item], scope=b)
    (wrong_service,) = store.record_feedback("other-svc", [item], scope=a)
    assert wrong_caller.reason == wrong_service.reason == "card-unknown"
    assert store.active_snoozes("patient-1", datetime.now(UTC), a) == ()
    (right,) = store.record_feedback("svc", [item], scope=a)
    assert right.reason == "recorded" and right.snoozed_until is not None
    (snooze,) = store.active_snoozes("patient-1", datetime.now(UTC), a)
    assert snooze.reason_code == "addressed-with-nephrology-3-months"
    assert store.active_snoozes("patient-1", datetime.now(UTC), b) == ()
    assert store.active_snoozes("patient-1", datetime.now(UTC)) == ()  # the unauthenticated scope
    # the report credits the rule with the card's own caller's feedback only
    (rule,) = [r for r in store.report() if r.attributed]
    assert (rule.served, rule.overridden) == (1, 1)


# --- finding 3: an override sent to any process finds its card -----------------------------------


@pytest.fixture(params=["postgresql", "sqlite"])
def shared_store_env(request, tmp_path) -> dict[str, str]:
    if request.param == "postgresql":
        return {"CDS_DATABASE_URL": request.getfixturevalue("pg_url")}
    return {"CDS_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")}


def test_overrides_sent_right_after_the_card_to_a_two_worker_server_all_snooze(shared_store_env):
    """Thirty cards, each overridden the moment it arrives, on a server of two worker processes:
    whichever worker gets the override finds the card the other one served (its row was written
    before the card left), so every override records its snooze."""
    server = ServiceProcess(shared_store_env, "--workers", "2")
    try:
        body = order_select_body()
        results = []
        for _ in range(30):
            status, answer, _ = server.request("POST", ORDER_SELECT, body)
            assert status == 200, answer
            (card,) = answer["cards"]
            code = next(r["code"] for r in card["overrideReasons"] if r["code"] in SNOOZING)
            item = overridden(card["uuid"], {"system": SYSTEM, "code": code})
            status, answer, _ = server.request("POST", ORDER_SELECT + "/feedback", {"feedback": [item]})
            assert status == 200, answer
            results.append(answer["items"][0])
        assert [r.get("overrideReason") for r in results] == ["recorded"] * 30
        assert all("snoozedUntil" in r for r in results), results
        # both workers served cards and took overrides (each request is a new connection)
        lines = server.lines()
        for path in (ORDER_SELECT, ORDER_SELECT + "/feedback"):
            assert len({line["pid"] for line in lines if line.get("path") == path}) == 2, path
        assert server.stop() == 0
    finally:
        server.close()
    count = _count_snoozes(shared_store_env)
    assert count == 30


def _count_snoozes(env: dict[str, str]) -> int:
    if "CDS_DATABASE_URL" in env:
        with psycopg.connect(env["CDS_DATABASE_URL"]) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM snooze").fetchone()[0])
    import sqlite3

    with sqlite3.connect(env["CDS_FEEDBACK_DB"]) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM snooze").fetchone()[0])


def test_cards_an_override_can_name_are_written_before_the_answer_the_others_only_queued(pg_url, monkeypatch):
    """Write-through costs a short transaction per hook call: only calls with cards that offer
    override reasons (snoozing or not: a reason is kept only when its card is found) pay it."""
    from cds_service.feedback import ServedCardWriter

    store = open_store(Settings(database_url=pg_url, snooze_enabled=False))
    written_now: list[int] = []
    real = store.write_served_now

    def counting(rows):
        written_now.append(len(rows))
        return real(rows)

    monkeypatch.setattr(store, "write_served_now", counting)
    writer = ServedCardWriter(store, retention=None, write_through=True, linger=30)

    def plain() -> Card:  # no override reasons offered
        return Card(
            summary="s", indicator="info", source=Source(label="x"), rule_id="X1-calciphylaxis-check-incomplete"
        )

    overridable = Card(
        summary="s",
        indicator="warning",
        source=Source(label="x"),
        rule_id="C1-calcium-binder-calciphylaxis",
        overrideReasons=[OverrideReason(system=SYSTEM, code="benefit-outweighs-risk", display="d")],
    )
    writer.submit("svc", "patient-view", "p", [plain()], scope=UNAUTHENTICATED)
    writer.submit("svc", "patient-view", "p", [plain(), overridable], scope=UNAUTHENTICATED)
    assert written_now == [2] and writer.pending() == 1  # the second call's rows are in the store already
    assert store.served_count() == 2
    writer.close()
    assert store.served_count() == 3
    store.close()


def test_concurrent_hook_calls_and_overrides_over_two_workers_lose_no_snooze(pg_url):
    """The same under concurrency: eight clients, each a card and its override at once."""
    server = ServiceProcess({"CDS_DATABASE_URL": pg_url}, "--workers", "2")
    try:
        body = order_select_body()

        def one(_: int) -> dict:
            (card,) = server.request("POST", ORDER_SELECT, body)[1]["cards"]
            code = next(r["code"] for r in card["overrideReasons"] if r["code"] in SNOOZING)
            item = overridden(card["uuid"], {"system": SYSTEM, "code": code})
            return server.request("POST", ORDER_SELECT + "/feedback", {"feedback": [item]})[1]["items"][0]

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(40)))
        assert sum("snoozedUntil" in r for r in results) == 40, results
    finally:
        server.close()


def test_feedback_items_are_told_apart_per_caller_even_when_identical(db):
    """Two callers sending the very same item about the same card uuid: each is its own item
    (neither learns that the other sent it)."""
    store = open_store(Settings(feedback_db=db))
    item = FeedbackItem.model_validate(
        {
            "card": str(uuid.uuid4()),
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "s"}],
            "outcomeTimestamp": "2026-11-21T12:00:00Z",
        }
    )
    a, b = scope_of({"iss": ISS, "tenant": "a"}), scope_of({"iss": ISS, "tenant": "b"})
    assert [r.result for r in store.record_feedback("svc", [item], a)] == ["stored"]
    assert [r.result for r in store.record_feedback("svc", [item], b)] == ["stored"]
    assert [r.result for r in store.record_feedback("svc", [item], a)] == ["duplicate"]
    store.close()
