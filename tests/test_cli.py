"""The command line: serve options (flags and environment), the real server, feedback-report."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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


# --- output cut short by its reader (`| head`) ---------------------------------------------------


def _console_script() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "calciphylaxis-cds")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "cds_service"]


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "fhir_fixtures/c1-calcium-acetate-calciphylaxis.json", "--now", "2026-11-21T12:00Z"],
        ["evaluate", "--json", "fhir_fixtures/c1-calcium-acetate-calciphylaxis.json"],
        ["feedback-report"],
        ["report-link"],
        ["--help"],
        ["snooze-end", "--help"],
    ],
    ids=["evaluate", "evaluate-json", "feedback-report", "report-link", "help", "sub-command-help"],
)
def test_a_command_whose_reader_has_gone_stops_quietly_without_a_traceback(tmp_path, args):
    """stdout is a pipe whose reading end is already closed: every write fails with EPIPE."""
    from cds_service.cli import EXIT_BROKEN_PIPE

    env = dict(os.environ, CDS_FEEDBACK_DB=str(tmp_path / "f.db"), CDS_REPORT_LINK_SECRET="x" * 40)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [*_console_script(), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cli_repo(),
            timeout=60,
        )
    finally:
        os.close(write_end)
    err = result.stderr.decode()
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert result.returncode in (0, EXIT_BROKEN_PIPE), err


def cli_repo():
    from tests.conftest import REPO

    return REPO


def test_a_broken_pipe_in_process_is_answered_with_exit_status_141(monkeypatch, capsys):
    def gone(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_main", lambda argv: gone(argv))
    monkeypatch.setattr(cli, "_discard_stdout", lambda: None)
    assert cli.main(["evaluate", "x.json"]) == 141


# --- placeholders a shell can take ----------------------------------------------------------------


def test_help_names_placeholders_in_capitals_never_in_angle_brackets():
    parser = cli.build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    assert "CARD_UUID" in subcommands["snooze-end"].format_usage()
    for name, sub in subcommands.items():
        assert not re.search(r"<[a-z][\w ]*>", sub.format_help()), name


def test_shell_examples_in_the_docs_have_no_angle_bracket_placeholders():
    from tests.conftest import REPO

    documents = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    for document in documents:
        text = document.read_text(encoding="utf-8")
        for block in re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", text, re.S):
            for line in block.splitlines():
                assert not re.search(r"<[A-Za-z][^>]*>", line), f"{document.name}: {line}"
        for span in re.findall(r"`(calciphylaxis-cds [^`]*)`", text):
            assert "<" not in span, f"{document.name}: {span}"


# --- HTML pages go under var/ (git-ignored) unless a file is named --------------------------------


def test_feedback_report_html_without_a_file_goes_under_var_reports(tmp_path, monkeypatch, capsys):
    from tests.conftest import REPO

    db = tmp_path / "f.db"
    card = Card(summary="s", indicator="critical", source=Source(label="x"), rule_id="C2-vka-calciphylaxis")
    SQLiteFeedbackStore(db).record_served("svc", "order-select", "p", [card])
    monkeypatch.setattr("cds_service.config.data_dir", lambda: tmp_path)
    assert cli.main(["feedback-report", "--db", str(db), "--html"]) == 0
    (page,) = (tmp_path / "var" / "reports").glob("governance-report-*.html")
    assert re.fullmatch(r"governance-report-\d{4}-\d\d-\d\d\.html", page.name)
    assert "CDS governance report" in page.read_text(encoding="utf-8")
    assert str(page) in capsys.readouterr().out
    assert cli.REPORTS_DIR.startswith("var/") and cli.PREVIEWS_DIR.startswith("var/")
    assert "/var/" in (REPO / ".gitignore").read_text().split()


# --- make services: ports of your choice -----------------------------------------------------------


@pytest.fixture
def fake_services(monkeypatch, tmp_path):
    """tools/services.py with stand-ins for the two servers: what runs, on which port."""
    from tools import services

    running: dict[str, int] = {}
    others: set[int] = set()  # ports held by other programs

    class Fake:
        kind = ""

        def __init__(self, where, port, **_):
            self.datadir = self.dir = Path(where)
            self.port = port
            self.bindir = Path("/usr/lib/postgresql/15/bin")

        @property
        def url(self):
            return f"{self.kind}://127.0.0.1:{self.port}"

        def running(self):
            return self.kind in running

        def start(self):
            running[self.kind] = self.port

        def stop(self):
            running.pop(self.kind, None)

        def psql(self, sql, database="postgres"):
            return "1"

    class PG(Fake):
        kind = "postgresql"

    class Redis(Fake):
        kind = "redis"

    monkeypatch.setattr(services, "PostgresCluster", PG)
    monkeypatch.setattr(services, "RedisServer", Redis)
    monkeypatch.setattr(services, "install", lambda: None)
    monkeypatch.setattr(services, "pg_home", lambda: tmp_path)
    monkeypatch.setattr(services, "STATE", tmp_path)
    monkeypatch.setattr(services, "ENV_FILE", tmp_path / "services.env")
    monkeypatch.setattr(services, "REPO", tmp_path)
    monkeypatch.setattr(services, "port_open", lambda port, host="127.0.0.1": port in others | set(running.values()))
    for name in services.PORT_VARIABLES.values():
        monkeypatch.delenv(name, raising=False)
    return services, running, others


def test_make_services_takes_its_ports_from_the_environment_and_the_options_win(fake_services, monkeypatch):
    services, running, _ = fake_services
    monkeypatch.setenv("CDS_PG_PORT", "55432")
    monkeypatch.setenv("CDS_REDIS_PORT", "56379")
    assert services.wanted_ports() == {"pg": 55432, "redis": 56379}
    assert services.wanted_ports(pg_port=5433) == {"pg": 5433, "redis": 56379}
    assert services.main(["start", "--redis-port", "56380"]) == 0
    assert running == {"postgresql": 55432, "redis": 56380}
    env = services.read_env()
    assert env["CDS_TEST_DATABASE_URL"].endswith(":55432") and env["CDS_TEST_REDIS_URL"].endswith(":56380")


def test_make_services_restarts_a_server_running_on_another_port_than_the_one_asked(fake_services, monkeypatch):
    services, running, _ = fake_services
    assert services.main(["start"]) == 0  # free ports, recorded
    first = dict(running)
    assert services.main(["start"]) == 0 and running == first  # idempotent: kept where they run
    monkeypatch.setenv("CDS_PG_PORT", "55433")
    assert services.main(["start"]) == 0
    assert running == {"postgresql": 55433, "redis": first["redis"]}


def test_make_services_refuses_a_port_another_program_holds_naming_the_setting(fake_services, monkeypatch, capsys):
    services, running, others = fake_services
    others.add(55434)
    monkeypatch.setenv("CDS_PG_PORT", "55434")
    with pytest.raises(SystemExit) as exc:
        services.main(["start"])
    assert "port 55434 (CDS_PG_PORT or --pg-port) is in use by another program" in str(exc.value.code)
    monkeypatch.setenv("CDS_PG_PORT", "not-a-port")
    with pytest.raises(SystemExit) as exc:
        services.main(["start"])
    assert "CDS_PG_PORT='not-a-port' is not a TCP port" in str(exc.value.code)
