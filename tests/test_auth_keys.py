"""Issuer keys from URLs and files (cache, refresh on unknown kid, rate limit), JWK parsing,
and the replay cache."""

from __future__ import annotations

import json
import logging
import threading

import pytest
import responses

from cds_service.auth import JwtAuthenticator
from cds_service.auth.issuers import build_issuers
from cds_service.auth.keys import MAX_JWKS_BYTES, JwksError, KeyStore, check_key_url, parse_jwk, parse_jwks
from cds_service.auth.replay import InMemoryReplayCache, ReplayCacheFull
from cds_service.errors import Unauthorized
from tests.auth_support import (
    ISS,
    NOW,
    SERVICE_URL,
    bearer,
    claims,
    ec_key,
    jwks,
    public_jwk,
    rsa_key,
    sign,
    write_issuers,
)

JWKS_URL = "https://ehr.test.example/.well-known/jwks.json"
JKU = "https://keys.ehr.test.example/cds/jwks.json"


class FakeClock:
    def __init__(self, start: float = 10_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def authenticator(tmp_path, issuer: dict, clock: FakeClock, **kwargs) -> JwtAuthenticator:
    keystore = KeyStore(timeout=2.0, min_refresh=60, max_age=3600, clock=clock)
    issuers = build_issuers(write_issuers(tmp_path, issuer), keystore)
    return JwtAuthenticator(issuers, algorithms=["ES384", "RS384"], clock=lambda: NOW, **kwargs)


def accepted(auth: JwtAuthenticator, token: str) -> bool:
    try:
        auth.authenticate(bearer(token), SERVICE_URL)
    except Unauthorized:
        return False
    return True


def ec_token(name: str = "ec", kid: str = "ec-1", **header) -> str:
    return sign(ec_key(name), claims(), kid=kid, **header)


EC1 = lambda: public_jwk(ec_key(), "ec-1", "ES384")  # noqa: E731
EC2 = lambda: public_jwk(ec_key("ec2"), "ec-2", "ES384")  # noqa: E731


# --- JWKS URL ----------------------------------------------------------------------------------


@responses.activate
def test_jwks_url_is_fetched_lazily_once_with_timeouts_then_cached(tmp_path, clock):
    responses.get(JWKS_URL, json=jwks(EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL}, clock)
    assert len(responses.calls) == 0  # nothing fetched at start-up
    assert accepted(auth, ec_token())
    assert accepted(auth, ec_token())
    assert len(responses.calls) == 1
    assert responses.calls[0].request.req_kwargs["timeout"] == (2.0, 2.0)


@responses.activate
def test_unknown_kid_refreshes_the_jwks_so_a_rotated_key_is_accepted(tmp_path, clock):
    responses.get(JWKS_URL, json=jwks(EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL}, clock)
    assert accepted(auth, ec_token())
    clock.advance(61)
    responses.replace(responses.GET, JWKS_URL, json=jwks(EC1(), EC2()))
    assert accepted(auth, ec_token("ec2", kid="ec-2"))
    assert len(responses.calls) == 2


@responses.activate
def test_refresh_on_unknown_kid_is_rate_limited(tmp_path, clock):
    responses.get(JWKS_URL, json=jwks(EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL}, clock)
    for _ in range(20):
        assert not accepted(auth, ec_token(kid="made-up"))
    assert len(responses.calls) == 1  # the first load; every later unknown kid waits its turn
    clock.advance(59)
    assert not accepted(auth, ec_token(kid="made-up"))
    assert len(responses.calls) == 1
    clock.advance(2)
    assert not accepted(auth, ec_token(kid="made-up"))
    assert len(responses.calls) == 2


@responses.activate
def test_jwks_older_than_max_age_is_fetched_again(tmp_path, clock):
    responses.get(JWKS_URL, json=jwks(EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL}, clock)
    assert accepted(auth, ec_token())
    clock.advance(3600)
    responses.replace(responses.GET, JWKS_URL, json=jwks(EC2()))  # ec-1 revoked
    assert not accepted(auth, ec_token())
    assert len(responses.calls) == 2


@responses.activate
def test_failed_refresh_keeps_the_keys_already_known(tmp_path, clock, caplog):
    responses.get(JWKS_URL, json=jwks(EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL}, clock)
    assert accepted(auth, ec_token())
    clock.advance(3600)
    responses.replace(responses.GET, JWKS_URL, status=503)
    with caplog.at_level(logging.WARNING, logger="cds_service.auth"):
        assert accepted(auth, ec_token())
    assert any("could not refresh" in r.getMessage() and "503" in r.reason for r in caplog.records)


@responses.activate
def test_first_fetch_failing_refuses_until_a_later_fetch_succeeds(tmp_path, clock):
    responses.get(JWKS_URL, status=500)
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL}, clock)
    assert not accepted(auth, ec_token())
    clock.advance(61)
    responses.replace(responses.GET, JWKS_URL, json=jwks(EC1()))
    assert accepted(auth, ec_token())


@responses.activate
def test_jwks_url_redirect_is_not_followed(tmp_path, clock):
    elsewhere = "https://elsewhere.example/jwks.json"
    responses.get(JWKS_URL, status=302, headers={"Location": elsewhere})
    responses.get(elsewhere, json=jwks(EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL}, clock)
    assert not accepted(auth, ec_token())
    assert [c.request.url for c in responses.calls] == [JWKS_URL]


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"keys": "nope"}', json.dumps({"keys": [EC1()], "pad": "x" * MAX_JWKS_BYTES}).encode()],
    ids=["not-json", "keys-not-a-list", "too-large"],
)
@responses.activate
def test_unusable_jwks_response_is_refused(tmp_path, clock, body):
    responses.get(JWKS_URL, body=body, content_type="application/json")
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL}, clock)
    assert not accepted(auth, ec_token())


@responses.activate
def test_remote_jwks_skips_unusable_keys_and_uses_the_good_one(tmp_path, clock, caplog):
    private = dict(public_jwk(ec_key("other"), "leaky"), d="AAAA")
    symmetric = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
    encryption = dict(public_jwk(rsa_key(), "enc"), use="enc")
    responses.get(JWKS_URL, json=jwks(private, symmetric, encryption, EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL}, clock)
    with caplog.at_level(logging.WARNING, logger="cds_service.auth"):
        assert accepted(auth, ec_token())
    assert len([r for r in caplog.records if r.getMessage() == "ignoring a key of a JWK Set"]) == 3


@responses.activate
def test_remote_jwks_skips_short_rsa_and_invalidly_pinned_keys(tmp_path, clock, caplog):
    weak = public_jwk(rsa_key("weak", 1024), "weak")
    pinned_none = public_jwk(ec_key("other"), "none-pinned", "none")
    mismatched = public_jwk(rsa_key(), "rsa-as-ec", "ES384")
    responses.get(JWKS_URL, json=jwks(weak, pinned_none, mismatched, EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL}, clock)
    with caplog.at_level(logging.WARNING, logger="cds_service.auth"):
        assert accepted(auth, ec_token())
    reasons = [r.reason for r in caplog.records if r.getMessage() == "ignoring a key of a JWK Set"]
    assert len(reasons) == 3 and "1024-bit" in reasons[0] and "pinned to alg 'none'" in reasons[1]


# --- jku ---------------------------------------------------------------------------------------


@responses.activate
def test_allow_listed_jku_is_fetched_and_its_key_accepted(tmp_path, clock):
    responses.get(JKU, json=jwks(EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jku_allowlist": [JKU]}, clock)
    assert accepted(auth, ec_token(jku=JKU))
    assert [c.request.url for c in responses.calls] == [JKU]
    assert not accepted(auth, ec_token())  # without the jku header this issuer has no keys


@responses.activate
def test_jku_matching_is_exact(tmp_path, clock):
    responses.get(JKU + "?x=1", json=jwks(EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jku_allowlist": [JKU]}, clock)
    for near_miss in (JKU + "?x=1", JKU.upper(), JKU + "/", JKU.replace("https", "http")):
        assert not accepted(auth, ec_token(jku=near_miss))
    assert len(responses.calls) == 0


@responses.activate
def test_jku_that_is_also_the_jwks_url_is_fetched_once(tmp_path, clock):
    responses.get(JWKS_URL, json=jwks(EC1()))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_url": JWKS_URL, "jku_allowlist": [JWKS_URL]}, clock)
    assert accepted(auth, ec_token(jku=JWKS_URL))
    assert accepted(auth, ec_token())
    assert len(responses.calls) == 1


# --- JWKS file ---------------------------------------------------------------------------------


def test_jwks_file_is_reread_on_unknown_kid_after_the_rate_limit(tmp_path, clock):
    key_file = tmp_path / "ehr-jwks.json"
    key_file.write_text(json.dumps(jwks(EC1())))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_file": "ehr-jwks.json"}, clock)
    assert accepted(auth, ec_token())
    key_file.write_text(json.dumps(jwks(EC1(), EC2())))
    assert not accepted(auth, ec_token("ec2", kid="ec-2"))  # loaded moments ago: not re-read yet
    clock.advance(61)
    assert accepted(auth, ec_token("ec2", kid="ec-2"))


def test_jwks_file_broken_later_keeps_the_keys_already_known(tmp_path, clock):
    key_file = tmp_path / "ehr-jwks.json"
    key_file.write_text(json.dumps(jwks(EC1())))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_file": str(key_file)}, clock)
    key_file.write_text("{ broken")
    clock.advance(61)
    assert not accepted(auth, ec_token(kid="ec-9"))  # triggers the (failing) re-read
    assert accepted(auth, ec_token())


# --- JWK parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jwk", "why"),
    [
        ({"kty": "oct", "kid": "s", "k": "c2VjcmV0"}, "symmetric"),
        ({**public_jwk(ec_key(), "x")} | {"d": "AAAA"}, "private"),
        ({k: v for k, v in public_jwk(ec_key(), "x").items() if k != "kid"}, "kid"),
        ({**public_jwk(ec_key(), "x"), "use": "enc"}, "use"),
        ({"kty": "EC", "crv": "P-384", "kid": "x", "x": "AA", "y": "AA"}, "not a valid EC public key"),
        ("not an object", "JSON object"),
    ],
)
def test_unusable_jwk_is_refused_with_the_reason(jwk, why):
    with pytest.raises(JwksError, match=why):
        parse_jwk(jwk)


@pytest.mark.parametrize(
    ("key", "alg", "why"),
    [
        ("ec", "none", "'none' and HMAC are never accepted"),
        ("ec", "HS384", "not an asymmetric signing algorithm"),
        ("rsa", "HS256", "not an asymmetric signing algorithm"),
        ("ec", "RS384", "needs a RSA key, not EC"),
        ("rsa", "ES384", "needs a EC key, not RSA"),
        ("ec", "ES512", "needs curve P-521"),
        ("ec", "EdDSA", "needs a OKP key, not EC"),
        ("ec", 384, "not an asymmetric signing algorithm"),
    ],
)
def test_key_pinned_to_an_alg_it_cannot_serve_is_refused_with_the_reason(key, alg, why):
    jwk = public_jwk(ec_key() if key == "ec" else rsa_key(), "k")
    jwk["alg"] = alg
    with pytest.raises(JwksError, match=why):
        parse_jwk(jwk)


def test_key_pinned_to_its_own_alg_is_accepted():
    assert parse_jwk(public_jwk(ec_key(), "e", "ES384")).alg == "ES384"
    assert parse_jwk(public_jwk(rsa_key(), "r", "PS384")).alg == "PS384"


def test_rsa_key_under_2048_bits_is_refused_when_parsed():
    with pytest.raises(JwksError, match="1024-bit RSA key; at least 2048 bits"):
        parse_jwk(public_jwk(rsa_key("weak", 1024), "weak"))


def test_jwks_file_made_world_writable_later_is_not_reread(tmp_path, clock):
    key_file = tmp_path / "ehr-jwks.json"
    key_file.write_text(json.dumps(jwks(EC1())))
    auth = authenticator(tmp_path, {"iss": ISS, "jwks_file": "ehr-jwks.json"}, clock)
    key_file.write_text(json.dumps(jwks(EC1(), EC2())))
    key_file.chmod(0o666)
    clock.advance(61)
    assert not accepted(auth, ec_token("ec2", kid="ec-2"))  # the new key is not trusted
    assert accepted(auth, ec_token())  # the keys already known stay in use


def test_duplicate_kid_in_a_jwk_set_is_refused():
    with pytest.raises(JwksError, match="twice"):
        parse_jwks(jwks(EC1(), EC1()), strict=False, origin="test")


def test_key_fits_only_its_own_algorithm_family():
    ec384, rsa = parse_jwk(public_jwk(ec_key(), "e")), parse_jwk(public_jwk(rsa_key(), "r"))
    assert ec384.fits("ES384") and not ec384.fits("ES256") and not ec384.fits("RS384")
    assert rsa.fits("RS384") and rsa.fits("PS256") and not rsa.fits("ES384")
    assert not ec384.fits("HS384") and not rsa.fits("HS256") and not rsa.fits("none")


@pytest.mark.parametrize("url", ["http://keys.example/jwks.json", "ftp://keys.example/j", "https://", "keys.json"])
def test_key_urls_must_be_https(url):
    with pytest.raises(ValueError, match="https"):
        check_key_url(url)


def test_plain_http_key_url_is_allowed_on_loopback_for_local_testing():
    assert check_key_url("http://127.0.0.1:8099/jwks.json") == "http://127.0.0.1:8099/jwks.json"


# --- replay cache ------------------------------------------------------------------------------


def test_replay_cache_remembers_a_key_until_it_expires():
    cache = InMemoryReplayCache(max_entries=10)
    assert cache.remember("a", expires_at=100, now=0)
    assert not cache.remember("a", expires_at=100, now=99)
    assert cache.remember("b", expires_at=200, now=100)  # "a" expired and was pruned
    assert len(cache) == 1


def test_full_replay_cache_refuses_rather_than_forgets():
    cache = InMemoryReplayCache(max_entries=2)
    assert cache.remember("a", 100, now=0) and cache.remember("b", 150, now=0)
    with pytest.raises(ReplayCacheFull):
        cache.remember("c", 150, now=1)
    assert not cache.remember("a", 100, now=1)  # still protected
    assert cache.remember("c", 200, now=100)  # room again once "a" expired


def test_replay_cache_accepts_a_key_exactly_once_under_concurrency():
    cache = InMemoryReplayCache(max_entries=1000)
    barrier, results = threading.Barrier(16), []

    def worker():
        barrier.wait()
        results.append(cache.remember("same-jti", 100, now=0))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 15 + [True]


def test_authenticator_fails_closed_when_the_replay_cache_is_full(tmp_path, clock, caplog):
    auth = authenticator(
        tmp_path, {"iss": ISS, "jwks": jwks(EC1())}, clock, replay_cache=InMemoryReplayCache(max_entries=1)
    )
    assert accepted(auth, ec_token())
    with caplog.at_level(logging.ERROR, logger="cds_service.auth"):
        assert not accepted(auth, ec_token())
    assert any("replay cache full" in r.getMessage() for r in caplog.records)


def test_jti_is_scoped_to_its_issuer(tmp_path, clock):
    other_iss = "https://second-ehr.example"
    path = write_issuers(tmp_path, {"iss": ISS, "jwks": jwks(EC1())}, {"iss": other_iss, "jwks": jwks(EC1())})
    auth = JwtAuthenticator(build_issuers(path, KeyStore(clock=clock)), algorithms=["ES384"], clock=lambda: NOW)
    assert accepted(auth, sign(ec_key(), claims(jti="shared")))
    assert accepted(auth, sign(ec_key(), claims(jti="shared", iss=other_iss)))
