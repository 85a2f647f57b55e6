"""Command line: ``calciphylaxis-cds serve | evaluate | feedback-report | snooze-end |
feedback-import | report-link``.

Every ``serve`` option can also be set by its environment variable (``CDS_HOST``, ``CDS_PORT``,
...); a command-line flag wins over the environment. HTML pages written without a file name go
under ``var/`` in the data directory (git-ignored in a checkout). A command whose output is cut
short by its reader (``| head``) stops quietly (exit status 141, as a program killed by SIGPIPE).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cds_service import __version__
from cds_service.config import Settings, redact_url
from cds_service.errors import describe_validation_error

log = logging.getLogger("cds_service")

# Where a bare --html writes, under the data directory (config.data_dir: var/ is git-ignored).
REPORTS_DIR = "var/reports"
PREVIEWS_DIR = "var/previews"
# The exit status of a command whose reader closed the pipe (128 + SIGPIPE), as a shell reports
# a program that SIGPIPE ended.
EXIT_BROKEN_PIPE = 141


def _settings(overrides: dict[str, Any]) -> Settings:
    """The settings, or exit status 2 with one line naming each invalid setting."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        print(f"calciphylaxis-cds: invalid configuration: {_one_line(describe_validation_error(exc))}", file=sys.stderr)
        raise SystemExit(2) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(
        {
            "host": args.host,
            "port": args.port,
            "threads": args.threads,
            "workers": args.workers,
            "issuers_file": args.issuers_file,
            "public_base_url": args.public_base_url,
            "allow_unauthenticated": True if args.allow_unauthenticated else None,
            "allow_sandbox_issuer_on_network": True if args.allow_public_sandbox_issuer_on_network else None,
        }
    )
    metrics_dir = None
    if settings.workers > 1:
        # Before anything imports prometheus_client: the workers' metrics go to shared files.
        from cds_service.http.workers import prepare_metrics_dir

        metrics_dir = prepare_metrics_dir()
    try:
        return _serve(settings, metrics_dir)
    finally:
        if metrics_dir is not None:  # made here: removed however serving ended
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(settings: Settings, metrics_dir: Path | None) -> int:
    multi = settings.workers > 1
    from cds_service.auth import IssuerConfigError, build_authenticator
    from cds_service.errors import ServiceUnavailable
    from cds_service.feedback import open_store
    from cds_service.http import server
    from cds_service.http.app import Hosting, create_app, log_startup_warnings, startup_refusal
    from cds_service.http.logs import configure_logging

    # The parent of worker processes logs directly: it must hold no thread when it forks.
    if multi:
        configure_logging(settings.log_level, queued=False)
    else:
        configure_logging(settings.log_level)
    # Decide about authentication before anything else is created (no database file is made
    # by a server that then refuses to start). Every refusal is one message and exit status 2;
    # create_app makes the same checks (startup_refusal) under any other server.
    hosting = Hosting.serve(settings)
    try:
        authenticator = build_authenticator(settings)
    except IssuerConfigError as exc:
        print(f"calciphylaxis-cds: cannot start: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    refusal = startup_refusal(settings, authenticator.enabled, hosting)
    if refusal is not None:
        print(f"calciphylaxis-cds: {refusal}", file=sys.stderr)
        return 2
    log_startup_warnings(settings, authenticator, hosting)
    # The schema, once, before serving (replicas starting together are serialised by a lock).
    store = open_store(settings)
    try:
        applied = store.migrate()
    except ServiceUnavailable as exc:
        print(f"calciphylaxis-cds: cannot start: {_one_line(exc.detail or exc.message)}", file=sys.stderr)
        return 1
    finally:
        store.close()
    log.info("feedback store ready", extra={"store": store.describe(), "migrations_applied": applied})
    if settings.redis_url:
        log.info("JWT replay store: Redis", extra={"redis": redact_url(settings.redis_url)})
    serving = {
        "host": settings.host,
        "port": settings.port,
        "threads": settings.threads,
        "workers": settings.workers,
        "version": __version__,
    }
    base = (
        settings.public_base_url[0] if settings.public_base_url else f"http://{settings.host}:{settings.port}"
    ).rstrip("/")
    log.info(  # where to start, for the person who ran serve (the log line is where they look)
        "where to start",
        extra={
            "discovery": f"{base}/cds-services",
            "try_it": "curl -s -H 'Content-Type: application/json' --data "
            f"@fhir_fixtures/c1-calcium-acetate-calciphylaxis.json {base}/cds-services/calciphylaxis-order-select",
            "preview": f"POST the same request to {base}/cds-services/<service id>/preview",
            "governance_report": f"{base}/governance/report",
        },
    )
    if not multi:
        app = create_app(settings, authenticator=authenticator, hosting=hosting)
        log.info("serving", extra=serving)
        try:
            server.serve(app, settings)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise
            print(
                f"calciphylaxis-cds: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr
            )
            return 1
        return 0

    from cds_service import engine
    from cds_service.http import workers

    try:
        sockets = workers.bind_sockets(settings.host, settings.port, settings.workers)
    except OSError as exc:
        print(f"calciphylaxis-cds: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 1
    engine.warm_up()  # card content loaded and checked once, before the workers are forked

    def build_app() -> Any:
        # In each worker: its own authenticator (JWKS cache per process; the replay store is Redis).
        return create_app(settings, authenticator=build_authenticator(settings), hosting=hosting)

    log.info("serving", extra=serving)
    return workers.serve_workers(settings, build_app, sockets, metrics_dir)


def cmd_feedback_report(args: argparse.Namespace) -> int:
    from cds_service.feedback import SQLiteFeedbackStore, format_report, open_store

    # --db, like any path on a command line, is relative to the working directory; a relative
    # CDS_FEEDBACK_DB is relative to the data directory (config.data_dir), as for the server.
    settings = _settings(
        {
            "feedback_db": Path(args.db).absolute() if args.db else None,
            "database_url": args.database_url,
        }
    )
    if args.db and not args.database_url:
        store: Any = SQLiteFeedbackStore(settings.feedback_db)
    else:
        store = open_store(settings)
    if store.backend == "sqlite" and not Path(settings.feedback_db).exists():
        print(f"No feedback database at {settings.feedback_db} yet.")
        return 0
    from cds_service.errors import ServiceUnavailable

    try:
        if args.html is not None:
            today = datetime.now(UTC).date().isoformat()
            path = _html_output(args.html, REPORTS_DIR, f"governance-report-{today}.html")
            return _write_governance_report(store, path, snoozing=settings.snooze_enabled)
        print(format_report(store.report()))
    except ServiceUnavailable as exc:
        print(f"calciphylaxis-cds: {_one_line(exc.detail or exc.message)}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def cmd_snooze_end(args: argparse.Namespace) -> int:
    """End a snooze early: the card that was overridden is shown again on patient-view."""
    from cds_service.errors import ServiceUnavailable
    from cds_service.feedback import open_store

    store = open_store(_settings({"database_url": args.database_url}))
    try:
        ended = store.end_snooze(args.card)
    except ServiceUnavailable as exc:
        print(f"calciphylaxis-cds: {_one_line(exc.detail or exc.message)}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if not ended:
        print(f"calciphylaxis-cds: no active snooze for card {args.card}", file=sys.stderr)
        return 1
    print(f"ended the snooze recorded for card {args.card}")
    return 0


def cmd_report_link(args: argparse.Namespace) -> int:
    """Print a signed link to the governance report that opens it in a browser until it expires,
    without an EHR's JWT (``cds_service.governance.link``)."""
    from datetime import timedelta

    from cds_service.config import _public_base_url
    from cds_service.governance.link import report_link

    settings = _settings({})
    if not settings.report_link_secret:
        print(
            "calciphylaxis-cds: report-link needs a secret: set CDS_REPORT_LINK_SECRET (32 or more characters, "
            "e.g. from `openssl rand -hex 32`) here and on the service, to the same value.",
            file=sys.stderr,
        )
        return 2
    if not 0 < args.days <= settings.report_link_max_days:
        print(
            f"calciphylaxis-cds: --days must be more than 0 and at most {settings.report_link_max_days} "
            "(CDS_REPORT_LINK_MAX_DAYS, which the service also enforces)",
            file=sys.stderr,
        )
        return 2
    if args.base_url:
        try:
            base = _public_base_url(args.base_url)
        except ValueError as exc:
            print(f"calciphylaxis-cds: --base-url: {exc}", file=sys.stderr)
            return 2
    elif settings.public_base_url:
        base = settings.public_base_url[0]
    else:
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # any address: this one
        base = f"http://{f'[{host}]' if ':' in host and not host.startswith('[') else host}:{settings.port}"
        print(
            f"calciphylaxis-cds: CDS_PUBLIC_BASE_URL is not set: the link uses {base}; "
            "give --base-url with the address people open",
            file=sys.stderr,
        )
    expires = (datetime.now(UTC) + timedelta(days=args.days)).replace(microsecond=0)
    print(report_link(base, settings.report_link_secret, expires))
    print(
        f"valid until {expires.isoformat().replace('+00:00', 'Z')}: anyone with this link can open the governance "
        "report (counts, no patient data) until then; changing CDS_REPORT_LINK_SECRET revokes every link.",
        file=sys.stderr,
    )
    return 0


def _html_output(given: str, default_dir: str, default_name: str) -> Path:
    """Where an HTML page goes: the file named on the command line (relative to the working
    directory), or, for a bare ``--html``, ``default_dir/default_name`` under the data directory
    (``var/`` of the checkout, which git ignores; created when missing)."""
    if given:
        return Path(given)
    from cds_service.config import data_dir

    folder = data_dir() / default_dir
    folder.mkdir(parents=True, exist_ok=True)
    return folder / default_name


def _write_governance_report(store: Any, path: Path, *, snoozing: bool) -> int:
    """The committee's report as one self-contained HTML page (no patient data on it)."""
    from cds_service.governance.build import governance_page

    page = governance_page(store.governance_records(datetime.now(UTC)), snoozing=snoozing)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"calciphylaxis-cds: cannot write {path}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the governance report to {path}")
    return 0


def cmd_feedback_import(args: argparse.Namespace) -> int:
    """Copy a SQLite feedback file into the configured PostgreSQL database (moving to replicas)."""
    from cds_service.errors import ServiceUnavailable
    from cds_service.feedback import SQLiteFeedbackStore, open_store

    settings = _settings({"database_url": args.database_url})
    if not settings.database_url:
        print(
            "calciphylaxis-cds: feedback-import needs the target: set CDS_DATABASE_URL (or --database-url)",
            file=sys.stderr,
        )
        return 2
    source_path = Path(args.from_sqlite).absolute()
    if not source_path.is_file():
        print(f"calciphylaxis-cds: no SQLite feedback file at {source_path}", file=sys.stderr)
        return 2
    source = SQLiteFeedbackStore(source_path)
    target = open_store(settings)
    try:
        salt, served, feedback = source.export_rows()
        added_served, added_feedback = target.import_rows(salt, served, feedback)
    except ServiceUnavailable as exc:
        print(f"calciphylaxis-cds: {_one_line(exc.detail or exc.message)}", file=sys.stderr)
        return 1
    finally:
        source.close()
        target.close()
    print(
        f"Imported {added_served} of {len(served)} served cards and {added_feedback} of {len(feedback)} "
        f"feedback items into {target.describe()} (the others were there already)."
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cds_service.errors import CdsError
    from cds_service.fhir.resolver import PrefetchResolver
    from cds_service.http.errors import http_status
    from cds_service.pipeline import find_service, run_hook
    from cds_service.render.text import render_response
    from cds_service.services import SERVICES

    try:
        body = json.loads(Path(args.request).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"calciphylaxis-cds: cannot read {args.request}: {exc}", file=sys.stderr)
        return 2
    if isinstance(body, dict):
        body.pop("_captured", None)  # note key of the captured sandbox requests
        body.pop("_expected", None)  # expected outcome stored beside fixture requests
    settings = _settings({})
    try:
        if args.service:
            service = find_service(args.service)
        else:
            hook = body.get("hook") if isinstance(body, dict) else None
            matches = [s for s in SERVICES.values() if hook == s.hook]
            if not matches:
                print(f"calciphylaxis-cds: no service serves hook {hook!r}", file=sys.stderr)
                return 2
            service = matches[0]
        now = (lambda: args.now) if args.now else None
        _, response = run_hook(service, body, PrefetchResolver(settings), now=now)
    except CdsError as exc:
        print(f"calciphylaxis-cds: {http_status(exc)}: {exc.message}", file=sys.stderr)
        return 1
    if args.html is not None:
        from cds_service.render.html import render_preview

        when = f" as of {args.now.isoformat()}" if args.now else ""
        page = render_preview(
            response,
            title=f"Card preview: {Path(args.request).name}",
            request_summary=f"{service.hook} · {service.id}{when}",
        )
        path = _html_output(args.html, PREVIEWS_DIR, f"{Path(args.request).stem}.html")
        try:
            path.write_text(page, encoding="utf-8")
        except OSError as exc:
            print(f"calciphylaxis-cds: cannot write {path}: {exc}", file=sys.stderr)
            return 2
        print(f"wrote the card preview to {path}")
    elif args.json:
        print(json.dumps(response.to_json(), indent=2))
    else:
        print(render_response(response))
    return 0


def _aware_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calciphylaxis-cds", description="Calciphylaxis decision support: a CDS Hooks 2.0 service."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the service under the waitress WSGI server")
    serve.add_argument("--host", help="bind address (CDS_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (CDS_PORT, default 8080)")
    serve.add_argument("--threads", type=int, help="worker threads per process (CDS_THREADS, default 8)")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the port (CDS_WORKERS, default 1); more than one needs CDS_REDIS_URL "
        "when JWT authentication is on",
    )
    serve.add_argument(
        "--issuers-file", help="JSON file of trusted JWT issuers (CDS_ISSUERS_FILE; see docs/authentication.md)"
    )
    serve.add_argument(
        "--public-base-url",
        help="base URL(s) the EHR calls, comma-separated (CDS_PUBLIC_BASE_URL; required with issuers): "
        "the JWT audience",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve without JWT issuers on a non-loopback address (CDS_ALLOW_UNAUTHENTICATED)",
    )
    serve.add_argument(
        "--allow-public-sandbox-issuer-on-network",
        action="store_true",
        help="trust the public CDS Hooks sandbox (whose private key is published) on a non-loopback "
        "address: anyone who reaches the service can call it (CDS_ALLOW_SANDBOX_ISSUER_ON_NETWORK)",
    )
    serve.set_defaults(func=cmd_serve)

    report = sub.add_parser("feedback-report", help="per rule: cards served, accepted, overridden, reasons")
    report.add_argument(
        "--db",
        help="SQLite feedback database (default: CDS_FEEDBACK_DB, var/feedback.sqlite3 in the project directory)",
    )
    report.add_argument(
        "--database-url",
        help="PostgreSQL feedback database (default: CDS_DATABASE_URL, which wins over the SQLite file when set)",
    )
    report.add_argument(
        "--html",
        metavar="FILE",
        nargs="?",
        const="",
        help="write the committee's report (charts per rule, weekly) as one HTML page: to FILE, or without "
        f"FILE to {REPORTS_DIR}/governance-report-YYYY-MM-DD.html in the project directory (git-ignored)",
    )
    report.set_defaults(func=cmd_feedback_report)

    snooze_end = sub.add_parser("snooze-end", help="end a snooze early: the overridden card shows again")
    snooze_end.add_argument(
        "card",
        metavar="CARD_UUID",
        help="uuid of the card whose override started the snooze (as the feedback named it)",
    )
    snooze_end.add_argument("--database-url", help="PostgreSQL feedback database (default: CDS_DATABASE_URL)")
    snooze_end.set_defaults(func=cmd_snooze_end)

    move = sub.add_parser(
        "feedback-import",
        help="copy a SQLite feedback file into the PostgreSQL database (CDS_DATABASE_URL); safe to repeat",
    )
    move.add_argument("--from-sqlite", required=True, help="the SQLite file (e.g. var/feedback.sqlite3)")
    move.add_argument("--database-url", help="PostgreSQL target (default: CDS_DATABASE_URL)")
    move.set_defaults(func=cmd_feedback_import)

    evaluate = sub.add_parser("evaluate", help="print the cards for a CDS Hooks request file, no server")
    evaluate.add_argument("request", help="path to a CDS Hooks request JSON file")
    evaluate.add_argument("--service", help="service id (default: the service for the request's hook)")
    evaluate.add_argument("--json", action="store_true", help="print the JSON response instead of text")
    evaluate.add_argument(
        "--html",
        metavar="FILE",
        nargs="?",
        const="",
        help="write the cards as an EHR would show them (a self-contained HTML page): to FILE, or without FILE "
        f"to {PREVIEWS_DIR}/REQUEST.html in the project directory (git-ignored); put it after REQUEST",
    )
    evaluate.add_argument(
        "--now",
        type=_aware_datetime,
        help="evaluate as of this time (ISO 8601, e.g. 2026-11-21T12:00Z): fixtures are dated, and "
        "results older than the monitoring interval are reported as stale",
    )
    evaluate.set_defaults(func=cmd_evaluate)

    link = sub.add_parser(
        "report-link",
        help="print a signed link that opens the governance report in a browser until it expires (no JWT needed)",
        description="Print a URL of GET /governance/report signed with CDS_REPORT_LINK_SECRET (HMAC-SHA256 over the "
        "path and the expiry). Anyone with it can open the report (counts, no patient data) until it expires; "
        "changing the secret revokes every link.",
    )
    link.add_argument(
        "--days",
        type=_positive_number,
        default=7.0,
        help="how long the link stays valid, in days (default 7; at most CDS_REPORT_LINK_MAX_DAYS, default 31)",
    )
    link.add_argument(
        "--base-url",
        help="the service's address as people open it (default: the first CDS_PUBLIC_BASE_URL)",
    )
    link.set_defaults(func=cmd_report_link)
    return parser


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    # A reader that stops early (`evaluate ... | head`) closes the pipe: the command then stops
    # quietly, without a BrokenPipeError traceback, for every command and for --help. SIGPIPE itself
    # stays ignored (Python's default): the server must survive clients that hang up.
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by something without a descriptor
        pass


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # `python -m cds_service` with no sub-command serves, like the README says.
        args = parser.parse_args(["serve", *(argv or [])])
    result: int = args.func(args)
    return result
