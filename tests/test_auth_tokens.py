"""JWT verification: the spec's own example verifies, and every way a token can be wrong is refused."""

from __future__ import annotations

import json
import logging

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.auth import JwtAuthenticator
from cds_service.auth.issuers import IssuerConfigError, build_issuers
from cds_service.auth.keys import KeyStore
from cds_service.errors import Unauthorized
from cds_service.http.errors import http_status
from tests.auth_support import (
    BASE,
    ISS,
    NOW,
    SERVICE_URL,
    bearer,
    claims,
    default_issuer,
    ec_key,
    jwks,
    public_jwk,
    pyjwt_sign,
    raw_token,
    rsa_key,
    sign,
    write_issuers,
)
from tests.conftest import SPEC_EXAMPLES, skip_without_shared

SPEC_AUD = "https://cds.example.org/cds-services/some-service"
SPEC_ISS = "https://fhir-ehr.example.com/"
SPEC_JKU = "https://fhir-ehr.example.com/jwk_uri"
SPEC_IAT = 1311280970
SPEC_EXP = 1422568860


def make_authenticator(tmp_path, *issuers, clock=lambda: NOW, **kwargs) -> JwtAuthenticator:
    path = write_issuers(tmp_path, *(issuers or (default_issuer(),)))
    options = {"algorithms": ["ES384", "RS384"], "leeway": 30, "max_lifetime": 3600, **kwargs}
    return JwtAuthenticator(build_issuers(path, KeyStore()), clock=clock, **options)


@pytest.fixture
def auth(tmp_path) -> JwtAuthenticator:
    return make_authenticator(tmp_path)


class _Reasons(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.append(getattr(record, "reason", record.getMessage()))


def refusal(auth: JwtAuthenticator, header: str | None, audience: str = SERVICE_URL) -> str | None:
    """The logged reason when the token is refused with the generic 401; None when accepted."""
    handler, logger = _Reasons(), logging.getLogger("cds_service.auth")
    logger.addHandler(handler)
    try:
        auth.authenticate(header, audience)
    except Unauthorized as exc:
        assert http_status(exc) == 401
        assert exc.message == "Authentication failed."
        assert exc.headers == {"WWW-Authenticate": 'Bearer realm="cds-services"'}
        assert handler.reasons, "a refusal must log its reason"
        return handler.reasons[-1]
    finally:
        logger.removeHandler(handler)
    return None


def rejected(auth: JwtAuthenticator, header: str | None, audience: str = SERVICE_URL) -> bool:
    return refusal(auth, header, audience) is not None


def refused_for(why: str, auth: JwtAuthenticator, header: str | None, audience: str = SERVICE_URL) -> bool:
    """Refused, and for the expected reason (not by accident at an earlier check)."""
    reason = refusal(auth, header, audience)
    assert reason is not None, "the token was accepted"
    assert why in reason, reason
    return True


# --- the spec's example token ------------------------------------------------------------------


def spec_example():
    folder = SPEC_EXAMPLES / "2.0"
    header_file, jwks_file = folder / "jwt-authorization-header.txt", folder / "jwks-public.json"
    skip_without_shared(header_file, "the CDS Hooks spec's example token")
    skip_without_shared(jwks_file, "the CDS Hooks spec's example JWKS")
    authorization = header_file.read_text(encoding="utf-8").strip().split(":", 1)[1].strip()
    return authorization, json.loads(jwks_file.read_text(encoding="utf-8"))


def spec_authenticator(tmp_path, now: float, **kwargs) -> JwtAuthenticator:
    _, spec_jwks = spec_example()
    issuer = {"iss": SPEC_ISS, "jwks": spec_jwks, "jku_allowlist": [SPEC_JKU]}
    # The example token lives 3.5 years (iat 2011, exp 2015): no lifetime cap for it.
    return make_authenticator(tmp_path, issuer, clock=lambda: now, max_lifetime=0, **kwargs)


@responses.activate
def test_spec_example_token_verifies_with_the_spec_example_jwks_at_a_frozen_clock(tmp_path):
    authorization, _ = spec_example()
    auth = spec_authenticator(tmp_path, now=SPEC_IAT + 60)
    identity = auth.authenticate(authorization, SPEC_AUD)
    assert identity == {
        "iss": SPEC_ISS,
        "tenant": "2ddd6c3a-8e9a-44c6-a305-52111ad302a2",
        "jti": "ee22b021-e1b7-4611-ba5b-8eec6a33ac1e",
    }
    assert len(responses.calls) == 0  # the inline key sufficed; the jku was not fetched


def test_spec_example_token_is_refused_once_expired(tmp_path):
    authorization, _ = spec_example()
    assert refused_for("expired", spec_authenticator(tmp_path, now=SPEC_EXP + 31), authorization, SPEC_AUD)


def test_spec_example_token_is_refused_at_another_service(tmp_path):
    authorization, _ = spec_example()
    auth = spec_authenticator(tmp_path, now=SPEC_IAT + 60)
    assert refused_for("aud", auth, authorization, "https://cds.example.org/cds-services/other-service")


def test_spec_example_token_is_refused_under_the_default_one_hour_lifetime_cap(tmp_path):
    authorization, spec_jwks = spec_example()
    issuer = {"iss": SPEC_ISS, "jwks": spec_jwks, "jku_allowlist": [SPEC_JKU]}
    auth = make_authenticator(tmp_path, issuer, clock=lambda: SPEC_IAT + 60)
    assert refused_for("lifetime", auth, authorization, SPEC_AUD)


def test_spec_example_token_is_refused_when_its_jku_is_not_allow_listed(tmp_path):
    authorization, spec_jwks = spec_example()
    issuer = {"iss": SPEC_ISS, "jwks": spec_jwks}
    auth = make_authenticator(tmp_path, issuer, clock=lambda: SPEC_IAT + 60, max_lifetime=0)
    assert refused_for("jku", auth, authorization, SPEC_AUD)


# --- accepted tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "key", "kid"), [("ES384", ec_key, "ec-1"), ("RS384", rsa_key, "rsa-1")])
def test_token_signed_with_a_trusted_key_is_accepted(auth, alg, key, kid):
    token = sign(key(), claims(tenant="unit-7"), alg=alg, kid=kid)
    assert auth.authenticate(bearer(token), SERVICE_URL)["tenant"] == "unit-7"


@pytest.mark.parametrize(("alg", "key", "kid"), [("ES384", ec_key, "ec-1"), ("RS384", rsa_key, "rsa-1")])
def test_token_made_by_pyjwt_is_accepted(auth, alg, key, kid):
    token = pyjwt_sign(key(), claims(), alg=alg, kid=kid)
    assert auth.authenticate(bearer(token), SERVICE_URL)["iss"] == ISS


def test_aud_given_as_a_one_element_array_is_accepted(auth):
    token = sign(ec_key(), claims(aud=[SERVICE_URL]))
    assert auth.authenticate(bearer(token), SERVICE_URL)["iss"] == ISS


def test_result_carries_iss_tenant_and_jti_and_no_tenant_when_absent(auth):
    payload = claims()
    assert auth.authenticate(bearer(sign(ec_key(), payload)), SERVICE_URL) == {
        "iss": ISS,
        "tenant": None,
        "jti": payload["jti"],
    }


def test_bearer_scheme_is_case_insensitive(auth):
    assert auth.authenticate("bearer " + sign(ec_key(), claims()), SERVICE_URL)["iss"] == ISS


def test_clock_skew_within_leeway_is_tolerated(auth):
    late = sign(ec_key(), claims(iat=NOW - 400, exp=NOW - 20))  # expired 20 s ago, leeway 30 s
    early = sign(ec_key(), claims(iat=NOW + 20, exp=NOW + 300))  # issued 20 s "in the future"
    assert auth.authenticate(bearer(late), SERVICE_URL)
    assert auth.authenticate(bearer(early), SERVICE_URL)


# --- refused tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "key", "kid"), [("ES384", ec_key, "ec-1"), ("RS384", rsa_key, "rsa-1")])
def test_signature_by_another_key_under_a_trusted_kid_is_refused(auth, alg, key, kid):
    impostor = key("impostor")
    assert refused_for("signature", auth, bearer(sign(impostor, claims(), alg=alg, kid=kid)))


def test_tampered_payload_is_refused(auth):
    header, _, signature = sign(ec_key(), claims(aud="https://cds.example.org/cds-services")).split(".")
    forged = raw_token({"alg": "none"}, claims()).split(".")[1]  # same claims, aud changed
    assert refused_for("signature", auth, bearer(f"{header}.{forged}.{signature}"))


def test_unknown_kid_is_refused(auth):
    assert refused_for("kid", auth, bearer(sign(ec_key(), claims(), kid="ec-2")))


def test_untrusted_issuer_is_refused_even_with_a_trusted_key(auth):
    assert refused_for("not a trusted issuer", auth, bearer(sign(ec_key(), claims(iss="https://evil.example"))))


def test_issuer_differing_only_by_a_trailing_slash_is_refused(auth):
    assert refused_for("not a trusted issuer", auth, bearer(sign(ec_key(), claims(iss=ISS + "/"))))


@pytest.mark.parametrize(
    "aud",
    [
        f"{BASE}/cds-services",  # a discovery token replayed at a service
        f"{BASE}/cds-services/calciphylaxis-order-sign",
        SERVICE_URL + "/feedback",
        ["https://other.example/cds-services/calciphylaxis-patient-view"],
    ],
)
def test_token_for_another_url_is_refused(auth, aud):
    assert refused_for("aud", auth, bearer(sign(ec_key(), claims(aud=aud))))


def test_expired_token_is_refused(auth):
    assert refused_for("expired", auth, bearer(sign(ec_key(), claims(iat=NOW - 600, exp=NOW - 31))))


def test_token_issued_in_the_future_is_refused(auth):
    assert refused_for("iat is in the future", auth, bearer(sign(ec_key(), claims(iat=NOW + 31, exp=NOW + 300))))


def test_token_not_yet_valid_by_nbf_is_refused(auth):
    assert refused_for("nbf", auth, bearer(sign(ec_key(), claims(nbf=NOW + 120))))


def test_token_living_longer_than_the_lifetime_cap_is_refused(auth):
    assert refused_for("lifetime", auth, bearer(sign(ec_key(), claims(exp=NOW + 3601))))


def test_replayed_token_is_refused(auth):
    token = bearer(sign(ec_key(), claims()))
    assert auth.authenticate(token, SERVICE_URL)
    assert refused_for("replayed", auth, token)


def test_new_token_reusing_a_jti_is_refused(auth):
    assert auth.authenticate(bearer(sign(ec_key(), claims(jti="once"))), SERVICE_URL)
    assert refused_for("replayed", auth, bearer(sign(rsa_key(), claims(jti="once"), alg="RS384", kid="rsa-1")))


def test_alg_none_is_refused(auth):
    assert refused_for(
        "alg 'none' is not accepted", auth, bearer(raw_token({"alg": "none", "typ": "JWT", "kid": "ec-1"}, claims()))
    )


@pytest.mark.parametrize(("key", "kid"), [(ec_key, "ec-1"), (rsa_key, "rsa-1")])
def test_hs256_keyed_with_the_public_key_is_refused(auth, key, kid):
    # The classic algorithm-confusion forgery: HMAC with the issuer's public key as the secret.
    secret = (
        key().public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert refused_for(
        "alg 'HS256' is not accepted",
        auth,
        bearer(raw_token({"alg": "HS256", "typ": "JWT", "kid": kid}, claims(), secret)),
    )


def test_algorithm_not_configured_is_refused(auth):
    assert refused_for("alg 'RS256' is not accepted", auth, bearer(sign(rsa_key(), claims(), alg="RS256", kid="rsa-1")))


def test_hmac_is_refused_even_if_an_authenticator_were_built_to_accept_it(tmp_path):
    # Settings refuse HS* outright; this proves the key check would still stop the forgery.
    auth = make_authenticator(tmp_path, algorithms=["ES384", "RS384", "HS256", "HS384"])
    for kid, key in (("ec-1", ec_key()), ("rsa-1", rsa_key())):
        secret = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        token = raw_token({"alg": "HS384", "typ": "JWT", "kid": kid}, claims(), secret)
        assert refused_for("cannot verify alg HS384", auth, bearer(token))


def test_alg_that_does_not_fit_the_key_is_refused(tmp_path):
    auth = make_authenticator(tmp_path, algorithms=["ES384", "RS384", "ES256"])
    # ES256 would verify with a P-256 key only; kid ec-1 is P-384.
    other = ec.generate_private_key(ec.SECP256R1())
    assert refused_for("cannot verify alg", auth, bearer(sign(other, claims(), alg="ES256", kid="ec-1")))
    assert refused_for("cannot verify alg", auth, bearer(sign(rsa_key(), claims(), alg="RS384", kid="ec-1")))


def test_key_pinned_to_one_alg_refuses_another(tmp_path):
    issuer = default_issuer(jwks=jwks(public_jwk(rsa_key(), "rsa-1", "RS384")))
    auth = make_authenticator(tmp_path, issuer, algorithms=["RS384", "PS384"])
    assert refused_for("cannot verify alg PS384", auth, bearer(sign(rsa_key(), claims(), alg="PS384", kid="rsa-1")))


def test_rsa_key_shorter_than_2048_bits_is_refused_when_the_issuers_file_is_read(tmp_path):
    weak = rsa_key("weak", 1024)
    with pytest.raises(IssuerConfigError, match="1024-bit RSA key; at least 2048"):
        make_authenticator(tmp_path, default_issuer(jwks=jwks(public_jwk(weak, "weak"))))


@responses.activate
def test_jku_not_on_the_allow_list_is_refused_without_fetching_it(auth):
    responses.get("https://evil.example/jwks.json", json=jwks(public_jwk(ec_key("evil"), "ec-1")))
    token = sign(ec_key("evil"), claims(), jku="https://evil.example/jwks.json")
    assert refused_for("jku", auth, bearer(token))
    assert len(responses.calls) == 0


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer e30.e30.",  # {} . {} with no signature
        "Bearer !!!.???.###",
        "Bearer ",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Token abc",
    ],
)
def test_malformed_authorization_is_refused(auth, authorization):
    assert rejected(auth, authorization)


def test_two_tokens_in_one_header_are_refused(auth):
    token = sign(ec_key(), claims())
    assert refused_for("single Bearer token", auth, f"Bearer {token} {token}")


@pytest.mark.parametrize("header", [None, ""])
def test_missing_authorization_header_is_refused(auth, header):
    assert refused_for("no Authorization header", auth, header)


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "iat", "jti"])
def test_token_missing_a_required_claim_is_refused(auth, claim):
    assert refused_for(claim, auth, bearer(sign(ec_key(), claims(**{claim: None}))))


@pytest.mark.parametrize(
    "overrides",
    [{"exp": "tomorrow"}, {"iat": "now"}, {"exp": True}, {"jti": ""}, {"jti": 42}, {"tenant": 7}, {"iss": 5}],
)
def test_token_with_a_claim_of_the_wrong_type_is_refused(auth, overrides):
    (claim,) = overrides
    reason = refusal(auth, bearer(sign(ec_key(), claims(**overrides))))
    assert reason is not None and (claim in reason or "JWT ID" in reason), reason


def test_token_without_kid_is_refused(auth):
    assert refused_for("kid header is missing", auth, bearer(sign(ec_key(), claims(), kid=None)))


@pytest.mark.parametrize("typ", [None, "JOSE", "at+jwt"])
def test_token_without_typ_jwt_is_refused(auth, typ):
    token = raw_token({k: v for k, v in {"alg": "ES384", "kid": "ec-1", "typ": typ}.items() if v}, claims(), ec_key())
    assert refused_for("typ", auth, bearer(token))


# --- tenants -----------------------------------------------------------------------------------


def test_tenant_allow_list_accepts_listed_tenant_and_refuses_others(tmp_path):
    auth = make_authenticator(tmp_path, default_issuer(tenants=["unit-7"]))
    assert auth.authenticate(bearer(sign(ec_key(), claims(tenant="unit-7"))), SERVICE_URL)["tenant"] == "unit-7"
    assert refused_for("tenant allow-list", auth, bearer(sign(ec_key(), claims(tenant="unit-8"))))
    assert refused_for("tenant allow-list", auth, bearer(sign(ec_key(), claims())))


# --- what is said and logged -------------------------------------------------------------------


def test_failure_reason_is_logged_with_iss_kid_and_jti_but_never_the_token(auth, caplog):
    token = sign(ec_key("impostor"), claims(jti="jti-123"))
    with caplog.at_level(logging.WARNING, logger="cds_service.auth"):
        assert rejected(auth, bearer(token))
    record = next(r for r in caplog.records if r.getMessage() == "authentication failed")
    assert record.reason == "signature does not verify with the issuer's key"
    assert (record.iss, record.kid, record.jti) == (ISS, "ec-1", "jti-123")
    assert all(token not in json.dumps(vars(r), default=str) for r in caplog.records)
    signature = token.split(".")[2]
    assert all(signature not in json.dumps(vars(r), default=str) for r in caplog.records)


def test_each_failure_is_logged_with_its_own_reason(auth, caplog):
    cases = {
        "no Authorization header": None,
        "iss is not a trusted issuer": bearer(sign(ec_key(), claims(iss="https://x.example"))),
        "no key with this kid for this issuer": bearer(sign(ec_key(), claims(), kid="nope")),
        "aud does not name the URL that was called": bearer(sign(ec_key(), claims(aud=BASE))),
        "token expired (exp is in the past)": bearer(sign(ec_key(), claims(iat=NOW - 900, exp=NOW - 600))),
        "iat is in the future": bearer(sign(ec_key(), claims(iat=NOW + 600, exp=NOW + 900))),
        "required claim 'jti' is missing": bearer(sign(ec_key(), claims(jti=None))),
    }
    with caplog.at_level(logging.WARNING, logger="cds_service.auth"):
        for header in cases.values():
            assert rejected(auth, header)
    assert [r.reason for r in caplog.records if r.getMessage() == "authentication failed"] == list(cases)
