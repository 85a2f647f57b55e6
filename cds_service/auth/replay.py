"""Replay protection: remember every accepted JWT id until its token expires.

A small interface (``ReplayCache``) so a deployment with several processes can plug in a shared
store (e.g. Redis ``SET NX EX``); the default is in memory, thread-safe and bounded.
"""

from __future__ import annotations

import heapq
import threading
from typing import Protocol


class ReplayCacheFull(Exception):
    """Every slot holds an unexpired jti: accepting more would mean forgetting one (fail closed)."""


class ReplayCache(Protocol):
    def remember(self, key: str, expires_at: float, now: float) -> bool:
        """Store ``key`` until ``expires_at``; False when it is already stored (a replay)."""
        ...


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

    def _prune(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]
