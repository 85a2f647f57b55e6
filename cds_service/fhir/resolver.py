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

Whose data it is is not judged here: ``patient.chart.read_chart`` screens every resource in the
same pass that selects what the checks read (a key left holding only another patient's data
then counts as unavailable, and ``require`` is asked again).
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
from cds_service.fhir.prefetch import ResolvedPrefetch
from cds_service.fhir.reading import iter_resources
from cds_service.fhir.templates import PrefetchKey, Shape, TemplateError, fill_template, shape_of
from cds_service.protocol import CDSRequest

log = logging.getLogger("cds_service.fhir")


# Follow-up reads of Medications that MedicationRequests reference (per hook call).
MAX_MEDICATION_READS = 20

_MEDICATION_ORDER_TYPES = frozenset({"MedicationRequest", "MedicationOrder"})

# A filled template whose URL is not under the trusted base: a context id such as "." or "..".
_ID_NOT_USABLE = "request has an id that cannot be used in a FHIR address"


# --------------------------------------------------------------------------------------------
# Reading prefetched values and fetched responses
# --------------------------------------------------------------------------------------------

_ACCEPTED_PREFETCH_BUNDLE_TYPES = (None, "searchset", "collection")


def _is_error_outcome(resource: dict[str, Any]) -> bool:
    issues = resource.get("issue")
    if not isinstance(issues, list) or not issues:
        return True  # an OperationOutcome that says nothing is no result either
    return any(isinstance(i, dict) and i.get("severity") in ("error", "fatal") for i in issues)


def _search_failed(bundle: dict[str, Any]) -> bool:
    """Whether a search Bundle reports a failed search: its ``entry`` is not a list, or it holds
    an error OperationOutcome and nothing else usable. Looks no further than the first usable
    entry (usually the first): the Bundle is not walked here, nor copied; its OperationOutcome
    and broken entries are passed over where the chart is read (``patient.chart``)."""
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        return True
    errors = False
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            continue
        if resource["resourceType"] != "OperationOutcome":
            return False
        errors = errors or _is_error_outcome(resource)
    return errors


def _next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        url = link.get("url") if isinstance(link, dict) and link.get("relation") == "next" else None
        if isinstance(url, str):
            return url
    return None


def _count_primary(entries: list[Any], resource_type: str) -> int:
    """How many entries hold a resource of ``resource_type`` (asked only when a next page exists)."""
    return sum(
        1
        for e in entries
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == resource_type
    )


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
    if _search_failed(value):
        return _FETCH, "the EHR reported an error prefetching it"
    next_url = _next_link(value)
    if next_url and (
        shape.newest is None or _count_primary(value.get("entry", []), shape.resource_type) < shape.newest
    ):
        return _MORE_PAGES, (value, next_url)
    return _USE, value


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
    if _search_failed(data):
        raise FhirFetchError("FHIR server reported an error")
    return data


# --------------------------------------------------------------------------------------------
# One hook call's resolution, key by key
# --------------------------------------------------------------------------------------------


class _Call:
    """What one hook call has resolved so far, key by key: a prefetched value is judged
    (``take_sent``: used as sent, or a job to fetch it or its later pages), then what the jobs
    brought is added (``take_fetched``)."""

    def __init__(self, request: CDSRequest, resolver: PrefetchResolver, deadline: float):
        self.request = request
        self.resolver = resolver
        self.deadline = deadline
        self.data: dict[str, Any] = {}
        self.unavailable: dict[str, str] = {}
        self.incomplete: dict[str, str] = {}
        self.fetched: set[str] = set()
        self._server: _Server | str | None = None

    def server(self) -> _Server | str:
        """The trusted FHIR server, or why there is none (decided on first need)."""
        if self._server is None:
            self._server = self.resolver._server(self.request)
        return self._server

    def take_sent(self, key: str, spec: PrefetchKey, shape: Shape, value: Any) -> Callable[[], _Result] | None:
        """Judge a key's prefetched value (``shape``: what ``spec`` asks for): kept as sent, or the
        job that fetches it or its later pages (None: nothing to fetch; the key is settled or
        unavailable)."""
        verdict, detail = _judge_prefetched(value, shape)
        if verdict == _USE:
            self.data[key] = detail
            return None
        if verdict == _NONE:
            self.data[key] = None
            return None
        server = self.server()
        if verdict == _MORE_PAGES:
            first_page, next_url = detail
            if isinstance(server, str):
                self.data[key] = first_page
                self.incomplete[key] = f"later pages not read ({server})"
                return None
            return _bind(self.resolver._follow_pages, first_page, next_url, shape, server, self.deadline)
        if isinstance(server, str):
            self.unavailable[key] = server if detail == "not in prefetch" else f"{detail}; {server}"
            return None
        try:
            url = server.url(fill_template(spec.template, self.request.context))
        except TemplateError as exc:
            self.unavailable[key] = exc.reason
            return None
        if not server.owns(url):  # an id of "." or ".." would climb out of the base path
            self.unavailable[key] = _ID_NOT_USABLE
            return None
        return _bind(self.resolver._fetch, url, shape, server, self.deadline)

    def take_fetched(self, outcomes: Mapping[str, _Result | str]) -> None:
        for key, outcome in outcomes.items():
            if isinstance(outcome, str):
                self.unavailable[key] = outcome
                continue
            self.data[key] = outcome.value
            self.fetched.add(key)
            if outcome.incomplete:
                self.incomplete[key] = outcome.incomplete


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
        ``BadRequest`` when the request would mix two patients' data. Identity is screened
        resource by resource where the chart is read (``patient.chart.read_chart``)."""
        _refuse_patient_mismatch(request)
        call = _Call(request, self, time.monotonic() + self.settings.fhir_deadline)
        sent = request.prefetch if isinstance(request.prefetch, dict) else {}
        shapes = {key: shape_of(spec) for key, spec in keys.items()}
        jobs: dict[str, Callable[[], _Result]] = {}
        for key, spec in keys.items():
            job = call.take_sent(key, spec, shapes[key], sent.get(key, _MISSING))
            if job is not None:
                jobs[key] = job
        call.take_fetched(self._run(jobs, call.deadline, call.server))
        for key, shape in shapes.items():
            if shape.resource_type in _MEDICATION_ORDER_TYPES and isinstance(call.data.get(key), dict):
                self._add_referenced_medications(key, call)
        resolved = ResolvedPrefetch(
            data=call.data,
            unavailable=call.unavailable,
            incomplete=call.incomplete,
            fetched=frozenset(call.fetched),
        )
        if call.fetched or call.unavailable or call.incomplete:
            event(
                log,
                logging.INFO,
                "prefetch resolved",
                fetched=sorted(call.fetched),
                unavailable=call.unavailable,
                incomplete=call.incomplete,
                fhir_host=_host(request.fhirServer),
            )
        require(request.hook, keys, resolved.unavailable)
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

    def _add_referenced_medications(self, key: str, call: _Call) -> None:
        """Medications the key's orders name by reference and the Bundle does not hold, read one
        by one from the trusted server and added to the Bundle (``search.mode: include``)."""
        data, incomplete, deadline = call.data, call.incomplete, call.deadline
        bundle = data[key]
        if bundle.get("resourceType") != "Bundle":
            return
        wanted = _unresolved_medication_refs(bundle)
        if not wanted:
            return
        srv = call.server()
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
        outcomes = self._run(jobs, deadline, call.server)
        added, reasons = [], []
        for path, outcome in outcomes.items():
            if isinstance(outcome, str):
                reasons.append(outcome)
                continue
            added.append({"fullUrl": srv.url(path), "resource": outcome.value, "search": {"mode": "include"}})
        if added:
            data[key] = {**bundle, "entry": list(bundle.get("entry", [])) + added}
            call.fetched.add(key)
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
    for full_url, resource in iter_resources(bundle):
        if resource.get("resourceType") == "Medication":
            if isinstance(resource.get("id"), str):
                present.add(f"Medication/{resource['id']}")
            if full_url is not None:
                present.add(full_url)
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


def require(hook: str, keys: Mapping[str, PrefetchKey], unavailable: Mapping[str, str]) -> None:
    """``DataUnavailable`` (412) naming every required key that could not be had, and why."""
    missing = [k for k in sorted(keys) if keys[k].required and k in unavailable]
    if not missing:
        return
    described = [keys[k].description for k in missing]
    raise DataUnavailable(
        f"Cannot run {hook} decision support without {_and(described)}. Not obtained from "
        "prefetch or the FHIR server: " + "; ".join(f"{k} ({unavailable[k]})" for k in missing) + "."
    )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
