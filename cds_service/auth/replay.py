"""Replay protection: remember every accepted JWT id until its token expires.

One interface (``ReplayCache``), two stores:

* ``InMemoryReplayCache`` (the default): in process memory, thread-safe and bounded. Exact for
  one process only: a second process (or replica) would accept a token the first has seen, so
  ``serve`` refuses to start several worker processes with it while authentication is on.
* ``RedisReplayCache`` (``CDS_REDIS_URL``): one Redis shared by every process and replica. Each
  accepted ``jti`` is one ``SET key 1 NX EX ttl``: atomic, so of two replicas receiving the same
  token at the same moment exactly one accepts it; Redis forgets the key when the token could no
  longer be accepted anyway. When Redis cannot be reached, tokens are refused (fail closed, answered
  503 so the EHR retries) rather than accepted unchecked.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import threading
import time
from typing import Protocol

import redis


class ReplayCacheFull(Exception):
    """Every slot holds an unexpired jti: accepting more would mean forgetting one (fail closed)."""


class ReplayStoreUnavailable(Exception):
    """The shared replay store cannot be reached: whether a token was seen cannot be told."""


class ReplayCache(Protocol):
    def remember(self, key: str, expires_at: float, now: float) -> bool:
        """Store ``key`` until ``expires_at``; False when it is already stored (a replay)."""
        ...

    def ping(self) -> None:
        """Raise ``ReplayStoreUnavailable`` unless the store answers (readiness)."""
        ...

    def close(self) -> None: ...


class InMemoryReplayCache:
    """A dict of key -> expiry plus a heap ordered by expiry for cheap pruning.

    Entries are never evicted before they expire: evicting one would let that token be replayed.
    When full, ``remember`` raises ``ReplayCacheFull`` instead.
    """

    def __init__(self, max_entries: int = 100_000):
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def remember(self, key: str, expires_at: float, now: float) -> bool:
        with self._lock:
            self._prune(now)
            if key in self._expiry:
                return False
            if len(self._expiry) >= self.max_entries:
                raise ReplayCacheFull(f"{self.max_entries} unexpired token ids are stored")
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    def _prune(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]


class RedisReplayCache:
    """The replay store shared by every process and replica: ``SET prefix+hash NX EX ttl``.

    Keys are a SHA-256 of issuer and ``jti`` (bounded length, no caller-chosen bytes in Redis),
    under a configurable prefix so several services can share one Redis. The client keeps a
    thread-safe connection pool per process, created on first use (after the worker processes
    have started).
    """

    # After a failure, Redis is not asked again for this long: hook calls in between are refused
    # at once (503, the replay check cannot be made) instead of each waiting ``timeout`` for a
    # store that is down. Then one call tries again.
    COOLDOWN_SECONDS = 5.0

    def __init__(self, url: str, *, prefix: str = "calciphylaxis-cds:jti:", timeout: float = 0.5):
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0  # time.monotonic() before which Redis is not asked

    def _redis(self) -> redis.Redis:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = redis.Redis.from_url(
                        self.url,
                        socket_timeout=self.timeout,
                        socket_connect_timeout=self.timeout,
                        health_check_interval=30,
                    )
        return self._client

    def key(self, key: str) -> str:
        return self.prefix + hashlib.sha256(key.encode()).hexdigest()

    def remember(self, key: str, expires_at: float, now: float) -> bool:
        ttl = max(1, math.ceil(expires_at - now))
        if time.monotonic() < self._down_until:
            raise ReplayStoreUnavailable("Redis failed a moment ago; not asked again until its cool-down ends")
        try:
            stored = self._redis().set(self.key(key), b"1", nx=True, ex=ttl)
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + self.COOLDOWN_SECONDS
            raise ReplayStoreUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        self._down_until = 0.0
        return bool(stored)

    def ping(self) -> None:
        """Asks Redis whatever the cool-down (``/ready`` must see it come back)."""
        try:
            self._redis().ping()
        except redis.RedisError as exc:
            raise ReplayStoreUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        self._down_until = 0.0

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
