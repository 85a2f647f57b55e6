"""Decoding a request body, without the cyclic garbage collector walking it as it grows.

Decoding a large body allocates hundreds of thousands of dicts and lists in one go. Each of
those allocations counts towards the collector's thresholds, so collections keep starting while
the decoded tree grows, and every full collection walks the whole tree decoded so far: measured
on a 6 MB body (10,000 Observations), orjson took 95 ms with the collector running and 52 ms
with it paused. Decoded JSON holds no reference cycles (it is a tree), so pausing the collector
loses nothing: the tree is freed by reference counting when the call is over.

The pause lasts the whole call (``collector_paused``), not the decoding alone: resumed while the
tree is still alive, the collector would walk all of it at the next collection, during the
reading of the chart. It ends as soon as no thread is in such a call (several request threads
may be: the pause is counted, never left on); cycles made meanwhile are collected then.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

# Bodies at least this large are decoded with the collector paused (a typical hook call's body is
# tens of kilobytes: nothing to gain there).
PAUSE_FROM_BYTES = 512 * 1024

_lock = threading.Lock()
_decoding = 0  # threads decoding a large body now
_paused_by_us = False  # whether the collector was running when the first of them began


def loads(raw: bytes) -> Any:
    """``orjson.loads(raw)`` (raising ``orjson.JSONDecodeError`` as it does)."""
    if len(raw) < PAUSE_FROM_BYTES:
        return orjson.loads(raw)
    _pause()
    try:
        return orjson.loads(raw)
    finally:
        _resume()


@contextmanager
def collector_paused(body_bytes: int | None) -> Iterator[None]:
    """The collector paused for the block when the body is large (``PAUSE_FROM_BYTES``; its
    size unknown: only while it is decoded, by ``loads``). The block should hold the decoded
    body only in frames that end inside it, so the tree is freed before the collector resumes."""
    if body_bytes is None or body_bytes < PAUSE_FROM_BYTES:
        yield
        return
    _pause()
    try:
        yield
    finally:
        _resume()


def _pause() -> None:
    global _decoding, _paused_by_us
    with _lock:
        if _decoding == 0:
            _paused_by_us = gc.isenabled()
            gc.disable()
        _decoding += 1


def _resume() -> None:
    global _decoding, _paused_by_us
    with _lock:
        _decoding -= 1
        if _decoding == 0 and _paused_by_us:
            _paused_by_us = False
            gc.enable()
