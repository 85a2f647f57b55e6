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

A very large hook call (``SIEVE_FROM_BYTES``, about 30,000 Observations and up) is not decoded
whole at all: decoded, it would take five to eight times the body's size in memory, nearly all of
it Observations no check reads. Its framing is walked here and its prefetch Bundles' entries are
decoded one at a time and offered to a sieve from the layer that knows what the checks read
(``patient.chart.EntrySieve``), which keeps exactly what reading the chart could use. Such a body
is then held as text once, with what the sieve keeps.
"""

from __future__ import annotations

import gc
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from json.decoder import scanstring  # type: ignore[attr-defined]  # public since 2.6, not in typeshed
from typing import Any, Protocol

import orjson

# Bodies at least this large are decoded with the collector paused (a typical hook call's body is
# tens of kilobytes: nothing to gain there).
PAUSE_FROM_BYTES = 512 * 1024

_lock = threading.Lock()
_decoding = 0  # threads decoding a large body now
_paused_by_us = False  # whether the collector was running when the first of them began


# Bodies at least this large are decoded entry by entry when the caller can sieve them (a hook
# call: ``Sieve``), so that the whole chart is never held decoded at once.
SIEVE_FROM_BYTES = 16 * 1024 * 1024


class Sieve(Protocol):
    """Takes the entries of each prefetch Bundle one at a time, as they are decoded, and gives
    back those worth keeping (``patient.chart.EntrySieve``)."""

    @property
    def exact(self) -> bool:
        """False once it may have left out something that was needed: the body is then decoded
        whole."""
        ...

    def offer(self, key: str, entry: Any) -> None: ...

    def kept(self, key: str) -> list[Any]: ...


# Given the members of the body decoded before its ``prefetch`` (the hook, the context ...): the
# sieve for its Bundles, or None to decode the prefetch whole.
SieveFor = Callable[[dict[str, Any]], Sieve | None]


def loads(raw: bytes, sieve_for: SieveFor | None = None) -> Any:
    """``orjson.loads(raw)`` (raising ``json.JSONDecodeError`` as it does). A body of at least
    ``SIEVE_FROM_BYTES`` with a ``sieve_for`` is decoded member by member, and the entries of
    its prefetch Bundles one by one through the sieve: the same document, less what the sieve
    leaves out."""
    if sieve_for is not None and len(raw) >= SIEVE_FROM_BYTES:
        decoder = _SievingDecoder(raw, sieve_for)
        document = decoder.document()
        if all(sieve.exact for sieve in decoder.sieves):
            return document
        del document, decoder
    return _loads_whole(raw)


def _loads_whole(raw: bytes) -> Any:
    if len(raw) < PAUSE_FROM_BYTES:
        return orjson.loads(raw)
    _pause()
    try:
        return orjson.loads(raw)
    finally:
        _resume()


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_WHITESPACE = re.compile(r"[ \t\n\r]*")
# The standard library's scanner (in C) decodes each value; NaN and Infinity are refused, as
# orjson refuses them.
_DECODER = json.JSONDecoder(parse_constant=_not_json)


class _SievingDecoder:
    """Walks the framing of a hook call's body (its top-level object, the ``prefetch`` object,
    each prefetch value's members) and decodes everything else with the standard library's
    scanner, value by value; the ``entry`` array of each prefetch value is decoded one entry at a
    time and offered to the sieve. Held at once: the body as text and what the sieve keeps."""

    def __init__(self, raw: bytes, sieve_for: SieveFor):
        try:
            self.text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError("the body is not UTF-8", "", exc.start) from None
        self.sieve_for = sieve_for
        self.sieves: list[Sieve] = []

    def document(self) -> Any:
        text = self.text
        try:
            at = self._skip(0)
            if text[at] == "{":
                value, end = self._object(at, self._top_member)
            else:
                value, end = self._value(at)
        except IndexError:
            raise json.JSONDecodeError("Unexpected end of the body", text, len(text)) from None
        except json.JSONDecodeError:
            raise
        except (ValueError, RecursionError) as exc:  # NaN, a number too long to read, nesting
            raise json.JSONDecodeError(str(exc)[:100], text, 0) from None
        if self._skip(end) != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
        return value

    # -- the framing -------------------------------------------------------------------------

    def _top_member(self, body: dict[str, Any], name: str, at: int) -> tuple[Any, int]:
        if name == "prefetch" and self.text[at] == "{":
            sieve = self.sieve_for(body)
            if sieve is not None:
                self.sieves.append(sieve)
                return self._object(at, lambda _, key, where: self._prefetch_value(sieve, key, where))
        return self._value(at)

    def _prefetch_value(self, sieve: Sieve, key: str, at: int) -> tuple[Any, int]:
        if self.text[at] != "{":
            return self._value(at)

        def member(_: dict[str, Any], name: str, where: int) -> tuple[Any, int]:
            if name == "entry" and self.text[where] == "[":
                return self._entries(sieve, key, where)
            return self._value(where)

        return self._object(at, member)

    def _entries(self, sieve: Sieve, key: str, at: int) -> tuple[list[Any], int]:
        text = self.text
        at = self._skip(at + 1)
        if text[at] == "]":
            return [], at + 1
        while True:
            entry, at = self._value(at)
            sieve.offer(key, entry)
            at = self._skip(at)
            if text[at] == ",":
                at = self._skip(at + 1)
                continue
            if text[at] == "]":
                return sieve.kept(key), at + 1
            raise json.JSONDecodeError("Expecting ',' delimiter", text, at)

    def _object(
        self, at: int, member: Callable[[dict[str, Any], str, int], tuple[Any, int]]
    ) -> tuple[dict[str, Any], int]:
        """The object at ``at`` (its ``{``), each member's value decoded by ``member(object so
        far, name, where its value starts)``; a name given twice keeps its last value, as
        orjson and ``json.loads`` do."""
        text = self.text
        found: dict[str, Any] = {}
        at = self._skip(at + 1)
        if text[at] == "}":
            return found, at + 1
        while True:
            if text[at] != '"':
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, at)
            name, at = scanstring(text, at + 1, True)
            at = self._skip(at)
            if text[at] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, at)
            found[name], at = member(found, name, self._skip(at + 1))
            at = self._skip(at)
            if text[at] == ",":
                at = self._skip(at + 1)
                continue
            if text[at] == "}":
                return found, at + 1
            raise json.JSONDecodeError("Expecting ',' delimiter", text, at)

    def _value(self, at: int) -> tuple[Any, int]:
        return _DECODER.raw_decode(self.text, at)

    def _skip(self, at: int) -> int:
        match = _WHITESPACE.match(self.text, at)
        return match.end() if match else at


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
