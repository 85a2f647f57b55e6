"""Obtaining the FHIR data a service declares: from prefetch, else from a trusted FHIR server.

Each service declares its prefetch keys (``cds_service.services``: template, description,
required or optional). ``PrefetchResolver`` turns a hook call into one dict
``key -> resource | Bundle | None`` for the engine:

* a resource or Bundle the EHR prefetched is used as sent (OperationOutcome entries dropped; a
  Bundle whose entries are all errors counts as an error; ``next`` pages are followed);
* ``null`` means the EHR has no such data: an empty result, not a missing one;
* an OperationOutcome, an absent key or an odd value (a bare string, a list ...) is fetched from
  ``fhirServer`` when that server is trusted, in parallel, within the hook call's deadline (every
  socket is closed by then), at most ``CDS_FHIR_SERVER_CONCURRENCY`` at once per server and not
  at all while that server's circuit is open (``breaker.py``), so one slow server cannot take
  the fetch threads every other call needs;
* what still cannot be had is listed in ``ResolvedPrefetch.unavailable`` with a short reason the
  cards show clinicians; if that includes data the service requires, ``DataUnavailable`` is
  raised (the HTTP layer answers 412 Precondition Failed).

Medications referenced as ``medicationReference`` to a ``Medication`` the Bundle does not hold
are read one by one from the trusted server and added to the Bundle (``search.mode: include``),
because the template stays inside the 2.0 query subset, which has no ``_include``.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cds_service.calllog import event
from cds_service.config import Settings
from cds_service.errors import BadRequest, DataUnavailable
from cds_service.fhir.breaker import ServerGuard
from cds_service.fhir.client import FhirClient, FhirFetchError, is_normal_path, is_under_base, server_problem
from cds_service.fhir.reading import as_list, is_about_patient, iter_resources, names_patient, patient_references
from cds_service.fhir.templates import PrefetchKey, Shape, TemplateError, fill_template, shape_of
from cds_service.patient.memo import ReadingMemo, resource_json
from cds_service.protocol import CDSRequest

log = logging.getLogger("cds_service.fhir")


# Follow-up reads of Medications that MedicationRequests reference (per hook call).
MAX_MEDICATION_READS = 20

_MEDICATION_ORDER_TYPES = frozenset({"MedicationRequest", "MedicationOrder"})

# A filled template whose URL is not under the trusted base: a context id such as "." or "..".
_ID_NOT_USABLE = "request has an id that cannot be used in a FHIR address"


# --------------------------------------------------------------------------------------------
# What the engine receives
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedPrefetch:
    """What the engine reads: one value per declared key (``None`` = the EHR has no such data),
    plus the keys that could not be obtained (optional data the cards must admit to missing)."""

    data: dict[str, Any]
    unavailable: dict[str, str]
    # Keys whose data is present but known to be partial (e.g. a later page could not be read,
    # a referenced Medication could not be read): key -> short reason.
    incomplete: dict[str, str] = field(default_factory=dict)
    # Keys obtained (wholly or partly) from the FHIR server rather than from prefetch.
    fetched: frozenset[str] = frozenset()
    # The patient every resource in ``data`` was checked to be about (``_drop_other_patients``
    # removed every resource about another patient); None when no check was made.
    screened_for: str | None = None
    # key -> how many resources about another patient were dropped from it (never used).
    other_patient: Mapping[str, int] = field(default_factory=dict)
    # key -> the JSON encoding of ``data[key]`` when it is exactly the value the EHR sent (the
    # record builder reads a value it has seen before by this key: ``patient/memo.py``).
    encoded: Mapping[str, bytes] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Reading prefetched values and fetched responses
# --------------------------------------------------------------------------------------------

_ACCEPTED_PREFETCH_BUNDLE_TYPES = (None, "searchset", "collection")


def _is_error_outcome(resource: dict[str, Any]) -> bool:
    issues = resource.get("issue")
    if not isinstance(issues, list) or not issues:
        return True  # an OperationOutcome that says nothing is no result either
    return any(isinstance(i, dict) and i.get("severity") in ("error", "fatal") for i in issues)


def _clean_bundle(bundle: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """Drop OperationOutcome and broken entries. Returns ``(bundle, ok)``; not ok when the Bundle
    held nothing but errors (the search failed) or its ``entry`` is not a list."""
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        return None, False
    kept, errors = [], 0
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            continue
        if resource["resourceType"] == "OperationOutcome":
            errors += _is_error_outcome(resource)
            continue
        kept.append(entry)
    if errors and not kept:
        return None, False
    if len(kept) == len(entries) and "link" not in bundle and "entry" in bundle:
        return bundle, True  # nothing to drop: no copy (nothing downstream changes a bundle)
    cleaned = {k: v for k, v in bundle.items() if k not in ("entry", "link")}
    cleaned["entry"] = kept
    return cleaned, True


def _next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        url = link.get("url") if isinstance(link, dict) and link.get("relation") == "next" else None
        if isinstance(url, str):
            return url
    return None


def _count_primary(entries: list[dict[str, Any]], resource_type: str) -> int:
    return sum(1 for e in entries if e["resource"].get("resourceType") == resource_type)


@dataclass(frozen=True)
class _Server:
    """The trusted FHIR server of one hook call."""

    base: str
    token: str | None = field(default=None, repr=False)

    def url(self, relative: str) -> str:
        return f"{self.base}/{relative.lstrip('/')}"

    def owns(self, url: str) -> bool:
        """True when the token may go to ``url``: same origin, at or below the base path, and a
        path in normal form (``client.is_normal_path``), so no ``..`` or ``%2e%2e`` can climb out."""
        return is_under_base(url, self.base)


# Outcome of looking at one prefetched value.
_USE, _NONE, _FETCH, _MORE_PAGES = "use", "none", "fetch", "more-pages"

_MISSING = object()


def _judge_prefetched(value: Any, shape: Shape) -> tuple[str, Any]:
    if value is _MISSING:
        return _FETCH, "not in prefetch"
    if value is None:
        return _NONE, None
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return _FETCH, "prefetch value not usable"
    kind = value["resourceType"]
    if kind == "OperationOutcome":
        return _FETCH, "the EHR reported an error prefetching it"
    if shape.is_read:
        return (_USE, value) if kind == shape.resource_type else (_FETCH, "prefetch value not usable")
    if kind != "Bundle" or value.get("type") not in _ACCEPTED_PREFETCH_BUNDLE_TYPES:
        return _FETCH, "prefetch value not usable"
    cleaned, ok = _clean_bundle(value)
    if cleaned is None or not ok:
        return _FETCH, "the EHR reported an error prefetching it"
    next_url = _next_link(value)
    have = _count_primary(cleaned["entry"], shape.resource_type)
    if next_url and (shape.newest is None or have < shape.newest):
        return _MORE_PAGES, (cleaned, next_url)
    return _USE, cleaned


def _check_fetched(data: dict[str, Any], shape: Shape) -> dict[str, Any]:
    kind = data["resourceType"]
    if kind == "OperationOutcome":
        raise FhirFetchError("FHIR server reported an error")
    if shape.is_read:
        if kind != shape.resource_type:
            raise FhirFetchError(f"FHIR server sent {kind}, not {shape.resource_type}")
        return data
    if kind != "Bundle" or data.get("type") != "searchset":
        raise FhirFetchError("FHIR server did not answer with search results")
    cleaned, ok = _clean_bundle(data)
    if cleaned is None or not ok:
        raise FhirFetchError("FHIR server reported an error")
    return cleaned


# --------------------------------------------------------------------------------------------
# The resolver
# --------------------------------------------------------------------------------------------


@dataclass
class _Result:
    value: Any = None
    incomplete: str | None = None


class PrefetchResolver:
    """Obtains every declared key for a hook call. One per app: it owns a pooled HTTP session and
    a worker pool shared by all requests (thread-safe; the WSGI server runs several threads)."""

    def __init__(self, settings: Settings | None = None, *, client: FhirClient | None = None):
        settings = settings or Settings()
        self.settings = settings
        self.client = client or FhirClient.from_settings(settings)
        self.executor = ThreadPoolExecutor(max_workers=settings.fhir_workers, thread_name_prefix="fhir-fetch")

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    # -- entry point ---------------------------------------------------------------------------

    def resolve(self, request: CDSRequest, keys: Mapping[str, PrefetchKey]) -> ResolvedPrefetch:
        """Every declared key's data; ``DataUnavailable`` when a required key cannot be had,
        ``BadRequest`` when the request would mix two patients' data."""
        _refuse_patient_mismatch(request)
        deadline = time.monotonic() + self.settings.fhir_deadline
        sent = request.prefetch if isinstance(request.prefetch, dict) else {}
        data: dict[str, Any] = {}
        unavailable: dict[str, str] = {}
        incomplete: dict[str, str] = {}
        fetched: set[str] = set()
        jobs: dict[str, Callable[[], _Result]] = {}
        server: _Server | str | None = None  # resolved on first need: a server or why there is none

        def get_server() -> _Server | str:
            nonlocal server
            if server is None:
                server = self._server(request)
            return server

        shapes = {key: shape_of(spec) for key, spec in keys.items()}
        encoded = _encode_sent(sent, keys)
        for key, spec in keys.items():
            shape = shapes[key]
            if key in encoded and SENT_AS_IS.get((encoded[key], shape)):
                data[key] = sent[key]  # judged before, byte for byte: usable as it was sent
                continue
            verdict, detail = _judge_prefetched(sent.get(key, _MISSING), shape)
            if key in encoded:
                SENT_AS_IS.put((encoded[key], shape), verdict == _USE and detail is sent[key])
            if verdict == _USE:
                data[key] = detail
            elif verdict == _NONE:
                data[key] = None
            elif verdict == _MORE_PAGES:
                first_page, next_url = detail
                srv = get_server()
                if isinstance(srv, str):
                    data[key] = first_page
                    incomplete[key] = f"later pages not read ({srv})"
                else:
                    jobs[key] = _bind(self._follow_pages, first_page, next_url, shape, srv, deadline)
            else:  # fetch
                srv = get_server()
                if isinstance(srv, str):
                    unavailable[key] = srv if detail == "not in prefetch" else f"{detail}; {srv}"
                    continue
                try:
                    url = srv.url(fill_template(spec.template, request.context))
                except TemplateError as exc:
                    unavailable[key] = exc.reason
                    continue
                if not srv.owns(url):  # an id of "." or ".." would climb out of the base path
                    unavailable[key] = _ID_NOT_USABLE
                    continue
                jobs[key] = _bind(self._fetch, url, shape, srv, deadline)

        for key, outcome in self._run(jobs, deadline, get_server).items():
            if isinstance(outcome, str):
                unavailable[key] = outcome
                continue
            data[key] = outcome.value
            fetched.add(key)
            if outcome.incomplete:
                incomplete[key] = outcome.incomplete

        for key, shape in shapes.items():
            if shape.resource_type in _MEDICATION_ORDER_TYPES and isinstance(data.get(key), dict):
                as_sent = encoded[key] if key in encoded and data[key] is sent[key] else None
                if as_sent is not None and NAMES_NO_MISSING_MEDICATION.get(as_sent):
                    continue  # every Medication its orders name was found in it before
                self._add_referenced_medications(key, data, incomplete, fetched, get_server, deadline, as_sent)

        # What the resolver kept exactly as sent keeps its encoding; anything it changed does not.
        encoded = {k: raw for k, raw in encoded.items() if k in data and data[k] is sent[k]}
        screened_for, other_patient = _drop_other_patients(request, data, unavailable, encoded)
        resolved = ResolvedPrefetch(
            data=data,
            unavailable=unavailable,
            incomplete=incomplete,
            fetched=frozenset(fetched),
            screened_for=screened_for,
            other_patient=other_patient,
            encoded={k: raw for k, raw in encoded.items() if k in data},
        )
        if fetched or unavailable or incomplete:
            event(
                log,
                logging.INFO,
                "prefetch resolved",
                fetched=sorted(fetched),
                unavailable=unavailable,
                incomplete=incomplete,
                fhir_host=_host(request.fhirServer),
            )
        _require(request.hook, keys, resolved)
        return resolved

    # -- server ----------------------------------------------------------------------------------

    def _server(self, request: CDSRequest) -> _Server | str:
        if not request.fhirServer:
            return "no FHIR server given"
        problem = server_problem(
            request.fhirServer,
            self.settings.fhir_allowed_servers,
            allow_http=self.settings.fhir_allow_http,
        )
        if problem:
            return problem
        token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
        return _Server(base=request.fhirServer.strip().rstrip("/"), token=token)

    # -- network work (runs on the worker pool) --------------------------------------------------

    def _run(
        self, jobs: dict[str, Callable[[], Any]], deadline: float, get_server: Callable[[], _Server | str]
    ) -> dict[str, Any]:
        """Run jobs in parallel; each outcome is its result or the reason (str) it failed.

        Each job first needs a slot of its FHIR server (``breaker.ServerGuard``). Slots are waited
        for here, on the hook call's own thread, so a slow server's calls queue here rather than
        occupy the shared fetch threads; a job that gets no slot by the deadline (or meets an open
        circuit) fails at once with that reason. Past the deadline, jobs not started are cancelled
        and started ones are cut off by the client's deadline watchdog, so no fetch thread stays
        busy for a call that has given up.
        """
        if not jobs:
            return {}
        server = get_server()
        if isinstance(server, str):  # not reached: jobs are only made for a usable server
            return dict.fromkeys(jobs, server)
        guard = self.client.guards.for_url(server.base)
        outcomes: dict[str, Any] = {}
        futures: dict[str, Future[Any]] = {}
        for key, job in jobs.items():
            refused = guard.acquire(deadline)
            if refused:
                outcomes[key] = refused
                continue
            try:
                future = self.executor.submit(job)
            except RuntimeError:  # the pool is shut down (the app is closing)
                guard.release()
                outcomes[key] = "FHIR data could not be read"
                continue
            future.add_done_callback(_releaser(guard))  # also runs when the future is cancelled
            futures[key] = future
        wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        for key, future in futures.items():
            if not future.done():
                future.cancel()  # not started: never will; started: the watchdog ends it by the deadline
                outcomes[key] = "timed out"
                continue
            try:
                outcomes[key] = future.result()
            except FhirFetchError as exc:
                outcomes[key] = exc.reason
            except Exception as exc:  # a bug must cost one key, not the whole call
                # Exception messages may quote a URL or a resource: only the type and the frames
                # (file, line, code) are logged, never the message.
                event(
                    log,
                    logging.ERROR,
                    "FHIR fetch failed unexpectedly",
                    key=key,
                    error=type(exc).__name__,
                    where="".join(traceback.format_tb(exc.__traceback__)),
                )
                outcomes[key] = "FHIR data could not be read"
        return {key: outcomes[key] for key in jobs}

    def _get(self, url: str, server: _Server, deadline: float) -> dict[str, Any]:
        """The one place a GET is made: the URL is checked against the trusted base again here, so
        no code path can send the token anywhere else."""
        if not server.owns(url):
            raise FhirFetchError("FHIR address outside the trusted server")
        return self.client.get_json(url, token=server.token, deadline=deadline)

    def _fetch(self, url: str, shape: Shape, server: _Server, deadline: float) -> _Result:
        raw = self._get(url, server, deadline)
        first = _check_fetched(raw, shape)
        if shape.is_read:
            return _Result(first)
        return self._follow_pages(first, _next_link(raw), shape, server, deadline)

    def _follow_pages(
        self,
        first_page: dict[str, Any],
        next_url: str | None,
        shape: Shape,
        server: _Server,
        deadline: float,
    ) -> _Result:
        """Append the entries of ``next`` pages to the first page, within the page cap, only on the
        trusted server, stopping once a newest-N key has its N results."""
        entries = list(first_page.get("entry", []))
        merged = {k: v for k, v in first_page.items() if k not in ("entry", "link")}
        pages, incomplete = 1, None
        while next_url:
            if shape.newest is not None and _count_primary(entries, shape.resource_type) >= shape.newest:
                break
            if pages >= self.settings.fhir_max_pages:
                incomplete = f"more than {pages} pages; the rest not read"
                break
            if not server.owns(next_url):
                if is_normal_path(_path_of(next_url)):
                    incomplete = "next page is on another server; not read"
                else:
                    incomplete = "next page address not usable; not read"
                break
            try:
                raw = self._get(next_url, server, deadline)
                page = _check_fetched(raw, shape)
            except FhirFetchError as exc:
                incomplete = f"later pages not read ({exc.reason})"
                break
            entries.extend(page.get("entry", []))
            next_url = _next_link(raw)
            pages += 1
        merged["entry"] = entries
        return _Result(merged, incomplete)

    # -- referenced Medications ------------------------------------------------------------------

    def _add_referenced_medications(
        self,
        key: str,
        data: dict[str, Any],
        incomplete: dict[str, str],
        fetched: set[str],
        get_server: Callable[[], _Server | str],
        deadline: float,
        encoded: bytes | None = None,
    ) -> None:
        """``encoded``: the Bundle's JSON when it is exactly as the EHR sent it."""
        bundle = data[key]
        if bundle.get("resourceType") != "Bundle":
            return
        wanted = _unresolved_medication_refs(bundle)
        if not wanted:
            if encoded is not None:
                NAMES_NO_MISSING_MEDICATION.put(encoded, True)
            return
        srv = get_server()
        if isinstance(srv, str):
            _note(incomplete, key, f"{len(wanted)} referenced Medication(s) not read ({srv})")
            return
        reads: dict[str, str] = {}  # "Medication/<id>" -> URL
        unreadable = 0
        for ref in wanted:
            path = _medication_path(ref, srv)
            if path is None:
                unreadable += 1
            elif len(reads) < MAX_MEDICATION_READS:
                reads[path] = srv.url(path)
            else:
                unreadable += 1
        medication = Shape("Medication", is_read=True, newest=None)
        jobs = {path: _bind(self._fetch, url, medication, srv, deadline) for path, url in reads.items()}
        outcomes = self._run(jobs, deadline, get_server)
        added, reasons = [], []
        for path, outcome in outcomes.items():
            if isinstance(outcome, str):
                reasons.append(outcome)
                continue
            added.append({"fullUrl": srv.url(path), "resource": outcome.value, "search": {"mode": "include"}})
        if added:
            data[key] = {**bundle, "entry": list(bundle.get("entry", [])) + added}
            fetched.add(key)
        missed = unreadable + len(reasons)
        if missed:
            why = reasons[0] if reasons else "not on the trusted server"
            _note(incomplete, key, f"{missed} referenced Medication(s) not read ({why})")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _bind(function: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: function(*args)


def _releaser(guard: ServerGuard) -> Callable[[Future[Any]], None]:
    return lambda _future: guard.release()


def _path_of(url: str) -> str:
    try:
        return urlsplit(url).path
    except ValueError:
        return ""


def _note(incomplete: dict[str, str], key: str, reason: str) -> None:
    incomplete[key] = f"{incomplete[key]}; {reason}" if key in incomplete else reason


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _refuse_patient_mismatch(request: CDSRequest) -> None:
    auth = request.fhirAuthorization
    if auth is None or not auth.patient:
        return
    token_patient = auth.patient.removeprefix("Patient/")
    context_patient = str(request.context.get("patientId", "")).removeprefix("Patient/")
    if token_patient != context_patient:
        raise BadRequest(
            "fhirAuthorization.patient does not match context.patientId; the service will not "
            "combine data of two patients."
        )


def _reference_of(resource: dict[str, Any]) -> str | None:
    ref = resource.get("medicationReference")  # R4 MedicationRequest, DSTU2 MedicationOrder
    if not isinstance(ref, dict):
        medication = resource.get("medication")  # R5: medication.reference
        ref = medication.get("reference") if isinstance(medication, dict) else None
    value = ref.get("reference") if isinstance(ref, dict) else None
    return value if isinstance(value, str) and value else None


def _unresolved_medication_refs(bundle: dict[str, Any]) -> list[str]:
    """References to Medications that are neither contained nor entries of the Bundle."""
    present: set[str] = set()
    orders = []
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        if resource.get("resourceType") == "Medication":
            if isinstance(resource.get("id"), str):
                present.add(f"Medication/{resource['id']}")
            if isinstance(entry.get("fullUrl"), str):
                present.add(entry["fullUrl"])
        elif resource.get("resourceType") in _MEDICATION_ORDER_TYPES:
            orders.append(resource)
    wanted: list[str] = []
    for order in orders:
        ref = _reference_of(order)
        if ref is None or ref.startswith("#"):
            continue
        relative = _relative_medication(ref)
        if ref in present or (relative and relative in present) or ref in wanted:
            continue
        wanted.append(ref)
    return wanted


_RELATIVE_MEDICATION = re.compile(r"(?:^|/)(Medication/[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def _relative_medication(ref: str) -> str | None:
    match = _RELATIVE_MEDICATION.search(ref)
    return match.group(1) if match else None


def _medication_path(ref: str, server: _Server) -> str | None:
    """``Medication/<id>`` to read for a reference, or None when it is not ours to read."""
    relative = _relative_medication(ref)
    if relative is None:
        return None  # urn:uuid: or other forms only resolvable inside the Bundle
    if "://" in ref and not server.owns(ref):
        return None
    if not server.owns(server.url(relative)):  # an id of "." or ".."
        return None
    return relative


OTHER_PATIENT = "held data about another patient"


# Prefetch values judged before, by their JSON: (encoding, shape) -> usable exactly as sent; and
# (encoding, patient id) -> every resource in it is about that patient by references that name
# them alone (or names no patient). Both are pure functions of the bytes (see patient/memo.py); an EHR re-sends the
# same chart on every order-select, so a chart seen before is not walked again.
SENT_AS_IS: ReadingMemo[bool] = ReadingMemo("prefetch judged", 2048, max_bytes=8 << 20, compact=False)
PLAINLY_ABOUT: ReadingMemo[bool] = ReadingMemo("prefetch about patient", 2048, max_bytes=8 << 20, compact=False)
# encoding -> every Medication the orders in it name by reference is contained or in it.
NAMES_NO_MISSING_MEDICATION: ReadingMemo[bool] = ReadingMemo(
    "prefetch medications", 1024, max_bytes=4 << 20, compact=False
)
# Values with more entries than this are not encoded (a chart that large would only churn the
# memos, and encoding it costs time).
ENCODE_LIMIT = 2000


def _encode_sent(sent: dict[str, Any], keys: Mapping[str, PrefetchKey]) -> dict[str, bytes]:
    """The JSON encoding of each declared key's prefetched value (a dict), when the chart is
    small enough to remember (see ``ENCODE_LIMIT``)."""
    values = {key: sent[key] for key in keys if isinstance(sent.get(key), dict)}
    size = sum(len(v["entry"]) if isinstance(v.get("entry"), list) else 1 for v in values.values())
    if size > ENCODE_LIMIT:
        return {}
    encoded = {}
    for key, value in values.items():
        raw = resource_json(value, compact=True)  # one copy, kept by every memo that keeps it
        if raw is not None:
            encoded[key] = raw
    return encoded


def _drop_other_patients(
    request: CDSRequest, data: dict[str, Any], unavailable: dict[str, str], encoded: dict[str, bytes]
) -> tuple[str | None, dict[str, int]]:
    """Every resource about another patient than ``context.patientId`` is dropped, one by one: it
    is never read, and the rest of its key is used (one stray Condition mixed into a problem
    list must not switch off this patient's protection). A key left holding nothing about this
    patient (every resource in it was someone else's) becomes unavailable, so a required key
    still answers 412 naming the mismatch. Logged without ids.

    Returns the patient id the data left in ``data`` is now known to be about (None when there
    is none to check), and key -> how many resources about another patient it held (the cards
    say so)."""
    patient_id = request.context.get("patientId")
    if not isinstance(patient_id, str) or not patient_id:
        return None, {}
    known = [data[key] is None or (key in encoded and PLAINLY_ABOUT.get((encoded[key], patient_id))) for key in data]
    if all(known):
        return patient_id, {}  # every value was found plainly about this patient before
    entries = {key: list(iter_resources(value)) for key, value in data.items()}
    # About the patient whatever else the prefetch holds: judged with only the references that
    # always name them (``Patient/<id>``, ``urn:uuid:<id>``), never a Bundle's own fullUrls.
    own_refs = patient_references(patient_id, ())
    for key, found in entries.items():
        if key in encoded:
            PLAINLY_ABOUT.put(
                (encoded[key], patient_id),
                all(is_about_patient(resource, patient_id, own_refs) for _, resource in found),
            )
    refs = patient_references(patient_id, [entry for found in entries.values() for entry in found])
    ignored: dict[str, int] = {}
    for key, found in entries.items():
        foreign = [resource for _, resource in found if not is_about_patient(resource, patient_id, refs)]
        if not foreign:
            continue
        ignored[key] = len(foreign)
        encoded.pop(key, None)  # the value used is no longer the one sent
        dropped = {id(resource) for resource in foreign}
        kept = [resource for _, resource in found if id(resource) not in dropped]
        if any(names_patient(resource, patient_id, refs) for resource in kept):
            data[key] = _without(data[key], dropped)
        else:
            del data[key]
            unavailable[key] = OTHER_PATIENT
        event(log, logging.WARNING, "prefetch resources about another patient ignored", key=key, resources=len(foreign))
    return patient_id, ignored


def _without(value: Any, dropped: set[int]) -> Any:
    """A copy of a prefetch value (a Bundle, nested Bundles walked) without the resources whose
    ``id()`` is in ``dropped``; the value itself when it is not a Bundle."""
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        return value
    entries = []
    for entry in as_list(value.get("entry")):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and id(resource) in dropped:
            continue
        if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            entry = {**entry, "resource": _without(resource, dropped)}
        entries.append(entry)
    copy = dict(value)
    copy["entry"] = entries
    if isinstance(copy.get("total"), int):
        copy["total"] = len(entries)
    return copy


def _require(hook: str, keys: Mapping[str, PrefetchKey], resolved: ResolvedPrefetch) -> None:
    missing = [k for k in sorted(keys) if keys[k].required and k in resolved.unavailable]
    if not missing:
        return
    described = [keys[k].description for k in missing]
    raise DataUnavailable(
        f"Cannot run {hook} decision support without {_and(described)}. Not obtained from "
        "prefetch or the FHIR server: " + "; ".join(f"{k} ({resolved.unavailable[k]})" for k in missing) + "."
    )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
