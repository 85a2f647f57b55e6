"""Operations: liveness and readiness, Prometheus metrics and who may read them, one log line per
call (written off the request thread), clean shutdown, and the multi-process start-up rules."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from cds_service import cli, metrics
from cds_service.config import Settings
from cds_service.http.app import close_app, create_app
from cds_service.http.logs import JsonFormatter, configure_logging, stop_logging
from tests.auth_support import BASE, bearer, claims, default_issuer, ec_key, sign, write_issuers
from tests.conftest import FIXTURES, FROZEN_NOW
from tests.processes import ServiceProcess
from tools.services import free_port

ORDER_SELECT = "/cds-services/calciphylaxis-order-select"
FEEDBACK = ORDER_SELECT + "/feedback"
TOKEN = "metrics-token-0123456789abcdef"


def _order_select() -> bytes:
    body = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text())
    body.pop("_expected", None)
    return json.dumps(body).encode()


def _value(name: str, **labels: str) -> float:
    text = metrics.exposition()[0].decode()
    total = 0.0
    for line in text.splitlines():
        named = line.startswith(name + "{") or line.startswith(name + " ")
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- health and readiness ---------------------------------------------------------------------


def test_health_is_liveness_only(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"


def test_ready_checks_content_and_the_database(client):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"content": "ok", "database": "ok"}


def test_ready_fails_while_shutting_down(app, client):
    app.extensions["cds"].lifecycle.draining.set()
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.get_json()["issue"][0]["diagnostics"] == "Not ready: process shutting down."


def test_ready_fails_when_the_database_cannot_be_opened(tmp_path):
    (tmp_path / "not-a-directory").write_text("x")
    settings = Settings(feedback_db=tmp_path / "not-a-directory" / "feedback.sqlite3")
    response = create_app(settings).test_client().get("/ready")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == "Not ready: database unreachable."
    assert str(tmp_path) not in json.dumps(body)


def test_ready_fails_when_the_configured_redis_is_unreachable(tmp_path):
    settings = Settings(
        feedback_db=tmp_path / "f.db", redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.2
    )
    response = create_app(settings).test_client().get("/ready")
    assert response.status_code == 503
    assert response.get_json()["issue"][0]["diagnostics"] == "Not ready: redis unreachable."


def test_ready_and_health_need_no_token_when_authentication_is_on(tmp_path):
    issuers = write_issuers(tmp_path, default_issuer())
    settings = Settings(feedback_db=tmp_path / "f.db", issuers_file=issuers, public_base_url=BASE)
    client = create_app(settings).test_client()
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    assert client.get("/cds-services").status_code == 401


# --- metrics ---------------------------------------------------------------------------------------


def test_metrics_count_calls_stages_cards_and_feedback(client):
    service = {"service": "calciphylaxis-order-select"}
    before = {
        "calls": _value("cds_hook_calls_total", status="200", **service),
        "record": _value("cds_hook_stage_duration_seconds_count", stage="record", **service),
        "cards": _value("cds_cards_total", indicator="critical", **service),
        "feedback": _value("cds_feedback_items_total", outcome="overridden", result="stored", **service),
    }
    response = client.post(ORDER_SELECT, data=_order_select(), content_type="application/json")
    card = response.get_json()["cards"][0]
    item = {
        "card": card["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-21T10:00:00Z",
        "overrideReason": {"reason": {"code": "benefit-outweighs-risk"}},
    }
    client.post(FEEDBACK, json={"feedback": [item]})
    scrape = client.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["Content-Type"].startswith("text/plain")
    assert _value("cds_hook_calls_total", status="200", **service) == before["calls"] + 1
    assert _value("cds_hook_stage_duration_seconds_count", stage="record", **service) == before["record"] + 1
    assert _value("cds_cards_total", indicator="critical", **service) == before["cards"] + 1
    assert (
        _value("cds_feedback_items_total", outcome="overridden", result="stored", **service) == before["feedback"] + 1
    )
    text = scrape.get_data(as_text=True)
    assert "cds_build_info" in text and "c1-calciphylaxis" not in text  # no patient id in any label


def test_fhir_fetch_outcomes_are_counted():
    from cds_service.fhir.client import FhirFetchError, fetch_outcome

    assert fetch_outcome(FhirFetchError("timed out", failure="timeout")) == "timeout"
    assert fetch_outcome(FhirFetchError("could not connect", failure="connection")) == "connection_failed"
    assert fetch_outcome(FhirFetchError("FHIR server answered 403")) == "http_error"
    assert fetch_outcome(FhirFetchError("FHIR server response was not JSON")) == "invalid_response"


@pytest.fixture
def secured(tmp_path):
    def make(**options):
        issuers = write_issuers(tmp_path, default_issuer())
        settings = Settings(feedback_db=tmp_path / "f.db", issuers_file=issuers, public_base_url=BASE, **options)
        return create_app(settings).test_client()

    return make


def test_metrics_are_off_with_authentication_on_and_no_metrics_token(secured):
    response = secured().get("/metrics")
    assert response.status_code == 403
    assert "CDS_METRICS_TOKEN" in response.get_json()["issue"][0]["diagnostics"]


def test_metrics_need_the_metrics_token_when_authentication_is_on(secured):
    client = secured(metrics_token=TOKEN)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    jwt = bearer(sign(ec_key(), claims(aud=BASE + "/metrics")))
    assert client.get("/metrics", headers={"Authorization": jwt}).status_code == 401  # a CDS Hooks JWT is not it
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and "cds_hook_calls_total" in response.get_data(as_text=True)


def test_a_short_metrics_token_is_refused():
    with pytest.raises(ValueError, match="metrics_token"):
        Settings(metrics_token="short")


# --- one log line per call -----------------------------------------------------------------------


def _records_of(caplog, call) -> list[logging.LogRecord]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        call()
    return [r for r in caplog.records if not r.name.startswith(("urllib3", "hypothesis"))]


def test_every_kind_of_call_logs_exactly_one_line(client, monkeypatch, caplog):
    client.get("/ready")  # the first use of the store migrates it (a line of its own, once)
    calls = {
        "hook call": lambda: client.post(ORDER_SELECT, data=_order_select(), content_type="application/json"),
        "feedback": lambda: client.post(
            FEEDBACK,
            json={
                "feedback": [
                    {
                        "card": "c",
                        "outcome": "accepted",
                        "acceptedSuggestions": [{"id": "s"}],
                        "outcomeTimestamp": "2026-11-21T10:00:00Z",
                    }
                ]
            },
        ),
        "discovery": lambda: client.get("/cds-services"),
        "ready": lambda: client.get("/ready"),
        "metrics": lambda: client.get("/metrics"),
        "unknown path": lambda: client.get("/nope"),
        "bad request": lambda: client.post(ORDER_SELECT, data=b"{", content_type="application/json"),
    }
    for name, call in calls.items():
        records = _records_of(caplog, call)
        assert [(r.name, r.getMessage()) for r in records] == [("cds_service.request", "request")], name


def test_a_refused_token_and_an_internal_error_are_one_line_each(secured, monkeypatch, caplog):
    client = secured()
    (line,) = _records_of(caplog, lambda: client.get("/cds-services", headers={"Authorization": "Bearer x"}))
    assert line.levelno == logging.WARNING and line.status == 401
    assert line.events[0]["event"] == "authentication failed" and line.events[0]["reason"]

    from cds_service import engine

    monkeypatch.setattr(engine, "evaluate", lambda call: 1 / 0)
    open_client = create_app(
        Settings(feedback_db=client.application.extensions["cds"].settings.feedback_db), now=lambda: FROZEN_NOW
    ).test_client()
    open_client.get("/ready")
    (line,) = _records_of(
        caplog, lambda: open_client.post(ORDER_SELECT, data=_order_select(), content_type="application/json")
    )
    assert line.levelno == logging.ERROR and line.status == 500 and "ZeroDivisionError" in line.traceback


def test_the_request_line_carries_stage_timings(client, caplog):
    client.get("/ready")
    (line,) = _records_of(
        caplog, lambda: client.post(ORDER_SELECT, data=_order_select(), content_type="application/json")
    )
    assert set(line.stages_ms) == {
        "auth",
        "decode",
        "validate",
        "prefetch",
        "snoozes",
        "record",
        "checks",
        "render",
        "log",
        "encode",
    }
    assert line.cards == 1 and line.service == "calciphylaxis-order-select"


def test_log_lines_are_json_written_by_a_listener_thread():
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        threads = [
            threading.Thread(
                target=lambda i=i: logging.getLogger("cds_service.request").info("request", extra={"n": i})
            )
            for i in range(20)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert logging.getLogger().handlers[0].__class__.__name__ == "_QueueHandler"
    finally:
        stop_logging()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted(line["n"] for line in lines) == list(range(20))
    assert list(lines[0])[:4] == ["time", "level", "logger", "message"] and lines[0]["time"].endswith("+00:00")


def test_a_full_log_queue_drops_and_counts_instead_of_blocking(monkeypatch):
    from cds_service.http import logs

    before = _value("cds_log_lines_dropped_total")
    handler = logs._QueueHandler(__import__("queue").Queue(1))
    record = logging.makeLogRecord({"msg": "x"})
    handler.emit(record)
    handler.emit(record)  # the queue is full: dropped, not blocked
    assert _value("cds_log_lines_dropped_total") == before + 1


def test_the_json_formatter_keeps_extra_fields():
    record = logging.makeLogRecord(
        {"msg": "request", "name": "cds_service.request", "levelname": "INFO", "status": 200}
    )
    assert json.loads(JsonFormatter().format(record))["status"] == 200


# --- shutdown ------------------------------------------------------------------------------------


def test_close_app_writes_out_the_queued_served_cards(tmp_path):
    app = create_app(Settings(feedback_db=tmp_path / "f.db"), now=lambda: FROZEN_NOW)
    store = app.extensions["cds"].store
    gate = threading.Event()
    real = store.write_served

    def slow(rows):
        gate.wait(10)
        real(rows)

    store.write_served = slow
    client = app.test_client()
    for _ in range(5):
        client.post(ORDER_SELECT, data=_order_select(), content_type="application/json")
    assert app.extensions["cds"].writer.pending() == 5  # all queued, none written yet
    threading.Timer(0.2, gate.set).start()
    close_app(app)
    from cds_service.feedback import SQLiteFeedbackStore

    assert SQLiteFeedbackStore(tmp_path / "f.db").served_count() == 5
    assert create_app(Settings(feedback_db=tmp_path / "f.db")).extensions["cds"].lifecycle.draining.is_set() is False


def test_the_real_server_shuts_down_cleanly_on_sigterm_with_one_line_per_call(tmp_path):
    server = ServiceProcess({"CDS_FEEDBACK_DB": str(tmp_path / "f.db")})
    try:
        for _ in range(4):
            assert server.request("POST", ORDER_SELECT, json.loads(_order_select()))[0] == 200
        assert server.request("GET", "/ready")[0] == 200
        assert server.stop() == 0
        lines = server.lines()
    finally:
        server.close()
    messages = [line["message"] for line in lines if line.get("path") != "/health"]  # the start-up probe's
    first = messages.index("serving")
    assert messages[first + 1 :] == ["request"] * 4 + ["shutting down"]  # 4 hook calls; /ready is DEBUG (issue 22)
    from cds_service.feedback import SQLiteFeedbackStore

    assert SQLiteFeedbackStore(tmp_path / "f.db").served_count() == 4


# --- several worker processes ----------------------------------------------------------------------


@pytest.fixture
def no_serving(monkeypatch, tmp_path):
    calls: dict = {}
    monkeypatch.setattr("cds_service.http.server.serve", lambda app, settings: calls.update(single=settings))
    monkeypatch.setattr(
        "cds_service.http.workers.serve_workers",
        lambda settings, build_app, sockets, metrics_dir: calls.update(workers=settings.workers) or 0,
    )
    monkeypatch.setattr("cds_service.http.workers.prepare_metrics_dir", lambda: None)
    monkeypatch.setattr("cds_service.http.workers.bind_sockets", lambda host, port, workers: [])
    monkeypatch.setattr("cds_service.http.logs.configure_logging", lambda level="INFO", **kw: None)
    for name in ("CDS_ISSUERS_FILE", "CDS_REDIS_URL", "CDS_DATABASE_URL", "CDS_WORKERS", "CDS_PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDS_FEEDBACK_DB", str(tmp_path / "f.db"))
    return calls


def test_several_workers_with_the_in_memory_replay_cache_are_refused_in_one_line(no_serving, tmp_path, capsys):
    issuers = write_issuers(tmp_path, default_issuer())
    code = cli.main(["serve", "--workers", "2", "--issuers-file", str(issuers), "--public-base-url", BASE])
    err = capsys.readouterr().err
    assert code == 2 and no_serving == {}
    assert len(err.strip().splitlines()) == 1 and "CDS_REDIS_URL" in err and "in-memory JWT replay cache" in err


def test_several_workers_start_with_redis_configured(no_serving, tmp_path, redis_settings, monkeypatch):
    issuers = write_issuers(tmp_path, default_issuer())
    monkeypatch.setenv("CDS_REDIS_URL", redis_settings["redis_url"])
    assert cli.main(["serve", "--workers", "2", "--issuers-file", str(issuers), "--public-base-url", BASE]) == 0
    assert no_serving == {"workers": 2}


def test_several_workers_without_authentication_share_no_replay_cache_and_may_start(no_serving):
    assert cli.main(["serve", "--workers", "3"]) == 0
    assert no_serving == {"workers": 3}


def test_an_unreachable_postgres_at_start_up_is_one_line(no_serving, monkeypatch, capsys):
    monkeypatch.setenv("CDS_DATABASE_URL", f"postgresql://cds:secret-pw@127.0.0.1:{free_port()}/cds")
    monkeypatch.setenv("CDS_DATABASE_CONNECT_TIMEOUT", "1")
    assert cli.main(["serve"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot reach PostgreSQL" in err and "secret-pw" not in err


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("CDS_DATABASE_URL", "mysql://db/cds", "PostgreSQL URL"),
        ("CDS_REDIS_URL", "http://cache:6379", "Redis URL"),
        ("CDS_WORKERS", "0", "workers"),
    ],
)
def test_bad_scale_out_settings_are_one_line_and_exit_2(no_serving, monkeypatch, capsys, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and expected in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_already_in_use_is_one_line_and_exit_1(tmp_path, workers):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = ServiceProcess(
            {"CDS_FEEDBACK_DB": str(tmp_path / "f.db")}, "--workers", workers, port=port, wait=False
        )
        try:
            assert server.proc.wait(timeout=60) == 1
            errors = [line for line in server.log().splitlines() if not line.startswith("{")]
        finally:
            server.close()
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{port}" in errors[0]


def test_a_worker_process_that_dies_is_replaced_and_sigterm_stops_them_all(tmp_path):
    import os
    import signal
    import time

    server = ServiceProcess({"CDS_FEEDBACK_DB": str(tmp_path / "f.db")}, "--workers", "2")
    try:

        def workers() -> list[int]:
            return [line["worker_pid"] for line in server.lines() if line.get("message") == "worker process started"]

        first = workers()
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        deadline = time.time() + 20
        while len(workers()) < 3:
            assert time.time() < deadline, server.log()
            time.sleep(0.1)
        replacement = workers()[2]
        for _ in range(10):  # the port keeps answering, whichever worker takes the connection
            assert server.request("POST", ORDER_SELECT, json.loads(_order_select()))[0] == 200
        assert server.stop() == 0
        for pid in (first[1], replacement):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        server.close()
    from cds_service.feedback import SQLiteFeedbackStore

    assert SQLiteFeedbackStore(tmp_path / "f.db").served_count() == 10
