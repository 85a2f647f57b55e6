"""Several stateless replicas on one PostgreSQL and one Redis, as real processes on loopback.

Each test starts its own service processes (the console script, free ports) against the real
servers of `make services` (a database schema and a Redis key prefix of the test's own); the
readiness test runs a throwaway PostgreSQL cluster of its own, so it can stop it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from cds_service.knowledge.content import content
from tests.auth_support import BASE, ISS, bearer, claims, default_issuer, ec_key, sign, write_issuers
from tests.feedback_support import ORDER_SELECT, order_select_body
from tests.processes import ServiceProcess, command

FEEDBACK = ORDER_SELECT + "/feedback"


def _feedback(card: str, outcome: str = "accepted") -> dict:
    item = {"card": card, "outcome": outcome, "outcomeTimestamp": "2026-11-21T10:00:00Z"}
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": "s-1"}]
    else:
        # A reason the card offered, in the service's code system (the caller's display is never stored).
        item["overrideReason"] = {
            "reason": {"system": content().override_system, "code": "benefit-outweighs-risk", "display": "Benefit"}
        }
    return {"feedback": [item]}


def _rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def shared(pg_url, redis_settings) -> dict[str, str]:
    """The environment of every replica: one PostgreSQL, one Redis."""
    return {
        "CDS_DATABASE_URL": pg_url,
        "CDS_REDIS_URL": redis_settings["redis_url"],
        "CDS_REDIS_KEY_PREFIX": redis_settings["redis_key_prefix"],
    }


@pytest.fixture
def replicas():
    started: list[ServiceProcess] = []

    def start(env: dict[str, str], *args: str) -> ServiceProcess:
        process = ServiceProcess(env, *args)
        started.append(process)
        return process

    yield start
    for process in started:
        print(f"--- log of the service on port {process.port} (shown when the test fails) ---")
        print(process.log()[-20000:])
        process.close()


def test_a_token_accepted_by_one_replica_is_refused_by_the_other(tmp_path, shared, replicas):
    issuers = write_issuers(tmp_path, default_issuer())
    env = {**shared, "CDS_ISSUERS_FILE": str(issuers), "CDS_PUBLIC_BASE_URL": BASE}
    a, b = replicas(env), replicas(env)
    aud = BASE + "/cds-services"

    def token() -> dict[str, str]:
        return {"Authorization": bearer(sign(ec_key(), claims(aud=aud, now=time.time())))}

    first, second = token(), token()
    assert a.request("GET", "/cds-services", headers=first)[0] == 200
    assert b.request("GET", "/cds-services", headers=first)[0] == 401  # replayed on the other replica
    assert b.request("GET", "/cds-services", headers=second)[0] == 200
    assert a.request("GET", "/cds-services", headers=second)[0] == 401
    assert a.request("GET", "/cds-services", headers=first)[0] == 401  # and on the first one, of course

    # The same fresh token sent to both at the same moment: exactly one accepts it.
    for _ in range(5):
        same = token()
        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(lambda r, h=same: r.request("GET", "/cds-services", headers=h)[0], (a, b)))
        assert statuses == [200, 401]
    refusals = [
        line for line in a.lines() + b.lines() if line.get("status") == 401 and line.get("message") == "request"
    ]
    assert refusals and all(line["events"][0]["reason"] == "jti already used (replayed token)" for line in refusals)
    assert all(line["events"][0]["iss"] == ISS for line in refusals)


def test_feedback_posted_to_both_replicas_under_concurrency_and_a_kill_is_stored_once_per_item(shared, replicas):
    a, b = replicas(shared), replicas(shared)
    acknowledged: set[str] = set()
    lock = threading.Lock()

    def post(replica: ServiceProcess, card: str) -> dict | None:
        try:
            status, body, _ = replica.request("POST", FEEDBACK, _feedback(card), timeout=10)
        except (OSError, http.client.HTTPException):  # refused, reset or cut mid-answer: the replica is gone
            return None
        if status != 200:
            return None
        with lock:
            acknowledged.add(card)
        return body

    # 1. Every item to both replicas at the same moment: each stored once, by exactly one of them.
    cards = [f"both-{uuid.uuid4()}" for _ in range(60)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda job: post(*job), [(r, c) for c in cards for r in (a, b)]))
    assert all(answer is not None for answer in answers)
    assert sum(answer["stored"] for answer in answers) == len(cards)
    assert sum(answer["duplicates"] for answer in answers) == len(cards)

    # 2. Items spread over both while one replica is killed (SIGKILL) mid-load; what it did not
    # acknowledge is sent again to the other, as an EHR retries.
    later = [f"kill-{uuid.uuid4()}" for _ in range(200)]
    sent = 0

    def send(card: str, index: int) -> None:
        nonlocal sent
        replica = (a, b)[index % 2]
        if post(replica, card) is None:
            for _ in range(3):
                if post(a, card) is not None:
                    return
        with lock:
            sent += 1
            if sent == 50:
                b.kill()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, later, range(len(later))))
    assert b.proc.returncode is not None  # it was killed under load
    assert acknowledged == set(cards) | set(later)  # the EHR got an answer for every item

    rows = _rows(shared["CDS_DATABASE_URL"], "SELECT card_uuid, COUNT(*) FROM feedback GROUP BY card_uuid")
    counts = dict(rows)
    assert set(counts) == acknowledged and set(counts.values()) == {1}  # exactly once each, none lost
    assert a.request("GET", "/ready")[0] == 200


def test_feedback_report_reads_the_store_both_replicas_share(shared, replicas):
    a, b = replicas(shared), replicas(shared)
    body = order_select_body()
    cards_a = [a.request("POST", ORDER_SELECT, body)[1]["cards"][0]["uuid"] for _ in range(3)]
    cards_b = [b.request("POST", ORDER_SELECT, body)[1]["cards"][0]["uuid"] for _ in range(3)]
    for card in cards_a:  # feedback reaches the other replica than the one that served the card
        assert b.request("POST", FEEDBACK, _feedback(card, "accepted"))[0] == 200
    for card in cards_b:
        assert a.request("POST", FEEDBACK, _feedback(card, "overridden"))[0] == 200
    assert a.stop() == 0 and b.stop() == 0  # a clean shutdown writes every queued served-card row

    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    report = subprocess.run(
        [*command(), "feedback-report"],
        env={**env, "CDS_DATABASE_URL": shared["CDS_DATABASE_URL"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    (row,) = [line for line in report.stdout.splitlines() if line.startswith("C1")]
    assert row.split()[1:] == ["6", "3", "3"]
    assert "override reason: Benefit outweighs the risk for this patient (3)" in report.stdout
    assert "not served by this service" not in report.stdout  # every card's row was written


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_scraped_from_a_multi_process_server_show_the_counters_moving(shared, replicas):
    server = replicas(shared, "--workers", "2")
    assert server.request("GET", "/ready")[0] == 200
    service = {"service": "calciphylaxis-order-select"}
    before = server.request("GET", "/metrics")[1]
    body = order_select_body()
    cards = [server.request("POST", ORDER_SELECT, body)[1]["cards"][0] for _ in range(12)]
    server.request("POST", FEEDBACK, _feedback(cards[0]["uuid"], "accepted"))
    server.request("POST", FEEDBACK, _feedback(cards[0]["uuid"], "accepted"))  # a duplicate
    after = server.request("GET", "/metrics")[1]

    def moved(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert moved("cds_hook_calls_total", status="200", **service) == 12
    assert moved("cds_hook_call_duration_seconds_count", **service) == 12
    for stage in ("auth", "validate", "prefetch", "record", "checks", "render", "log"):
        assert moved("cds_hook_stage_duration_seconds_count", stage=stage, **service) == 12, stage
    assert moved("cds_cards_total", indicator="critical", rule="C1-calcium-binder-calciphylaxis", **service) == 12
    assert moved("cds_feedback_items_total", outcome="accepted", result="stored", **service) == 1
    assert moved("cds_feedback_items_total", outcome="accepted", result="duplicate", **service) == 1
    assert moved("cds_http_requests_total", route="/cds-services/<service_id>", method="POST", status="200") == 12
    # No patient data in any label: the request's patient id appears nowhere in the exposition.
    assert body["context"]["patientId"] not in after

    # New connections are spread over both workers (each has its own socket on the port). GET /
    # rather than /health, whose line is DEBUG (issue 22).
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: server.request("GET", "/"), range(40)))
    started = {line["worker_pid"] for line in server.lines() if line.get("message") == "worker process started"}
    answered = {line["pid"] for line in server.lines() if line.get("path") == "/"}
    assert len(started) == 2 and answered == started
    assert server.stop() == 0
    served = _rows(shared["CDS_DATABASE_URL"], "SELECT COUNT(*) FROM served_card")[0][0]
    assert served == 12  # both workers wrote out their queued rows on the way down


def test_ready_fails_while_postgres_is_stopped_and_hook_calls_go_on(private_postgres, replicas):
    server = replicas({"CDS_DATABASE_URL": private_postgres.url, "CDS_DATABASE_CONNECT_TIMEOUT": "1"})
    status, body, _ = server.request("GET", "/ready")
    assert status == 200 and body["checks"] == {"content": "ok", "database": "ok"}

    private_postgres.stop()
    status, body, headers = server.request("GET", "/ready")
    assert status == 503 and headers.get("Retry-After")
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == "Not ready: database unreachable."
    assert "127.0.0.1" not in json.dumps(body)  # where the database is stays in the log
    # Hook calls do not need the database (their served-card rows wait in the queue) ...
    hook = server.request("POST", ORDER_SELECT, order_select_body())
    assert hook[0] == 200 and hook[1]["cards"]
    # ... feedback does, and says so: retry later.
    status, body, headers = server.request("POST", FEEDBACK, _feedback("card-while-down"))
    assert status == 503 and headers.get("Retry-After") == "1"

    private_postgres.start()
    deadline = time.time() + 30
    while server.request("GET", "/ready")[0] != 200:
        assert time.time() < deadline, "not ready again after PostgreSQL came back"
        time.sleep(0.2)
    assert server.request("POST", FEEDBACK, _feedback("card-while-down"))[0] == 200
    assert server.stop() == 0
    assert private_postgres.psql("SELECT COUNT(*) FROM served_card") == "1"  # the queued row was written
    assert private_postgres.psql("SELECT COUNT(*) FROM feedback") == "1"
