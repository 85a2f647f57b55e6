"""Command line: ``calciphylaxis-cds serve | evaluate | feedback-report``.

Every ``serve`` option can also be set by its environment variable (``CDS_HOST``, ``CDS_PORT``,
...); a command-line flag wins over the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cds_service import __version__
from cds_service.config import Settings
from cds_service.errors import describe_validation_error
from cds_service.net import is_loopback_host

log = logging.getLogger("cds_service")


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
    from cds_service.auth import IssuerConfigError, build_authenticator
    from cds_service.http import server
    from cds_service.http.app import create_app
    from cds_service.http.logs import configure_logging

    settings = _settings(
        {
            "host": args.host,
            "port": args.port,
            "threads": args.threads,
            "issuers_file": args.issuers_file,
            "public_base_url": args.public_base_url,
            "allow_unauthenticated": True if args.allow_unauthenticated else None,
            "allow_sandbox_issuer_on_network": True if args.allow_public_sandbox_issuer_on_network else None,
        }
    )
    configure_logging(settings.log_level)
    # Decide about authentication before anything else is created (no database file is made
    # by a server that then refuses to start). Every refusal is one line and exit status 2.
    try:
        authenticator = build_authenticator(settings)
    except IssuerConfigError as exc:
        print(f"calciphylaxis-cds: cannot start: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    if not authenticator.enabled:
        if is_loopback_host(settings.host):
            log.warning(
                "No trusted JWT issuers configured: serving WITHOUT authentication on loopback %s only.",
                settings.host,
            )
        elif settings.allow_unauthenticated:
            log.warning(
                "No trusted JWT issuers configured and --allow-unauthenticated given: anyone who can "
                "reach %s:%s can call this service.",
                settings.host,
                settings.port,
            )
        else:
            print(
                f"calciphylaxis-cds: refusing to start on {settings.host} without authentication.\n"
                "  Configure trusted JWT issuers (CDS_ISSUERS_FILE, see docs/authentication.md),\n"
                "  bind to a loopback address (--host 127.0.0.1), or pass --allow-unauthenticated\n"
                "  (CDS_ALLOW_UNAUTHENTICATED=true) if something else authenticates callers.",
                file=sys.stderr,
            )
            return 2
    app = create_app(settings, authenticator=authenticator)
    log.info(
        "serving",
        extra={"host": settings.host, "port": settings.port, "threads": settings.threads, "version": __version__},
    )
    server.serve(app, settings)
    return 0


def cmd_feedback_report(args: argparse.Namespace) -> int:
    from cds_service.feedback import SQLiteFeedbackStore, format_report

    # --db, like any path on a command line, is relative to the working directory; a relative
    # CDS_FEEDBACK_DB is relative to the data directory (config.data_dir), as for the server.
    settings = _settings({"feedback_db": Path(args.db).absolute() if args.db else None})
    if not Path(settings.feedback_db).exists():
        print(f"No feedback database at {settings.feedback_db} yet.")
        return 0
    print(format_report(SQLiteFeedbackStore(settings.feedback_db).report()))
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
    if args.json:
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
    serve.add_argument("--threads", type=int, help="worker threads (CDS_THREADS, default 8)")
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
        help="feedback database (default: CDS_FEEDBACK_DB, var/feedback.sqlite3 in the project directory)",
    )
    report.set_defaults(func=cmd_feedback_report)

    evaluate = sub.add_parser("evaluate", help="print the cards for a CDS Hooks request file, no server")
    evaluate.add_argument("request", help="path to a CDS Hooks request JSON file")
    evaluate.add_argument("--service", help="service id (default: the service for the request's hook)")
    evaluate.add_argument("--json", action="store_true", help="print the JSON response instead of text")
    evaluate.add_argument(
        "--now",
        type=_aware_datetime,
        help="evaluate as of this time (ISO 8601, e.g. 2026-11-21T12:00Z): fixtures are dated, and "
        "results older than the monitoring interval are reported as stale",
    )
    evaluate.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # `python -m cds_service` with no sub-command serves, like the README says.
        args = parser.parse_args(["serve", *(argv or [])])
    result: int = args.func(args)
    return result
