"""Readings of single resources, remembered by the resource's exact JSON.

An EHR sends the same chart again and again: order-select fires on every change of selection
with the same prefetch, patient-view on every opening of the chart, and a patient's labs,
problems and medication list change far more slowly than clinicians click. Reading one resource
(selecting an Observation's analyte and normalising its value, classifying a medication or a
condition by its codes and text) is a pure function of that resource's JSON, so the reading is
kept, keyed by the JSON itself, and a resource seen before costs one encoding and one lookup.

Why this is safe:
* The key is the resource's complete JSON (``orjson`` encoding, member order kept), so a
  reading is only reused for a byte-identical resource; any change to any member is a new key.
* Only readings that depend on nothing but the resource are kept: never one that depends on
  the time of the call (procedure recency, current exposure), on the patient the call is about
  (identity screening runs on every call), or on another resource (a medication naming a
  ``Medication`` by reference is classified afresh each time).
* JSON the encoder cannot reproduce exactly is never a key: FHIR forbids ``null``, and a number
  JSON cannot carry (``NaN``, ``1e400``) is encoded as ``null``, so any encoding holding
  ``null`` is read afresh rather than risk two different resources sharing one key.
* The cached values are frozen dataclasses; a ``MedicationOrder`` is kept without the call's
  raw resource, which is attached again on every call.
* Memory is bounded: two generations of at most ``size`` entries and ``max_bytes`` of JSON
  each; when the young one is full the old one is dropped. Keys and readings are the same data the call already holds,
  kept in this process only, never written anywhere and never logged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import orjson

V = TypeVar("V")

_NULL = b"null"


def resource_json(resource: dict[str, Any], *, compact: bool = False) -> bytes | None:
    """The key of a resource: its JSON, or None when it cannot be a key (see the module doc).
    ``compact``: in exactly sized bytes (see ``_compact``), for a key several memos will keep."""
    try:
        raw = orjson.dumps(resource)
    except (orjson.JSONEncodeError, TypeError):  # nested too deep, or not JSON at all
        return None
    if _NULL in raw:
        return None
    return bytes(memoryview(raw)) if compact else raw


def _compact(key: Hashable) -> Hashable:
    """The key with its JSON in exactly sized bytes: orjson's output keeps the buffer it was
    written into (at least 8 KiB, measured), which a kept key would otherwise hold for ever."""
    if isinstance(key, bytes):
        return bytes(memoryview(key))
    if isinstance(key, tuple):
        return tuple(bytes(memoryview(part)) if isinstance(part, bytes) else part for part in key)
    return key


def key_bytes(key: Hashable) -> int:
    """The JSON bytes a key holds (a key is an encoding, or a tuple holding one)."""
    if isinstance(key, bytes):
        return len(key)
    if isinstance(key, tuple):
        return sum(len(part) for part in key if isinstance(part, bytes))
    return 0


class ReadingMemo(Generic[V]):
    """A bounded map from a resource's JSON (alone, or with what else the reading depends on,
    such as a patient id) to its reading (two generations, no per-hit work beyond a dict lookup;
    safe under threads: a race at worst reads a resource twice).

    Bounded twice: at most ``size`` entries and ``max_bytes`` of JSON in keys per generation
    (a prefetch value can be a large Bundle), so at most twice both in all."""

    def __init__(self, name: str, size: int, max_bytes: int = 8 << 20, *, compact: bool = True):
        """``compact=False``: keys arrive in exactly sized bytes already (``resource_json(...,
        compact=True)``), shared by several memos, which then keep one copy between them."""
        self.name = name
        self.compact = compact
        self.size = size
        self.max_bytes = max_bytes
        self._young: dict[Hashable, V] = {}
        self._old: dict[Hashable, V] = {}
        self._young_bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        found = self._young.get(key)
        if found is None:
            found = self._old.get(key)
            if found is None:
                self.misses += 1
                return None
            self.put(key, found)  # promoted: what is still in use survives the next swap
        self.hits += 1
        return found

    def put(self, key: Hashable, value: V) -> None:
        size = key_bytes(key)
        if size > self.max_bytes:
            return  # larger than a whole generation: never kept
        with self._lock:
            if len(self._young) >= self.size or self._young_bytes + size > self.max_bytes:
                self._old, self._young, self._young_bytes = self._young, {}, 0
            if key not in self._young:
                self._young_bytes += size
                self._young[_compact(key) if self.compact else key] = value
            else:
                self._young[key] = value

    def remembered(self, resource: dict[str, Any], read: Callable[[dict[str, Any]], V]) -> V:
        """``read(resource)``, remembered by the resource's JSON (read afresh when it cannot be a
        key). ``read`` must be a pure function of the resource and never return None."""
        key = resource_json(resource)
        if key is not None:
            found = self.get(key)
            if found is not None:
                return found
        value = read(resource)
        if key is not None:
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._young, self._old, self._young_bytes = {}, {}, 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def key_bytes(self) -> int:
        """JSON bytes held in keys (both generations; a bytes object shared by keys counts each time)."""
        with self._lock:
            return self._young_bytes + sum(key_bytes(k) for k in self._old)
