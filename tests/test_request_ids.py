"""Traceable logs (issue 22): a request id and a W3C trace context on every answer and on the call's
log line, the client's address from trusted proxies only, probes at DEBUG, and an app under a
server it cannot recognise answering only callers on this machine while authentication is off."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid

import pytest

from cds_service.config import Settings
from cds_service.http import logs
from cds_service.http.app import create_app
from cds_service.http.logs import TrustedProxies, configure_logging, parse_traceparent, stop_logging
from tests.conftest import FIXTURES, FROZEN_NOW

ORDER_SELECT = "/cds-services/calciphylaxis-order-select"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]")


def _order_select() -> bytes:
    body = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text())
    body.pop("_expected", None)
    return json.dumps(body).encode()


def _line(caplog, call) -> logging.LogRecord:
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        call()
    (line,) = [r for r in caplog.records if r.name == "cds_service.request"]
    return line


# --- X-Request-ID -----------------------------------------------------------------------------


def test_a_safe_incoming_request_id_is_returned_and_logged(client, caplog):
    line = _line(caplog, lambda: client.get("/cds-services", headers={"X-Request-ID": "req-7f3a:42"}))
    response = client.get("/cds-services", headers={"X-Request-ID": "req-7f3a:42"})
    assert response.headers["X-Request-ID"] == "req-7f3a:42"
    assert line.request_id == "req-7f3a:42" and not hasattr(line, "request_id_refused")


def test_without_a_request_id_the_service_makes_a_uuid4(client, caplog):
    line = _line(caplog, lambda: client.get("/cds-services"))
    assert uuid.UUID(line.request_id).version == 4
    first, second = (client.get("/cds-services").headers["X-Request-ID"] for _ in range(2))
    assert first != second and uuid.UUID(first).version == 4


@pytest.mark.parametrize(
    "given",
    ["x" * 129, "has space", "semi;colon", 'quote"d', "<script>", "patient=c1-calciphylaxis\u00e9", "tab\there"],
)
def test_an_unsafe_request_id_is_replaced_never_logged_and_flagged(client, caplog, given):
    line = _line(caplog, lambda: client.get("/cds-services", headers={"X-Request-ID": given}))
    assert uuid.UUID(line.request_id).version == 4 and line.request_id_refused is True
    assert given not in json.dumps(line.__dict__, default=str)


def test_every_answer_carries_the_ids_errors_and_preflight_included(client):
    answers = {
        "not found": client.get("/nope"),
        "bad json": client.post(ORDER_SELECT, data=b"{", content_type="application/json"),
        "headers too large (refused before Flask)": client.get("/cds-services", headers={"X-Big": "a" * 300_000}),
        "preflight": client.options(
            ORDER_SELECT,
            headers={"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST"},
        ),
    }
    for name, response in answers.items():
        assert uuid.UUID(response.headers["X-Request-ID"]), name
        assert TRACEPARENT.fullmatch(response.headers["traceparent"]), name
    assert answers["headers too large (refused before Flask)"].status_code == 431


def test_lines_logged_by_the_request_limits_carry_the_request_id():
    """A line logged while a request runs, outside the call's own line (here the request limits'
    refusal, before Flask), gets the request's id and trace id from the log filter."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("INFO", stream=stream)
    try:
        app = create_app(Settings(feedback_db=":memory:"))
        response = app.test_client().get("/cds-services", headers={"X-Big": "a" * 300_000, "X-Request-ID": "limits-1"})
    finally:
        stop_logging()
        root.handlers[:], level = saved
        root.setLevel(level)
    assert response.status_code == 431
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines() if '"status":431' in text]
    assert line["request_id"] == "limits-1" and len(line["trace_id"]) == 32


# --- traceparent --------------------------------------------------------------------------------


def test_a_valid_traceparent_continues_the_callers_trace(client, caplog):
    header = f"00-{TRACE_ID}-{PARENT_ID}-01"
    line = _line(caplog, lambda: client.get("/cds-services", headers={"traceparent": header}))
    assert line.trace_id == TRACE_ID and line.span_id != PARENT_ID
    returned = client.get("/cds-services", headers={"traceparent": header}).headers["traceparent"]
    trace_id, span_id = TRACEPARENT.fullmatch(returned).groups()
    assert trace_id == TRACE_ID and span_id != PARENT_ID
    assert returned.endswith("-01")  # not recording a span itself, the service passes the sampled flag on


@pytest.mark.parametrize(
    "header",
    [
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is invalid
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # uppercase hex
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",  # short trace id
        f"00-{TRACE_ID}-{PARENT_ID}-1",  # short flags
        f"00-{TRACE_ID}-{PARENT_ID}-01,00-{TRACE_ID}-{PARENT_ID}-01",  # two headers, joined
        f"00_{TRACE_ID}_{PARENT_ID}_01",
        "garbage",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(client, caplog, header):
    line = _line(caplog, lambda: client.get("/cds-services", headers={"traceparent": header}))
    assert line.trace_id != TRACE_ID.lower() and len(line.trace_id) == 32 and line.traceparent_refused is True
    assert header not in json.dumps(line.__dict__, default=str)


def test_a_later_traceparent_version_is_read_by_its_first_four_fields():
    assert parse_traceparent(f"01-{TRACE_ID}-{PARENT_ID}-00-what-comes-later") == logs.TraceParent(
        TRACE_ID, PARENT_ID, False
    )
    assert parse_traceparent(f"01-{TRACE_ID}-{PARENT_ID}-00x") is None  # more must follow a "-"
    assert parse_traceparent(f" 00-{TRACE_ID}-{PARENT_ID}-01 ").sampled is True


# --- the client's address ------------------------------------------------------------------------


def test_x_forwarded_for_counts_only_from_a_trusted_proxy():
    proxies = TrustedProxies(["10.0.0.0/8", "192.0.2.7"])
    # A trusted proxy's header is read from the right, past other trusted proxies.
    assert proxies.client("10.1.2.3", "203.0.113.9, 10.9.9.9") == "203.0.113.9"
    assert proxies.client("192.0.2.7", "198.51.100.4, 203.0.113.9") == "203.0.113.9"  # only the last hop is its
    # Anyone else's header is ignored.
    assert proxies.client("198.51.100.77", "203.0.113.9") == "198.51.100.77"
    assert TrustedProxies([]).client("10.1.2.3", "203.0.113.9") == "10.1.2.3"
    # Nothing after garbage is believed; ports and brackets are read.
    assert proxies.client("10.1.2.3", "203.0.113.9, not-an-ip, 10.2.2.2") == "10.2.2.2"
    assert proxies.client("10.1.2.3", "[2001:db8::1]:4711") == "2001:db8::1"
    assert proxies.client("10.1.2.3", "203.0.113.9:5555") == "203.0.113.9"
    assert proxies.client("::ffff:10.1.2.3", "203.0.113.9") == "203.0.113.9"  # IPv4-mapped peer


def test_the_request_line_names_the_client_a_trusted_proxy_forwarded(tmp_path, caplog):
    settings = Settings(feedback_db=tmp_path / "f.db", trusted_proxies="10.0.0.0/8", allow_unauthenticated=True)
    client = create_app(settings).test_client()
    trusted = {"REMOTE_ADDR": "10.0.0.2"}
    line = _line(
        caplog,
        lambda: client.get("/cds-services", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base=trusted),
    )
    assert line.client == "203.0.113.9"
    untrusted = {"REMOTE_ADDR": "198.51.100.77"}
    line = _line(
        caplog,
        lambda: client.get("/cds-services", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base=untrusted),
    )
    assert line.client == "198.51.100.77"


def test_a_trusted_proxies_entry_that_is_not_an_address_is_refused():
    with pytest.raises(ValueError, match="not an IP address or CIDR network"):
        Settings(trusted_proxies="proxy.example.org")


# --- probes at DEBUG ----------------------------------------------------------------------------


def test_health_and_readiness_probes_are_logged_at_debug(client, caplog):
    assert _line(caplog, lambda: client.get("/health")).levelno == logging.DEBUG
    assert _line(caplog, lambda: client.get("/ready")).levelno == logging.DEBUG
    assert _line(caplog, lambda: client.get("/cds-services")).levelno == logging.INFO


def test_a_failing_readiness_probe_is_not_hidden_at_debug(app, client, caplog):
    app.extensions["cds"].lifecycle.draining.set()
    line = _line(caplog, lambda: client.get("/ready"))
    assert line.status == 503 and line.levelno == logging.INFO


# --- the hook call's line: ids, and still nothing from the request ---------------------------------


def test_the_hook_call_line_carries_ids_and_no_patient_data(client, caplog):
    client.get("/ready")
    line = _line(
        caplog,
        lambda: client.post(
            ORDER_SELECT, data=_order_select(), content_type="application/json", headers={"X-Request-ID": "hook-1"}
        ),
    )
    assert line.request_id == "hook-1" and len(line.trace_id) == 32 and len(line.span_id) == 16
    assert line.client == "127.0.0.1"
    assert "c1-calciphylaxis" not in json.dumps(line.__dict__, default=str)


# --- under a server the app does not recognise ----------------------------------------------------


def test_an_unrecognised_server_without_authentication_answers_only_callers_on_this_machine(tmp_path):
    client = create_app(Settings(feedback_db=tmp_path / "f.db"), now=lambda: FROZEN_NOW).test_client()
    assert client.get("/cds-services", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    refused = client.get("/cds-services", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert refused.status_code == 403 and refused.get_json()["resourceType"] == "OperationOutcome"
    assert "CDS_ISSUERS_FILE" in refused.get_json()["issue"][0]["diagnostics"]
    assert uuid.UUID(refused.headers["X-Request-ID"])
    opened = create_app(Settings(feedback_db=tmp_path / "g.db", allow_unauthenticated=True)).test_client()
    assert opened.get("/cds-services", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200
