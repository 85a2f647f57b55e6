"""Generic readers of raw FHIR JSON: the bottom layer every other reader builds on.

Everything here reads plain dicts defensively: a missing or malformed member gives ``None`` or
an empty result, never an exception. No clinical knowledge lives here (code sets, classes and
thresholds are in ``cds_service.patient``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


def parse_fhir_datetime(value: Any) -> datetime | None:
    """FHIR date/dateTime/instant -> aware datetime (UTC when no zone is given); else ``None``.

    Partial dates ("2019", "2019-11") take the first instant of the period.
    """
    if not isinstance(value, str) or not value:
        return None
    try:  # the usual full dateTime or instant, at once ("Z" is read since Python 3.11)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is not None and len(value) > 10:
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    text = value.strip()
    match = _PARTIAL_DATE.match(text)
    try:
        if match:
            year, month, day = match.groups()
            parsed = datetime(int(year), int(month or 1), int(day or 1))
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def status_code(value: Any) -> str | None:
    """A status that is a plain code (R4 ``status``, DSTU2 ``clinicalStatus``) or a CodeableConcept."""
    if isinstance(value, str):
        return value.strip().lower() or None
    if isinstance(value, dict):
        for coding in codings(value):
            code = coding.get("code")
            if isinstance(code, str) and code.strip():
                return code.strip().lower()
        text = value.get("text")
        if isinstance(text, str) and text.strip():
            return text.strip().lower()
    return None


def codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding")
    if isinstance(codings, dict):  # tolerate a single coding sent as an object
        codings = [codings]
    if not isinstance(codings, list):
        return []
    return [c for c in codings if isinstance(c, dict)]


def texts(concept: Any) -> list[str]:
    """Human-readable strings of a CodeableConcept: text first, then coding displays."""
    out: list[str] = []
    if isinstance(concept, dict):
        text = concept.get("text")
        if isinstance(text, str) and text.strip():
            out.append(text.strip())
        for coding in codings(concept):
            display = coding.get("display")
            if isinstance(display, str) and display.strip():
                out.append(display.strip())
    return out


def as_list(value: Any) -> list[Any]:
    """A JSON array member, or [] when it is missing or of another type."""
    return value if isinstance(value, list) else []


_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def clean_text(text: str) -> str:
    """Drop zero-width characters (Synthea writes one into an eGFR display) and squeeze spaces."""
    return " ".join(text.translate(_ZERO_WIDTH).split())


def resource_key(resource: Mapping[str, Any]) -> str | None:
    rtype = resource.get("resourceType")
    rid = resource.get("id")
    if isinstance(rtype, str) and isinstance(rid, str) and rid:
        return f"{rtype}/{rid}"
    return None


# ------------------------------------------------------------------------------------------
# Reference index (Medications elsewhere in a bundle or the prefetch)
# ------------------------------------------------------------------------------------------


class ResourceIndex:
    """Find a resource by reference: ``Type/id``, absolute URL, or ``urn:uuid:``."""

    def __init__(self, resources: Iterable[tuple[str | None, Mapping[str, Any]]] = ()):
        self._by_ref: dict[str, Mapping[str, Any]] = {}
        for full_url, resource in resources:
            self.add(resource, full_url)

    def add(self, resource: Mapping[str, Any], full_url: str | None = None) -> None:
        key = resource_key(resource)
        if key:
            self._by_ref.setdefault(key, resource)
        if isinstance(full_url, str) and full_url:
            self._by_ref.setdefault(full_url, resource)

    def update(self, other: ResourceIndex | Mapping[str, Mapping[str, Any]] | None) -> None:
        if other is None:
            return
        items = other._by_ref.items() if isinstance(other, ResourceIndex) else other.items()
        for ref, resource in items:
            self._by_ref.setdefault(ref, resource)

    def resolve(self, reference: Any) -> Mapping[str, Any] | None:
        if not isinstance(reference, str) or not reference:
            return None
        found = self._by_ref.get(reference)
        if found is not None:
            return found
        # An absolute URL to "<base>/Medication/<id>" (optionally "/_history/<v>").
        parts = reference.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) >= 2:
            return self._by_ref.get(f"{parts[-2]}/{parts[-1]}")
        return None

    def as_mapping(self) -> dict[str, Mapping[str, Any]]:
        return dict(self._by_ref)

    def __len__(self) -> int:
        return len(self._by_ref)


def iter_resources(value: Any) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(fullUrl, resource) for a prefetch value: a resource, a Bundle of them, or nothing.

    Entries with ``search.mode: outcome`` and OperationOutcomes are skipped; a nested Bundle
    (e.g. a batch-response) is walked.
    """
    if not isinstance(value, dict):
        return
    rtype = value.get("resourceType")
    if rtype == "Bundle":
        for entry in as_list(value.get("entry")):
            if not isinstance(entry, dict):
                continue
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                continue
            search = entry.get("search")
            if isinstance(search, dict) and search.get("mode") == "outcome":
                continue
            if resource.get("resourceType") == "Bundle":
                yield from iter_resources(resource)
            else:
                full_url = entry.get("fullUrl")
                yield (full_url if isinstance(full_url, str) else None), resource
    elif isinstance(rtype, str) and rtype != "OperationOutcome":
        yield None, value


# --------------------------------------------------------------------------------------------
# Whose resource is it?
# --------------------------------------------------------------------------------------------


def patient_references(patient_id: str, entries: Iterable[tuple[str | None, Mapping[str, Any]]]) -> frozenset[str]:
    """Every reference that names this patient: ``Patient/<id>``, and the ``fullUrl`` of a Patient
    entry with this id (``urn:uuid:...`` in transaction bundles)."""
    refs = {f"Patient/{patient_id}", f"urn:uuid:{patient_id}"}
    for full_url, resource in entries:
        if full_url and resource.get("resourceType") == "Patient" and resource.get("id") == patient_id:
            refs.add(full_url)
    return frozenset(refs)


def _names_patient(reference: str, patient_id: str, refs: frozenset[str]) -> bool:
    if reference in refs:
        return True
    if reference.startswith("urn:"):
        return False  # a urn that is not this patient's entry
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] == patient_id


def is_about_patient(resource: Mapping[str, Any], patient_id: str, refs: frozenset[str]) -> bool:
    """False when a resource is about another patient than ``patient_id``: a Patient with another
    id, or a ``subject`` / ``patient`` reference (R4, R5, DSTU2) to someone else. A resource that
    names no patient at all (a Medication) is not about anyone else."""
    if not patient_id:
        return True
    subject = resource.get("subject")
    if (
        type(subject) is dict
        and subject.get("reference") == "Patient/" + patient_id
        and resource.get("resourceType") != "Patient"
    ):
        return True  # the usual case, decided at once (the same answer as below)
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return not isinstance(rid, str) or rid == patient_id
    for member in ("subject", "patient"):
        target = resource.get(member)
        if isinstance(target, dict) and isinstance(target.get("reference"), str) and target["reference"].strip():
            return _names_patient(target["reference"].strip(), patient_id, refs)
    return True


def names_patient(resource: Mapping[str, Any], patient_id: str, refs: frozenset[str]) -> bool:
    """True when a resource is positively about ``patient_id``: the Patient with that id, or a
    ``subject`` / ``patient`` reference that names them (a Medication names nobody)."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient_id
    for member in ("subject", "patient"):
        target = resource.get(member)
        if isinstance(target, dict) and isinstance(target.get("reference"), str) and target["reference"].strip():
            return _names_patient(target["reference"].strip(), patient_id, refs)
    return False
