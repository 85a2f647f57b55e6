"""The shared JWT replay store on a real Redis (`make services`): SET NX EX per jti, one winner
under concurrency, keys that expire with the token, fail closed (503) when Redis is down."""

from __future__ import annotations

import threading

import pytest
import redis

from cds_service.auth import JwtAuthenticator, RedisReplayCache, ReplayStoreUnavailable, build_authenticator
from cds_service.auth.issuers import build_issuers
from cds_service.auth.keys import KeyStore
from cds_service.config import Settings
from cds_service.errors import ServiceUnavailable, Unauthorized
from cds_service.http.errors import http_status
from tests.auth_support import BASE, NOW, SERVICE_URL, bearer, claims, default_issuer, ec_key, sign, write_issuers


@pytest.fixture
def cache(redis_settings) -> RedisReplayCache:
    cache = RedisReplayCache(redis_settings["redis_url"], prefix=redis_settings["redis_key_prefix"])
    yield cache
    cache.close()


def test_a_jti_is_accepted_once(cache):
    assert cache.remember("iss\njti-1", expires_at=1000, now=900) is True
    assert cache.remember("iss\njti-1", expires_at=1000, now=901) is False
    assert cache.remember("iss\njti-2", expires_at=1000, now=901) is True


def test_the_key_expires_when_the_token_could_no_longer_be_accepted(cache, redis_settings):
    cache.remember("iss\njti-ttl", expires_at=1000, now=900)
    client = redis.Redis.from_url(redis_settings["redis_url"])
    ttl = client.ttl(cache.key("iss\njti-ttl"))
    client.close()
    assert 95 <= ttl <= 100


def test_keys_are_hashed_under_the_prefix_never_the_raw_jti(cache, redis_settings):
    cache.remember("https://ehr.example\nraw-jti-value", expires_at=2000, now=1000)
    client = redis.Redis.from_url(redis_settings["redis_url"])
    keys = [k.decode() for k in client.scan_iter(match=redis_settings["redis_key_prefix"] + "*")]
    client.close()
    assert len(keys) == 1 and "raw-jti-value" not in keys[0] and len(keys[0]) == len(cache.prefix) + 64


def test_of_many_processes_remembering_the_same_jti_at_once_exactly_one_wins(redis_settings):
    """16 threads, each with its own client (as separate processes would have)."""
    barrier = threading.Barrier(16)
    results: list[bool] = []

    def worker():
        own = RedisReplayCache(redis_settings["redis_url"], prefix=redis_settings["redis_key_prefix"])
        barrier.wait()
        results.append(own.remember("iss\nsame", expires_at=2000, now=1000))
        own.close()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 15 + [True]


def test_an_unreachable_redis_is_reported_not_taken_for_a_new_token():
    from tools.services import free_port

    cache = RedisReplayCache(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    with pytest.raises(ReplayStoreUnavailable):
        cache.remember("iss\njti", expires_at=2000, now=1000)
    with pytest.raises(ReplayStoreUnavailable):
        cache.ping()


def test_the_authenticator_fails_closed_with_503_when_redis_is_down(tmp_path):
    from tools.services import free_port

    path = write_issuers(tmp_path, default_issuer())
    dead = RedisReplayCache(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    auth = JwtAuthenticator(build_issuers(path, KeyStore()), algorithms=["ES384"], replay_cache=dead, clock=lambda: NOW)
    with pytest.raises(ServiceUnavailable) as caught:
        auth.authenticate(bearer(sign(ec_key(), claims())), SERVICE_URL)
    assert http_status(caught.value) == 503 and caught.value.headers["Retry-After"] == "1"


def test_build_authenticator_uses_redis_when_configured(tmp_path, redis_settings):
    path = write_issuers(tmp_path, default_issuer())
    settings = Settings(issuers_file=path, public_base_url=BASE, feedback_db=tmp_path / "f.db", **redis_settings)
    first = build_authenticator(settings, clock=lambda: NOW)
    second = build_authenticator(settings, clock=lambda: NOW)  # another process, as far as replay goes
    assert isinstance(first, JwtAuthenticator) and isinstance(first.replay_cache, RedisReplayCache)
    token = bearer(sign(ec_key(), claims()))
    assert first.authenticate(token, SERVICE_URL)["iss"]
    with pytest.raises(Unauthorized):
        second.authenticate(token, SERVICE_URL)


def test_a_redis_that_does_not_answer_costs_one_timeout_then_calls_are_refused_at_once():
    """A Redis that accepts connections but never answers (a hung server, a black-holed route):
    the first call waits the timeout; the calls during the cool-down are refused at once (503),
    not each after another timeout."""
    import socket
    import time

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # never accepted, never answered
    try:
        cache = RedisReplayCache(f"redis://127.0.0.1:{hung.getsockname()[1]}/0", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailable):
            cache.remember("iss|jti-1", time.time() + 60, time.time())
        first = time.monotonic() - started
        started = time.monotonic()
        for n in range(20):
            with pytest.raises(ReplayStoreUnavailable):
                cache.remember(f"iss|jti-{n + 2}", time.time() + 60, time.time())
        later = time.monotonic() - started
        assert first >= 0.25  # the one real attempt waited for its timeout
        assert later < first  # twenty refusals together cost less than that one attempt
    finally:
        hung.close()
