"""The SMART app's server-side sessions: the only place an access token is kept.

The browser holds one opaque random session id in an HttpOnly cookie; everything else (the
issuer, the PKCE verifier and ``state`` while the launch is under way, then the access token and
the launch's patient) stays here, for a short time:

* a launch waiting for the EHR's authorisation lives ``PENDING_SECONDS`` (10 minutes);
* an authorised session lives ``CDS_SMART_SESSION_SECONDS``, and never past the token's own
  ``expires_in``.

Two stores behind one interface: in process memory (one process: the default), or Redis when
``CDS_REDIS_URL`` is set, so that ``serve --workers N`` and replicas see the same sessions (the
browser's next request may reach any of them). Redis keys are a SHA-256 of the session id under
the service's prefix, so its key space never shows a usable session id. Nothing is written to
disk by the service; a session is deleted when it ends, expires or is replaced by a new launch.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import orjson
import redis

log = logging.getLogger("cds_service.smart")

PENDING_SECONDS = 600
# Random bytes in a session id, a PKCE verifier, a state and a view id (256 bits each).
ID_BYTES = 32


def new_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


class SessionStoreUnavailable(Exception):
    """The shared session store (Redis) could not be reached."""


@dataclass(frozen=True)
class SmartSession:
    """One launch, then one authorised session. ``phase``: "authorizing" until the EHR sends the
    code back, then "ready" (an access token for ``patient`` on ``iss``)."""

    phase: str
    iss: str
    created: float  # time.time()
    expires: float  # time.time() after which the session is gone
    # While authorising: the EHR's endpoints, the PKCE verifier and the state sent with the launch.
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    redirect_uri: str = ""  # as sent with the authorisation request: the exchange must repeat it
    state: str = field(default="", repr=False)
    code_verifier: str = field(default="", repr=False)
    # Once ready.
    access_token: str = field(default="", repr=False)
    scope: str = ""
    patient: str = field(default="", repr=False)  # the launch's patient: the only one this session reads
    view: str = field(default="", repr=False)  # the random handle in the page's URL (the launch's tab)
    need_patient_banner: bool = True

    def ready(self) -> SmartSession:
        """The authorising fields dropped: the verifier and state are good for one exchange."""
        return replace(self, authorization_endpoint="", token_endpoint="", redirect_uri="", state="", code_verifier="")

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> SmartSession | None:
        try:
            data = orjson.loads(raw)
            return cls(**data) if isinstance(data, dict) else None
        except (orjson.JSONDecodeError, TypeError):
            return None


class SessionStore(Protocol):
    def get(self, session_id: str) -> SmartSession | None: ...

    def put(self, session_id: str, session: SmartSession) -> None: ...

    def delete(self, session_id: str) -> None: ...

    def close(self) -> None: ...


class MemorySessionStore:
    """Sessions in this process's memory, at most ``max_sessions``: when full, the oldest launch
    still waiting for authorisation makes room first, then the oldest session."""

    def __init__(self, max_sessions: int, clock: Any = time.time):
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, SmartSession] = OrderedDict()

    def get(self, session_id: str) -> SmartSession | None:
        with self._lock:
            found = self._sessions.get(session_id)
            if found is not None and found.expires <= self._clock():
                del self._sessions[session_id]
                return None
            return found

    def put(self, session_id: str, session: SmartSession) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
            self._purge()
            while len(self._sessions) >= self.max_sessions:
                pending = next((k for k, s in self._sessions.items() if s.phase != "ready"), None)
                self._sessions.pop(pending if pending is not None else next(iter(self._sessions)))
            self._sessions[session_id] = session

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._sessions)

    def _purge(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]


class RedisSessionStore:
    """Sessions in the Redis every process and replica shares (``CDS_REDIS_URL``), each key
    expiring with its session (``SET ... EX``)."""

    def __init__(self, url: str, *, prefix: str, timeout: float, clock: Any = time.time):
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self._clock = clock
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()

    def _redis(self) -> redis.Redis:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = redis.Redis.from_url(
                        self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
                    )
        return self._client

    def key(self, session_id: str) -> str:
        return self.prefix + hashlib.sha256(session_id.encode()).hexdigest()

    def get(self, session_id: str) -> SmartSession | None:
        try:
            raw = self._redis().get(self.key(session_id))
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(type(exc).__name__) from None
        if not isinstance(raw, bytes):
            return None
        found = SmartSession.from_json(raw)
        return found if found is not None and found.expires > self._clock() else None

    def put(self, session_id: str, session: SmartSession) -> None:
        ttl = max(1, math.ceil(session.expires - self._clock()))
        try:
            self._redis().set(self.key(session_id), session.to_json(), ex=ttl)
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(type(exc).__name__) from None

    def delete(self, session_id: str) -> None:
        try:
            self._redis().delete(self.key(session_id))
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(type(exc).__name__) from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
