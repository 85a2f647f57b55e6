"""Authentication configuration: algorithms, the issuers file, and the ready-made issuer configs."""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest
import responses
from pydantic import ValidationError

from cds_service.auth import JwtAuthenticator, NoAuthentication, build_authenticator
from cds_service.auth.issuers import SANDBOX_ISSUER, IssuerConfigError, build_issuers
from cds_service.auth.keys import KeyStore
from cds_service.config import Settings
from cds_service.errors import Unauthorized
from cds_service.http.errors import http_status
from tests.auth_support import ISS, bearer, claims, ec_key, jwks, public_jwk, sign, write_issuers
from tests.conftest import FHIR_DATA, REPO, skip_without_shared

ISSUER_CONFIGS = REPO / "config" / "issuers"
SANDBOX_JWKS_URL = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


# --- algorithms --------------------------------------------------------------------------------


def test_default_algorithms_are_es384_and_rs384():
    assert Settings().jwt_algorithms == ["ES384", "RS384"]


@pytest.mark.parametrize("value", ["none", "HS256", "ES384,HS512", '["RS384", "hs384"]', "NONE"])
def test_none_and_hmac_algorithms_are_refused_at_configuration_load(monkeypatch, value):
    monkeypatch.setenv("CDS_JWT_ALGORITHMS", value)
    with pytest.raises(ValidationError, match="never accepted"):
        Settings()


@pytest.mark.parametrize("value", ["ES999", "rs384", ""])
def test_unknown_or_empty_algorithm_list_is_refused(monkeypatch, value):
    monkeypatch.setenv("CDS_JWT_ALGORITHMS", value)
    with pytest.raises(ValidationError, match="algorithm"):
        Settings()


def test_algorithms_can_be_widened_from_the_environment(monkeypatch):
    monkeypatch.setenv("CDS_JWT_ALGORITHMS", "ES384,RS384,PS384,ES256")
    assert Settings().jwt_algorithms == ["ES384", "RS384", "PS384", "ES256"]


# --- building the authenticator ----------------------------------------------------------------


def test_without_an_issuers_file_authentication_is_off():
    authenticator = build_authenticator(Settings(issuers_file=None))
    assert isinstance(authenticator, NoAuthentication) and authenticator.enabled is False


def test_with_an_issuers_file_authentication_is_on_and_uses_the_settings(tmp_path):
    path = write_issuers(tmp_path, {"iss": ISS, "jwks": jwks(public_jwk(ec_key(), "ec-1"))})
    settings = Settings(
        issuers_file=path, jwt_leeway_seconds=5, jwt_max_lifetime_seconds=600, public_base_url="https://cds.example.org"
    )
    authenticator = build_authenticator(settings)
    assert isinstance(authenticator, JwtAuthenticator) and authenticator.enabled is True
    assert (authenticator.leeway, authenticator.max_lifetime) == (5, 600)
    assert authenticator.algorithms == ["ES384", "RS384"]
    assert authenticator.replay_cache.max_entries == settings.jwt_replay_cache_size


# --- the issuers file --------------------------------------------------------------------------


def load_error(tmp_path, content) -> str:
    path = tmp_path / "issuers.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    with pytest.raises(IssuerConfigError) as exc:
        build_issuers(path, KeyStore())
    return str(exc.value)


GOOD_KEYS = {"jwks": {"keys": []}}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ({"issuers": []}, "issuers"),
        ({}, "issuers: Field required"),
        ({"issuers": [{"jwks_url": "https://a.example/j"}]}, "issuers.0.iss"),
        (
            {"issuers": [{"iss": "https://a.example"}]},
            "give at least one of jwks, jwks_file, jwks_url or jku_allowlist",
        ),
        ({"issuers": [{"iss": "https://a.example", "jwks_uri": "https://a.example/j"}]}, "issuers.0.jwks_uri"),
        ({"issuers": [{"iss": "https://a.example", "jwks_url": "http://a.example/j"}]}, "issuers.0.jwks_url"),
        ({"issuers": [{"iss": "https://a.example", "jku_allowlist": ["http://a.example/j"]}]}, "jku_allowlist"),
        ({"issuers": [{"iss": "https://a.example", "jwks_url": "https://a.example/j", "tenants": []}]}, "tenant"),
        ({"issuers": [{"iss": " https://a.example", **GOOD_KEYS}]}, "whitespace"),
        ({"issuers": [{"iss": "https://a.example", **GOOD_KEYS}] * 2}, "listed twice"),
        (
            {
                "issuers": [
                    {"iss": "https://a.example", "jwks": {"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}}
                ]
            },
            "symmetric",
        ),
        ({"issuers": [{"iss": "https://a.example", "jwks": {"nokeys": []}}]}, "'keys' array"),
        ({"issuers": [{"iss": "https://a.example", "jwks_file": "missing.json"}]}, "missing.json"),
    ],
)
def test_invalid_issuers_file_is_a_clear_error_naming_the_field(tmp_path, content, expected):
    message = load_error(tmp_path, content)
    assert expected in message and "issuers" in message


def test_inline_private_key_is_refused_without_echoing_it(tmp_path):
    secret_d = "ZmFrZS1wcml2YXRlLWtleS1tYXRlcmlhbA"
    jwk = dict(public_jwk(ec_key(), "ec-1"), d=secret_d)
    message = load_error(tmp_path, {"issuers": [{"iss": ISS, "jwks": jwks(jwk)}]})
    assert "private key" in message and secret_d not in message


def test_missing_issuers_file_is_a_clear_error(tmp_path):
    with pytest.raises(IssuerConfigError, match="cannot read issuers file"):
        build_issuers(tmp_path / "nope.json", KeyStore())


def test_relative_jwks_file_is_found_beside_the_issuers_file(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "keys.json").write_text(json.dumps(jwks(public_jwk(ec_key(), "ec-1"))))
    path = write_issuers(folder, {"iss": ISS, "jwks_file": "keys.json"})
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    issuer = build_issuers(path, KeyStore())[ISS]
    assert issuer.find_key("ec-1", None) is not None


# --- ready-made configs ------------------------------------------------------------------------


def test_ready_made_example_production_config_loads_completely():
    issuers = build_issuers(ISSUER_CONFIGS / "example-production.json", KeyStore())
    assert len(issuers) == 2
    ehr = next(i for i in issuers.values() if i.tenants)
    assert ehr.jku_allowlist and all(url.startswith("https://") for url in ehr.jku_allowlist)
    gateway = next(i for i in issuers.values() if not i.tenants)
    assert gateway.find_key("example-gateway-2026-01", None).fits("ES384")
    assert not any(i.testing_only for i in issuers.values())


def test_ready_made_sandbox_config_trusts_the_sandbox_by_url_and_allow_listed_jku(caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="cds_service.auth"):
        authenticator = build_authenticator(
            Settings(
                issuers_file=ISSUER_CONFIGS / "sandbox.json",
                feedback_db=tmp_path / "f.db",
                public_base_url="http://127.0.0.1:8080",
            )
        )
    sandbox = authenticator.issuers[SANDBOX_ISSUER]
    assert sandbox.testing_only
    assert sandbox.jku_allowlist == {SANDBOX_JWKS_URL}
    assert [s.url for s in sandbox.sources] == [SANDBOX_JWKS_URL]
    assert any("testing only" in r.getMessage() for r in caplog.records)


def sandbox_public_jwks() -> dict:
    path = FHIR_DATA / "sandbox-captured-requests" / "sandbox-public-jwks.json"
    skip_without_shared(path, "the sandbox's public JWKS")
    return json.loads(path.read_text(encoding="utf-8"))


@responses.activate
def test_sandbox_public_key_is_found_by_its_kid_when_configured():
    public = sandbox_public_jwks()
    responses.get(SANDBOX_JWKS_URL, json=public)
    sandbox = build_issuers(ISSUER_CONFIGS / "sandbox.json", KeyStore())[SANDBOX_ISSUER]
    key = sandbox.find_key(SANDBOX_KID, SANDBOX_JWKS_URL)
    assert key is not None and key.fits("ES384")
    numbers = key.key.public_numbers()
    expected = next(k for k in public["keys"] if k["kid"] == SANDBOX_KID)
    assert numbers.x == int.from_bytes(_b64decode(expected["x"]), "big")
    assert len(responses.calls) == 1


@responses.activate
def test_token_claiming_to_be_the_sandbox_but_signed_by_another_key_is_refused(tmp_path, caplog):
    responses.get(SANDBOX_JWKS_URL, json=sandbox_public_jwks())
    authenticator = build_authenticator(
        Settings(
            issuers_file=ISSUER_CONFIGS / "sandbox.json",
            feedback_db=tmp_path / "f.db",
            public_base_url="http://127.0.0.1:8080",
        )
    )
    audience = "http://127.0.0.1:8080/cds-services"
    # The sandbox's header and claims exactly (spec digest §12), but our own P-384 key.
    now = int(time.time())
    token = sign(
        ec_key("not-the-sandbox"),
        claims(aud=audience, now=now, iss=SANDBOX_ISSUER),
        kid=SANDBOX_KID,
        jku=SANDBOX_JWKS_URL,
    )
    with caplog.at_level(logging.WARNING, logger="cds_service.auth"), pytest.raises(Unauthorized) as exc:
        authenticator.authenticate(bearer(token), audience)
    assert http_status(exc.value) == 401
    assert [r.reason for r in caplog.records if hasattr(r, "reason")] == [
        "signature does not verify with the issuer's key"
    ]
    assert len(responses.calls) == 1  # the key was fetched; the signature did not verify


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
