"""Signed, expiring links to the governance report (``calciphylaxis-cds report-link``): a person opens
the committee's page in a browser without an EHR's JWT; expired, altered or foreign links are refused
with a clear OperationOutcome; the JWT still works; the page never shows patient data."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from cds_service import cli
from cds_service.config import Settings
from cds_service.governance import link
from cds_service.http.app import create_app
from tests.auth_support import BASE, bearer, claims, default_issuer, ec_key, sign, write_issuers
from tests.conftest import FIXTURES

SECRET = "report-link-secret-for-tests-0123456789abcdef"
REPORT = "/governance/report"
ORDER_SELECT = "/cds-services/calciphylaxis-order-select"


@pytest.fixture
def secured_app(tmp_path):
    """Authentication on (one trusted EHR issuer) and report links enabled."""
    settings = Settings(
        feedback_db=tmp_path / "f.db",
        issuers_file=write_issuers(tmp_path, default_issuer()),
        public_base_url=BASE,
        report_link_secret=SECRET,
    )
    return create_app(settings)


@pytest.fixture
def client(secured_app):
    return secured_app.test_client()


def jwt_for(path: str) -> dict[str, str]:
    return {"Authorization": bearer(sign(ec_key(), claims(aud=BASE + path, now=int(time.time()))))}


def signed_path(expires: datetime, secret: str = SECRET) -> str:
    url = urlsplit(link.report_link(BASE, secret, expires))
    return f"{url.path}?{url.query}"


def in_days(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def diagnostics(response) -> str:
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


def link_from_cli(monkeypatch, capsys, *args: str) -> str:
    monkeypatch.setenv("CDS_REPORT_LINK_SECRET", SECRET)
    monkeypatch.setenv("CDS_PUBLIC_BASE_URL", BASE)
    assert cli.main(["report-link", *args]) == 0
    out, err = capsys.readouterr()
    assert "valid until" in err
    (url,) = out.split()
    return url


# --- the round trip ---------------------------------------------------------------------------


def test_a_link_printed_by_report_link_opens_the_report_without_a_jwt(client, monkeypatch, capsys):
    url = urlsplit(link_from_cli(monkeypatch, capsys, "--days", "7"))
    assert f"{url.scheme}://{url.netloc}" == BASE and url.path == REPORT
    expires = int(parse_qs(url.query)["expires"][0])
    assert abs(expires - (time.time() + 7 * 86400)) < 60

    response = client.get(f"{url.path}?{url.query}")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == "text/html" and "CDS governance report" in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_without_a_link_the_report_still_needs_the_ehr_jwt_and_accepts_it(client):
    refused = client.get(REPORT)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get(REPORT, headers=jwt_for(REPORT)).status_code == 200


def test_the_page_opened_by_a_link_holds_counts_and_no_patient_data(secured_app, client):
    body = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text(encoding="utf-8"))
    body.pop("_expected")
    answer = client.post(ORDER_SELECT, json=body, headers=jwt_for(ORDER_SELECT))
    assert answer.status_code == 200
    (card,) = answer.get_json()["cards"]
    secured_app.extensions["cds"].writer.flush(timeout=5)

    page = client.get(signed_path(in_days(1))).get_data(as_text=True)
    assert "C1-calcium-binder-calciphylaxis" in page  # the served card is counted
    assert body["context"]["patientId"] not in page and card["uuid"] not in page
    assert "Patient/" not in page and "draft-ca" not in page


# --- refused links ----------------------------------------------------------------------------


def _flip_last(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def test_an_expired_link_is_refused_with_a_message_saying_so(client):
    response = client.get(signed_path(datetime.now(UTC) - timedelta(seconds=5)))
    assert response.status_code == 403
    message = diagnostics(response)
    assert "expired at" in message and "report-link" in message


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda q: {**q, "signature": _flip_last(q["signature"])}, id="one-character-changed"),
        pytest.param(lambda q: {**q, "expires": str(int(q["expires"]) + 86400)}, id="expiry-extended"),
        pytest.param(lambda q: {**q, "signature": q["signature"][:20]}, id="signature-cut"),
        pytest.param(lambda q: {**q, "signature": ""}, id="signature-empty"),
        pytest.param(lambda q: {**q, "signature": "é" * 43}, id="not-ascii"),
    ],
)
def test_an_altered_link_is_refused_as_not_valid(client, forge):
    query = {k: v[0] for k, v in parse_qs(urlsplit(signed_path(in_days(2))).query).items()}
    response = client.get(f"{REPORT}?{urlencode(forge(query))}")
    assert response.status_code == 403
    message = diagnostics(response)
    assert "not valid" in message or "incomplete" in message


def test_a_link_made_with_another_secret_is_refused(client):
    response = client.get(signed_path(in_days(1), secret="another-secret-of-at-least-32-characters!"))
    assert response.status_code == 403
    assert "made with another secret" in diagnostics(response)


@pytest.mark.parametrize("query", ["expires=1796794748", "signature=abc", "expires=soon&signature=abc"])
def test_an_incomplete_or_malformed_link_is_refused(client, query):
    response = client.get(f"{REPORT}?{query}")
    assert response.status_code == 403
    assert "ask for a new" in diagnostics(response) or "Copy the whole link" in diagnostics(response)


def test_a_link_valid_for_longer_than_the_service_allows_is_refused_even_when_signed(client):
    response = client.get(signed_path(in_days(40)))  # CDS_REPORT_LINK_MAX_DAYS is 31
    assert response.status_code == 403
    assert "longer than this service allows (31 days" in diagnostics(response)


def test_a_link_is_refused_by_a_service_without_the_secret(tmp_path):
    app = create_app(Settings(feedback_db=tmp_path / "f.db"))  # authentication off, no secret
    response = app.test_client().get(signed_path(in_days(1)))
    assert response.status_code == 403
    assert "not enabled on this service (CDS_REPORT_LINK_SECRET is not set)" in diagnostics(response)
    assert app.test_client().get(REPORT).status_code == 200  # as before: open while authentication is off


def test_a_link_opens_the_report_and_nothing_else(client):
    query = urlsplit(signed_path(in_days(1))).query
    for path in ("/cds-services", "/metrics"):
        assert client.get(f"{path}?{query}").status_code in (401, 403), path
    assert client.post(f"{ORDER_SELECT}?{query}", json={}).status_code == 401


def test_signatures_are_compared_in_constant_time(client, monkeypatch):
    compared = []
    real = link.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(link.hmac, "compare_digest", spy)
    assert client.get(signed_path(in_days(1))).status_code == 200
    assert len(compared) == 1


def test_the_request_log_records_how_the_page_was_opened_never_the_signature(client, caplog):
    from cds_service.http.logs import JsonFormatter

    path = signed_path(in_days(1))
    signature = parse_qs(urlsplit(path).query)["signature"][0]
    with caplog.at_level(logging.INFO, logger="cds_service.request"):
        client.get(path)
        client.get(REPORT + "?expires=1&signature=forged")
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "cds_service.request"]
    assert [json.loads(line)["report_access"] for line in lines] == ["signed link", "link refused"]
    assert not any(signature in line or "forged" in line for line in lines)


# --- the command ------------------------------------------------------------------------------


def test_report_link_without_a_secret_refuses_with_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("CDS_REPORT_LINK_SECRET", raising=False)
    assert cli.main(["report-link"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "report-link needs a secret: set CDS_REPORT_LINK_SECRET" in err and "Traceback" not in err


def test_a_secret_shorter_than_32_characters_is_an_invalid_configuration(monkeypatch, capsys):
    monkeypatch.setenv("CDS_REPORT_LINK_SECRET", "short")
    with pytest.raises(SystemExit) as exc:
        cli.main(["report-link"])
    assert exc.value.code == 2
    assert "report_link_secret" in capsys.readouterr().err


def exit_status(args: list[str]) -> int:
    """The command's exit status, whether it returned it or argparse exited with it."""
    try:
        return cli.main(args)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("days", ["0", "-1", "32", "nan", "a week"])
def test_report_link_refuses_a_validity_outside_what_the_service_accepts(monkeypatch, capsys, days):
    monkeypatch.setenv("CDS_REPORT_LINK_SECRET", SECRET)
    assert exit_status(["report-link", "--days", days]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--days" in err


def test_report_link_uses_the_base_url_given_or_else_the_public_base_url(monkeypatch, capsys):
    url = link_from_cli(monkeypatch, capsys, "--base-url", "https://reports.example.org/cds/")
    assert url.startswith("https://reports.example.org/cds/governance/report?expires=")
    assert link_from_cli(monkeypatch, capsys).startswith(BASE + REPORT + "?expires=")
    monkeypatch.setenv("CDS_REPORT_LINK_SECRET", SECRET)
    assert cli.main(["report-link", "--base-url", "ftp://x"]) == 2
    assert "--base-url" in capsys.readouterr().err


def test_without_a_public_base_url_the_link_names_the_local_address_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("CDS_REPORT_LINK_SECRET", SECRET)
    monkeypatch.delenv("CDS_PUBLIC_BASE_URL", raising=False)
    monkeypatch.setenv("CDS_HOST", "0.0.0.0")
    monkeypatch.setenv("CDS_PORT", "9090")
    assert cli.main(["report-link", "--days", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("http://127.0.0.1:9090/governance/report?expires=")
    assert "CDS_PUBLIC_BASE_URL is not set" in err


# --- the signature itself ---------------------------------------------------------------------


def test_the_signature_covers_the_path_and_the_expiry_and_depends_on_the_secret():
    base = link.signature(SECRET, REPORT, 1796794748)
    assert len(base) == 43 and "=" not in base  # base64url of 32 bytes, unpadded
    assert link.signature(SECRET, REPORT, 1796794749) != base
    assert link.signature(SECRET, "/cds-services", 1796794748) != base
    assert link.signature(SECRET + "x", REPORT, 1796794748) != base
    now = datetime.fromtimestamp(1796794748 - 3600, UTC)
    until = link.check_report_link(SECRET, REPORT, "1796794748", base, now=now, max_days=31)
    assert until == datetime.fromtimestamp(1796794748, UTC)
