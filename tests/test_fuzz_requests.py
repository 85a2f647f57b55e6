"""No input gives a 500: real requests, mutated anywhere, are answered 2xx or 4xx.

Property-based (hypothesis): take a real CDS Hooks request (``fhir_fixtures/*.json``; the
sandbox's captured requests in ``../shared`` when present), change one to three members at any
depth (null, a value of the wrong type, a huge string, huge / negative / NaN / Infinity numbers
written as raw JSON text, deep nesting, unicode including lone surrogates, right-to-left and
zero-width characters; the member removed; its key duplicated), post the bytes through the
Flask test client, and require: a status below 500; an OperationOutcome on 4xx; a ``cards``
list on 2xx; no traceback in any body. Derandomized and bounded, so CI runs the same few
hundred requests in a few seconds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.config import Settings
from cds_service.http.app import create_app
from tests.conftest import FHIR_DATA, FIXTURES, FROZEN_NOW, skip_without_shared

CAPTURED = FHIR_DATA / "sandbox-captured-requests"


# --- JSON text with what json.dumps cannot write -------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text emitted as is: NaN, 1e400, deep nesting ..."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """A JSON object whose keys may repeat."""

    items: tuple[tuple[str, Any], ...]


def encode(value: Any, ascii_only: bool = True) -> str:
    """JSON text; with ``ascii_only`` every non-ASCII character (lone surrogates included) is a
    \\u escape, otherwise it is written as itself."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        members = (json.dumps(k, ensure_ascii=ascii_only) + ":" + encode(v, ascii_only) for k, v in value.items)
        return "{" + ",".join(members) + "}"
    if isinstance(value, dict):
        return encode(Pairs(tuple(value.items())), ascii_only)
    if isinstance(value, list):
        return "[" + ",".join(encode(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def to_bytes(document: Any, ascii_only: bool) -> bytes:
    # Written as itself, a lone surrogate is invalid UTF-8.
    return encode(document, ascii_only).encode("utf-8", "surrogatepass")


# --- the requests ---------------------------------------------------------------------------------


def _load(folder: Path, note_key: str) -> list[tuple[str, dict[str, Any]]]:
    requests = []
    for path in sorted(folder.glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(body, dict) and "hook" in body:
            body.pop(note_key, None)
            requests.append((path.name, body))
    return requests


FIXTURE_REQUESTS = _load(FIXTURES, "_expected")


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every member at every depth (the root itself included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_of(child, (*prefix, index))
    return found


# --- mutations ------------------------------------------------------------------------------------

SPECIAL_STRINGS = [
    "",
    " ",
    "\x00",
    "\u202eevil\u202c",  # right-to-left override
    "\u200b\u200c\u200d\ufeff",  # zero-width characters and a BOM
    "\ud800",  # lone high surrogate
    "\udfff",  # lone low surrogate
    "a\ud83d",  # half an emoji
    "😀" * 8,
    "e\u0301" * 40,  # combining accents
    "مرحبا",
    "{{context.patientId}}",
    "Patient/../../etc/passwd",
    '\n\r\t\\"',
    "MedicationRequest/",
    "http://127.0.0.1:1/fhir",
]

RAW_NUMBERS = [Raw(t) for t in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 400, "-0", "1E+2", "1e-400")]


def _nested(depth: int, opener: str) -> Raw:
    if opener == "[":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "null" + "}" * depth)


strings = st.one_of(
    st.sampled_from(SPECIAL_STRINGS),
    st.text(max_size=40),
    st.text(st.characters(categories=["Cs", "Cf", "Mn", "Zs"]), min_size=1, max_size=8),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "\u202e", "😀"]), st.sampled_from([10_000, 200_000])),
)
numbers = st.one_of(
    st.sampled_from([0, -1, 1, -0.0, 0.5, 1e30, -1e30, 1e308, -1e308, 2**63, -(2**63) - 1, 2**64, 10**40, 5e-324]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(RAW_NUMBERS),
)
wrong_types = st.sampled_from([True, False, [], {}, [None], {"": None}, [[]], {"resourceType": None}])
deep = st.builds(_nested, st.sampled_from([64, 600, 5000]), st.sampled_from(["[", "{"]))
small_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
replacement = st.one_of(st.none(), strings, numbers, wrong_types, deep, small_json)


def mutate(data: st.DataObject, document: dict[str, Any]) -> Any:
    """The document with one to three members changed, then maybe one object given a
    duplicate key. A member is drawn by depth first, then among the members at that depth, so
    the few members near the top are changed about as often as the many deep inside resources."""
    doc: Any = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3), label="mutations")):
        by_depth: dict[int, list[tuple[Any, ...]]] = {}
        for path in paths_of(doc)[1:]:  # not the root: non-object bodies have their own tests
            by_depth.setdefault(len(path), []).append(path)
        if not by_depth:
            break
        depth = data.draw(st.sampled_from(sorted(by_depth)), label="depth")
        path = data.draw(st.sampled_from(by_depth[depth]), label="member")
        parent = _at(doc, path[:-1])
        if data.draw(st.integers(min_value=0, max_value=9), label="remove?") == 0:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(data.draw(replacement, label="value"))
    if data.draw(st.booleans(), label="duplicate a key?"):
        objects = [p for p in paths_of(doc) if isinstance(_at(doc, p), dict) and _at(doc, p)]
        if objects:
            path = data.draw(st.sampled_from(objects), label="object")
            target = _at(doc, path)
            key = data.draw(st.sampled_from(list(target)), label="key")
            twin = copy.deepcopy(data.draw(replacement, label="duplicate value"))
            first = data.draw(st.booleans(), label="duplicate first?")
            items = ((key, twin), *target.items()) if first else (*target.items(), (key, twin))
            doc = _replace(doc, path, Pairs(items))
    return doc


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _at(doc, path[:-1])[path[-1]] = value
    return doc


# --- the property ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings_ = Settings(feedback_db=tmp_path_factory.mktemp("fuzz") / "f.db")
    return create_app(settings_, now=lambda: FROZEN_NOW).test_client()


def deepest_raw_nesting(value: Any) -> int:
    """How deep the deepest nesting written as raw text (``_nested``) in the document goes."""
    if isinstance(value, Raw):
        return len(value.text) - len(value.text.lstrip('[{"a:'))
    if isinstance(value, Pairs):
        return max((deepest_raw_nesting(v) for _, v in value.items), default=0)
    if isinstance(value, dict):
        return max((deepest_raw_nesting(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((deepest_raw_nesting(v) for v in value), default=0)
    return 0


def check_answer(client, body: dict[str, Any], payload: bytes, document: Any = None) -> None:
    hook = body.get("hook") if isinstance(body.get("hook"), str) else "patient-view"
    response = client.post(f"/cds-services/calciphylaxis-{hook}", data=payload, content_type="application/json")
    text = response.get_data(as_text=True)
    assert response.status_code < 500, f"{response.status_code}: {text[:500]}"
    assert "Traceback" not in text
    answer = json.loads(text)
    if response.status_code >= 400:
        assert answer["resourceType"] == "OperationOutcome" and answer["issue"][0]["diagnostics"]
    else:
        assert isinstance(answer["cards"], list)


def fuzz(requests: list[tuple[str, dict[str, Any]]]) -> Callable[..., None]:
    @settings(
        max_examples=120,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
    @given(which=st.integers(min_value=0, max_value=len(requests) - 1), ascii_only=st.booleans(), data=st.data())
    def run(client, which, ascii_only, data):
        _, original = requests[which]
        document = mutate(data, original)
        check_answer(client, original, to_bytes(document, ascii_only), document)

    return run


test_mutated_fixture_requests_never_get_a_500 = fuzz(FIXTURE_REQUESTS)


def test_mutated_captured_sandbox_requests_never_get_a_500(client):
    skip_without_shared(CAPTURED, "captured sandbox requests")
    requests = _load(CAPTURED, "_captured")
    if not requests:
        pytest.skip(f"no captured requests in {CAPTURED}")
    fuzz(requests)(client)


def test_order_to_stop_with_a_deeply_nested_member_is_not_a_500(client):
    name = "c1-calcium-acetate-on-home-medication-list-patient-view.json"
    body = next((b for n, b in FIXTURE_REQUESTS if n == name), None)
    if body is None:
        pytest.skip(f"fixture {name} not available")
    document = copy.deepcopy(body)
    entry = document["prefetch"]["medstatements"]["entry"][0]["resource"]
    entry["note"] = _nested(300, "[")
    check_answer(client, document, to_bytes(document, True))
