"""Authentication through the HTTP app and the ``serve`` command's secure-by-default start-up."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
from pydantic import ValidationError

from cds_service import cli, engine
from cds_service.auth import IssuerConfigError
from cds_service.config import Settings
from cds_service.http.app import create_app
from cds_service.protocol import Card, Source
from tests.auth_support import (
    BASE,
    ISS,
    bearer,
    claims,
    default_issuer,
    ec_key,
    jwks,
    public_jwk,
    raw_token,
    rsa_key,
    sign,
    write_issuers,
)
from tests.conftest import REPO, preflight

DISCOVERY = "/cds-services"
PATIENT_VIEW = "/cds-services/calciphylaxis-patient-view"
FEEDBACK = PATIENT_VIEW + "/feedback"


@pytest.fixture
def issuers_file(tmp_path):
    return write_issuers(tmp_path, default_issuer())


@pytest.fixture
def secured(tmp_path, issuers_file):
    """The app with one trusted issuer, answering as https://cds.example.org behind a proxy."""
    settings = Settings(feedback_db=tmp_path / "f.db", issuers_file=issuers_file, public_base_url=BASE)
    return create_app(settings).test_client()


@pytest.fixture
def one_card(monkeypatch):
    """A stand-in engine answer, so these tests prove the authenticated path reaches the cards."""
    card = Card(summary="Test card", indicator="info", source=Source(label="test"), rule_id="test")
    monkeypatch.setattr(engine, "evaluate", lambda call: [card])
    return card


def token_for(path: str, **overrides) -> dict[str, str]:
    return {"Authorization": bearer(sign(ec_key(), claims(aud=BASE + path, now=_now(), **overrides)))}


def _now() -> int:
    return int(time.time())


def patient_view_body() -> dict:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {"conditions": None, "meds": None},
    }


def assert_auth_failed(response) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert [i["diagnostics"] for i in body["issue"]] == ["Authentication failed."]
    assert body["issue"][0]["code"] == "login"


# --- 401 and 200 ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("get", DISCOVERY), ("post", PATIENT_VIEW), ("post", FEEDBACK)])
def test_every_endpoint_needs_a_token_when_issuers_are_configured(secured, method, path):
    assert_auth_failed(getattr(secured, method)(path, json={}))


def test_discovery_with_a_valid_token_lists_the_services(secured):
    response = secured.get(DISCOVERY, headers=token_for(DISCOVERY))
    assert response.status_code == 200
    assert response.get_json()["services"]


def test_correctly_signed_hook_call_gets_its_cards(secured, one_card):
    response = secured.post(PATIENT_VIEW, json=patient_view_body(), headers=token_for(PATIENT_VIEW))
    assert response.status_code == 200
    assert [c["summary"] for c in response.get_json()["cards"]] == [one_card.summary]


def test_rsa_signed_hook_call_gets_its_cards(secured, one_card):
    token = sign(rsa_key(), claims(aud=BASE + PATIENT_VIEW, now=_now()), alg="RS384", kid="rsa-1")
    response = secured.post(PATIENT_VIEW, json=patient_view_body(), headers={"Authorization": bearer(token)})
    assert response.status_code == 200 and response.get_json()["cards"]


def test_unsigned_hook_call_gets_401(secured, one_card):
    token = raw_token({"alg": "none", "typ": "JWT", "kid": "ec-1"}, claims(aud=BASE + PATIENT_VIEW, now=_now()))
    assert_auth_failed(secured.post(PATIENT_VIEW, json=patient_view_body(), headers={"Authorization": bearer(token)}))


def test_tampered_hook_call_gets_401(secured, one_card):
    genuine = sign(ec_key(), claims(aud=BASE + PATIENT_VIEW, now=_now(), tenant="unit-1"))
    header, _, signature = genuine.split(".")
    other_claims = raw_token({"alg": "none"}, claims(aud=BASE + PATIENT_VIEW, now=_now(), tenant="unit-2"))
    tampered = f"{header}.{other_claims.split('.')[1]}.{signature}"
    assert_auth_failed(
        secured.post(PATIENT_VIEW, json=patient_view_body(), headers={"Authorization": bearer(tampered)})
    )


def test_replayed_hook_call_gets_401(secured, one_card):
    headers = token_for(PATIENT_VIEW)
    assert secured.post(PATIENT_VIEW, json=patient_view_body(), headers=headers).status_code == 200
    assert_auth_failed(secured.post(PATIENT_VIEW, json=patient_view_body(), headers=headers))


def test_token_for_discovery_is_refused_at_a_service(secured, one_card):
    assert_auth_failed(secured.post(PATIENT_VIEW, json=patient_view_body(), headers=token_for(DISCOVERY)))


def test_feedback_needs_a_token_for_the_feedback_url_as_the_sandbox_sends(secured):
    body = {
        "feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]
    }
    assert_auth_failed(secured.post(FEEDBACK, json=body, headers=token_for(PATIENT_VIEW)))
    assert secured.post(FEEDBACK, json=body, headers=token_for(FEEDBACK)).status_code == 200


def test_authentication_comes_before_anything_about_the_request(secured):
    # No token: an unknown service or a bad body must not be revealed before authentication.
    assert_auth_failed(secured.post("/cds-services/no-such-service", data="{", content_type="application/json"))


def test_app_with_issuers_but_no_public_base_url_refuses_to_be_built(tmp_path, issuers_file):
    # Without a configured base URL the audience could only come from the Host header.
    with pytest.raises(IssuerConfigError, match="CDS_PUBLIC_BASE_URL"):
        create_app(Settings(feedback_db=tmp_path / "f.db", issuers_file=issuers_file))


def test_token_minted_for_another_host_is_refused_whatever_host_header_is_sent(secured, one_card):
    """A token for another service with the same path must not be accepted by naming that
    service in the Host header (or in X-Forwarded-Host)."""
    other = "https://other-service.example"
    token = sign(ec_key(), claims(aud=other + PATIENT_VIEW, now=_now()))
    for headers in ({"Host": "other-service.example"}, {"X-Forwarded-Host": "other-service.example"}):
        response = secured.post(
            PATIENT_VIEW,
            json=patient_view_body(),
            headers={"Authorization": bearer(token), **headers},
            base_url=other,
        )
        assert_auth_failed(response)
    own = secured.post(PATIENT_VIEW, json=patient_view_body(), headers=token_for(PATIENT_VIEW), base_url=other)
    assert own.status_code == 200  # the configured audience, whatever Host says


def test_every_configured_public_base_url_is_an_accepted_audience(tmp_path, issuers_file, one_card):
    bases = "https://cds.example.org, http://localhost:8080/"
    client = create_app(
        Settings(feedback_db=tmp_path / "f.db", issuers_file=issuers_file, public_base_url=bases)
    ).test_client()
    for base in ("https://cds.example.org", "http://localhost:8080"):
        token = sign(ec_key(), claims(aud=base + PATIENT_VIEW, now=_now()))
        response = client.post(PATIENT_VIEW, json=patient_view_body(), headers={"Authorization": bearer(token)})
        assert response.status_code == 200, base
    stranger = sign(ec_key(), claims(aud="http://127.0.0.1:8080" + PATIENT_VIEW, now=_now()))
    assert_auth_failed(client.post(PATIENT_VIEW, json=patient_view_body(), headers={"Authorization": bearer(stranger)}))


@pytest.mark.parametrize(
    "value",
    [
        "cds.example.org",
        "ftp://cds.example.org",
        "https://cds.example.org/?a=1",
        "https://cds.example.org/cds-services",
    ],
)
def test_a_public_base_url_that_cannot_be_an_audience_is_refused(value):
    with pytest.raises(ValidationError, match="public_base_url"):
        Settings(public_base_url=value)


def test_401_body_says_nothing_about_the_reason_and_the_log_never_holds_the_token(secured, caplog):
    token = sign(ec_key("stranger"), claims(aud=BASE + DISCOVERY, now=_now()))
    with caplog.at_level(logging.INFO):
        response = secured.get(DISCOVERY, headers={"Authorization": bearer(token)})
    assert_auth_failed(response)
    text = response.get_data(as_text=True)
    assert "signature" not in text and "kid" not in text
    assert not any(token in r.getMessage() or token in str(vars(r)) for r in caplog.records)


def test_issuer_and_tenant_reach_the_request_log_line(secured, caplog):
    with caplog.at_level(logging.INFO, logger="cds_service.request"):
        secured.get(DISCOVERY, headers=token_for(DISCOVERY, tenant="unit-7"))
    line = next(r for r in caplog.records if r.name == "cds_service.request")
    assert (line.iss, line.tenant) == (default_issuer()["iss"], "unit-7")


@pytest.mark.parametrize("path", [DISCOVERY, PATIENT_VIEW, FEEDBACK])
def test_cors_preflight_needs_no_token_even_when_authentication_is_on(tmp_path, path):
    class MustNotBeCalled:
        enabled = True

        def authenticate(self, authorization_header, audience):
            raise AssertionError("a preflight must never be authenticated")

    settings = Settings(feedback_db=tmp_path / "f.db", public_base_url=BASE)
    client = create_app(settings, authenticator=MustNotBeCalled()).test_client()
    response = preflight(client, path)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_401_carries_cors_headers_so_a_browser_client_can_read_it(secured):
    response = secured.get(DISCOVERY, headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert_auth_failed(response)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# --- serve: secure by default -----------------------------------------------------------------


@pytest.fixture
def serve_env(monkeypatch, tmp_path):
    """No listening socket, no real logging set-up, no stray settings from the environment."""
    calls: dict = {}

    def fake_serve(app, settings):
        calls.update(app=app, host=settings.host, port=settings.port)

    monkeypatch.setattr("cds_service.http.server.serve", fake_serve)
    monkeypatch.setattr("cds_service.http.logs.configure_logging", lambda level="INFO": None)
    for name in (
        "CDS_ISSUERS_FILE",
        "CDS_ALLOW_UNAUTHENTICATED",
        "CDS_ALLOW_SANDBOX_ISSUER_ON_NETWORK",
        "CDS_HOST",
        "CDS_JWT_ALGORITHMS",
        "CDS_PUBLIC_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDS_FEEDBACK_DB", str(tmp_path / "f.db"))
    monkeypatch.setenv("CDS_PUBLIC_BASE_URL", BASE)
    return calls


def refused_in_one_line(capsys) -> str:
    """The start-up refusal on stderr: exactly one line, no traceback."""
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "cannot start" in err
    return err


def test_serve_on_all_interfaces_without_issuers_refuses_to_start(serve_env, capsys, tmp_path):
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start on 0.0.0.0 without authentication" in err
    assert "CDS_ISSUERS_FILE" in err and "--allow-unauthenticated" in err
    assert serve_env == {}  # nothing served
    assert not (tmp_path / "f.db").exists()  # and nothing created


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "cds.example.org"])
def test_serve_on_any_non_loopback_host_without_issuers_refuses(serve_env, host):
    assert cli.main(["serve", "--host", host, "--port", "0"]) == 2
    assert serve_env == {}


def test_allow_unauthenticated_environment_variable_works_like_the_flag(serve_env, monkeypatch, caplog):
    monkeypatch.setenv("CDS_ALLOW_UNAUTHENTICATED", "true")
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        assert cli.main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 0
    assert serve_env["host"] == "0.0.0.0"
    assert serve_env["app"].extensions["cds"].authenticator.enabled is False
    assert any("anyone who can reach" in r.getMessage() for r in caplog.records)


def test_allow_unauthenticated_flag_lets_it_start(serve_env):
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "0", "--allow-unauthenticated"]) == 0
    assert serve_env["host"] == "0.0.0.0"


def test_serve_on_loopback_without_issuers_starts_open_and_says_so(serve_env, caplog):
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        assert cli.main(["serve", "--host", "127.0.0.1", "--port", "0"]) == 0
    assert any("WITHOUT authentication" in r.getMessage() for r in caplog.records)


def test_serve_with_issuers_starts_on_all_interfaces_with_authentication_on(serve_env, issuers_file):
    argv = ["serve", "--host", "0.0.0.0", "--port", "0", "--issuers-file", str(issuers_file)]
    assert cli.main([*argv, "--public-base-url", BASE]) == 0
    assert serve_env["app"].extensions["cds"].authenticator.enabled is True
    assert serve_env["app"].extensions["cds"].settings.public_base_url == [BASE]


def test_serve_with_issuers_from_the_environment(serve_env, monkeypatch, issuers_file):
    monkeypatch.setenv("CDS_ISSUERS_FILE", str(issuers_file))
    monkeypatch.setenv("CDS_PUBLIC_BASE_URL", BASE)
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 0
    assert serve_env["app"].extensions["cds"].authenticator.enabled is True


def test_serve_with_issuers_but_no_public_base_url_refuses_and_says_how_to_set_it(
    serve_env, issuers_file, capsys, tmp_path, monkeypatch
):
    monkeypatch.delenv("CDS_PUBLIC_BASE_URL")
    assert cli.main(["serve", "--port", "0", "--issuers-file", str(issuers_file)]) == 2
    err = refused_in_one_line(capsys)
    assert "CDS_PUBLIC_BASE_URL=https://" in err and "--public-base-url" in err
    assert serve_env == {} and not (tmp_path / "f.db").exists()


def test_serve_with_a_broken_issuers_file_refuses_with_a_clear_message(serve_env, tmp_path, capsys):
    broken = tmp_path / "issuers.json"
    broken.write_text('{"issuers": [{"iss": "https://a.example", "jwks_url": "http://a.example/k"}]}')
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "0", "--issuers-file", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "cannot start" in err and "jwks_url" in err and "Traceback" not in err
    assert serve_env == {}


def test_serve_with_an_hmac_algorithm_configured_refuses_to_start(serve_env, monkeypatch, capsys):
    monkeypatch.setenv("CDS_JWT_ALGORITHMS", "ES384,HS256")
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "jwt_algorithms" in err and "HS256" in err


# --- serve: start-up refusals (one line, exit status 2) ----------------------------------------


def serve_with_issuers(path, *extra: str) -> int:
    return cli.main(["serve", "--port", "0", "--issuers-file", str(path), *extra])


def test_world_writable_issuers_file_refuses_to_start(serve_env, issuers_file, capsys):
    issuers_file.chmod(0o666)
    assert serve_with_issuers(issuers_file) == 2
    err = refused_in_one_line(capsys)
    assert "world-writable" in err and "chmod o-w" in err
    assert serve_env == {}


def test_world_writable_jwks_file_refuses_to_start(serve_env, tmp_path, capsys):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(jwks(public_jwk(ec_key(), "ec-1", "ES384"))))
    keys.chmod(0o646)
    path = write_issuers(tmp_path, {"iss": ISS, "jwks_file": "keys.json"})
    assert serve_with_issuers(path) == 2
    err = refused_in_one_line(capsys)
    assert "keys.json is world-writable" in err
    keys.chmod(0o644)
    assert serve_with_issuers(path) == 0


SANDBOX_ISSUERS = REPO / "config" / "issuers" / "sandbox.json"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_sandbox_issuer_on_a_network_address_refuses_to_start_without_the_explicit_flag(serve_env, capsys, host):
    assert serve_with_issuers(SANDBOX_ISSUERS, "--host", host) == 2
    err = refused_in_one_line(capsys)
    assert "sandbox" in err and "--allow-public-sandbox-issuer-on-network" in err
    assert "CDS_ALLOW_SANDBOX_ISSUER_ON_NETWORK" in err
    assert serve_env == {}


def test_sandbox_issuer_on_loopback_starts_with_a_warning(serve_env, caplog):
    with caplog.at_level(logging.WARNING, logger="cds_service.auth"):
        assert serve_with_issuers(SANDBOX_ISSUERS, "--host", "127.0.0.1") == 0
    assert any("testing only" in r.getMessage() for r in caplog.records)


def test_sandbox_issuer_on_a_network_address_starts_only_with_the_loudly_named_flag(serve_env, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="cds_service.auth"):
        assert serve_with_issuers(SANDBOX_ISSUERS, "--host", "0.0.0.0", "--allow-public-sandbox-issuer-on-network") == 0
    assert any(r.levelno == logging.ERROR and "anyone" in r.getMessage() for r in caplog.records)
    serve_env.clear()
    monkeypatch.setenv("CDS_ALLOW_SANDBOX_ISSUER_ON_NETWORK", "true")
    assert serve_with_issuers(SANDBOX_ISSUERS, "--host", "0.0.0.0") == 0
    assert serve_env["host"] == "0.0.0.0"


def test_an_issuer_taking_its_keys_from_the_sandbox_counts_as_the_sandbox(serve_env, tmp_path, capsys):
    path = write_issuers(
        tmp_path,
        {"iss": "https://looks-like-an-ehr.example", "jwks_url": "https://sandbox.cds-hooks.org/.well-known/jwks.json"},
    )
    assert serve_with_issuers(path, "--host", "0.0.0.0") == 2
    assert "sandbox" in refused_in_one_line(capsys)


def test_rsa_key_under_2048_bits_refuses_to_start(serve_env, tmp_path, capsys):
    path = write_issuers(tmp_path, default_issuer(jwks=jwks(public_jwk(rsa_key("weak", 1024), "weak-1"))))
    assert serve_with_issuers(path) == 2
    err = refused_in_one_line(capsys)
    assert "weak-1" in err and "1024-bit RSA key" in err and "2048" in err


@pytest.mark.parametrize(
    ("key", "pinned", "why"),
    [
        ("ec", "none", "not an asymmetric signing algorithm"),
        ("ec", "HS384", "not an asymmetric signing algorithm"),
        ("rsa", "HS256", "not an asymmetric signing algorithm"),
        ("ec", "RS384", "needs a RSA key, not EC"),
        ("rsa", "ES384", "needs a EC key, not RSA"),
        ("ec", "ES256", "needs curve P-256"),
        ("ec", "ES999", "not an asymmetric signing algorithm"),
    ],
)
def test_invalid_key_pinning_refuses_to_start(serve_env, tmp_path, capsys, key, pinned, why):
    private = ec_key() if key == "ec" else rsa_key()
    path = write_issuers(tmp_path, default_issuer(jwks=jwks(public_jwk(private, "pinned-1", pinned))))
    assert serve_with_issuers(path) == 2
    err = refused_in_one_line(capsys)
    assert "pinned-1" in err and why in err


# --- what the HTTP layer logs ------------------------------------------------------------------


def test_http_layer_never_logs_a_token_patient_id_or_body_at_any_level(secured, one_card, caplog):
    """The request log line, the authentication log and waitress: iss, kid and jti may be logged,
    never the token (nor any part of it), the patient id or the body."""
    from cds_service.http.logs import JsonFormatter

    patient = "patient-sentinel-5e1"
    body = patient_view_body()
    body["context"]["patientId"] = patient
    body["prefetch"]["note"] = "body-sentinel-0b7"
    good = sign(ec_key(), claims(aud=BASE + PATIENT_VIEW, now=_now()))
    tokens = [
        good,  # accepted, then replayed
        sign(ec_key(), claims(aud="https://elsewhere.example" + PATIENT_VIEW, now=_now())),  # wrong aud
        sign(ec_key(), claims(aud=BASE + PATIENT_VIEW, now=_now() - 7200)),  # expired
        sign(ec_key("stranger"), claims(aud=BASE + PATIENT_VIEW, now=_now())),  # bad signature
        good.split(".")[0] + ".!!not-base64!!." + good.split(".")[2],  # malformed
    ]
    with caplog.at_level(logging.DEBUG):
        statuses = [
            secured.post(PATIENT_VIEW, json=body, headers={"Authorization": bearer(t)}).status_code
            for t in [tokens[0], *tokens]
        ]
    assert statuses == [200, 401, 401, 401, 401, 401]
    http_layer = ("cds_service.request", "cds_service.auth", "cds_service", "waitress")
    records = [r for r in caplog.records if r.name in http_layer or r.name.startswith("waitress.")]
    text = "\n".join(JsonFormatter().format(r) for r in records)
    assert '"reason"' in text and '"jti"' in text  # the failures were logged, with their jti
    secrets = [patient, "body-sentinel-0b7", *tokens, *(part for t in tokens for part in t.split(".")[1:])]
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, leaked


def test_serve_logs_the_discovery_url_a_curl_example_and_where_the_preview_is(serve_env, caplog):
    with caplog.at_level(logging.INFO, logger="cds_service"):
        assert cli.main(["serve", "--port", "0"]) == 0
    where = next(r for r in caplog.records if r.getMessage() == "where to start")
    assert where.discovery.endswith("/cds-services")
    assert where.try_it.startswith("curl -s -H 'Content-Type: application/json' --data @fhir_fixtures/")
    assert where.preview.endswith("/preview") and where.governance_report.endswith("/governance/report")
