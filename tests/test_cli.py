"""The command line: serve options (flags and environment), the real server, feedback-report."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from cds_service import cli
from cds_service.feedback import SQLiteFeedbackStore
from cds_service.protocol import Card, FeedbackItem, Source


@pytest.fixture
def captured_serve(monkeypatch):
    """What `serve` would run under waitress, without a listening socket."""
    calls = {}

    def fake_serve(app, settings):
        calls.update(app=app, settings=settings, host=settings.host, port=settings.port, threads=settings.threads)

    monkeypatch.setattr("cds_service.http.server.serve", fake_serve)
    return calls


def test_serve_defaults_to_loopback_8080_under_waitress(captured_serve, monkeypatch, tmp_path):
    monkeypatch.setenv("CDS_FEEDBACK_DB", str(tmp_path / "f.db"))
    assert cli.main(["serve"]) == 0
    assert captured_serve["host"] == "127.0.0.1"
    assert captured_serve["port"] == 8080
    assert captured_serve["threads"] == 8


def test_serve_options_come_from_environment_and_flags_win(captured_serve, monkeypatch, tmp_path):
    monkeypatch.setenv("CDS_FEEDBACK_DB", str(tmp_path / "f.db"))
    monkeypatch.setenv("CDS_PORT", "9001")
    monkeypatch.setenv("CDS_THREADS", "3")
    assert cli.main(["serve"]) == 0
    assert (captured_serve["port"], captured_serve["threads"]) == (9001, 3)
    assert cli.main(["serve", "--port", "9002"]) == 0
    assert captured_serve["port"] == 9002


def test_invalid_configuration_is_a_clear_one_line_error_and_exit_status_2(monkeypatch, capsys):
    monkeypatch.setenv("CDS_PORT", "not-a-port")
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid configuration" in err and "port" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_module_entry_point_runs_the_same_cli():
    result = subprocess.run(
        [sys.executable, "-m", "cds_service", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "calciphylaxis-cds" in result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_server_answers_discovery_over_http(tmp_path):
    """Start the service exactly as the README does (console script, waitress) and call it."""
    port = _free_port()
    env = dict(os.environ, CDS_PORT=str(port), CDS_FEEDBACK_DB=str(tmp_path / "f.db"))
    exe = os.path.join(os.path.dirname(sys.executable), "calciphylaxis-cds")
    command = [exe, "serve"] if os.path.exists(exe) else [sys.executable, "-m", "cds_service", "serve"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    assert json.load(r)["status"] == "ok"
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        proc.stderr.read().decode() if proc.poll() is not None else "no answer"
                    ) from None
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cds-services", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("application/json")
            hooks = {s["hook"] for s in json.load(r)["services"]}
        assert hooks >= {"patient-view", "order-select", "order-sign"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_feedback_report_prints_per_rule_counts(tmp_path, capsys):
    db = tmp_path / "f.db"
    store = SQLiteFeedbackStore(db)
    card = Card(summary="s", indicator="critical", source=Source(label="x"), rule_id="C2-vka-calciphylaxis")
    store.record_served("svc", "order-select", "p", [card])
    store.add_feedback(
        "svc",
        [
            FeedbackItem.model_validate(
                {
                    "card": card.uuid,
                    "outcome": "accepted",
                    "acceptedSuggestions": [{"id": "s"}],
                    "outcomeTimestamp": "2026-11-21T10:00:00Z",
                }
            )
        ],
    )
    assert cli.main(["feedback-report", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "C2-vka-calciphylaxis" in out
    row = next(line for line in out.splitlines() if line.startswith("C2-vka-calciphylaxis"))
    assert row.split()[1:] == ["1", "1", "0"]


def test_feedback_report_without_a_database_says_so(tmp_path, capsys):
    assert cli.main(["feedback-report", "--db", str(tmp_path / "none.db")]) == 0
    assert "No feedback database" in capsys.readouterr().out


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("fhir.example.org", False),
        ("", False),
    ],
)
def test_loopback_hosts_are_recognised_in_every_usual_spelling(host, loopback):
    from cds_service.net import is_loopback_host

    assert is_loopback_host(host) is loopback
