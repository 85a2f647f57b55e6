"""No patient id, token, FHIR query or response body in any log record, at any level, from this
code or from the HTTP libraries under it (urllib3 logs every request line at DEBUG)."""

from __future__ import annotations

import json
import logging

from cds_service.fhir.client import FhirClient
from cds_service.fhir.templates import fill_template
from cds_service.http.app import create_app
from cds_service.services import PREFETCH_KEYS
from tests.conftest import FROZEN_NOW
from tests.fhir_server import FhirTestServer
from tests.test_fhir_integration import PATIENT, PATIENT_VIEW, TOKEN, hook_call, patient_resources, settings_for


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler could print: the message, the raw msg and args, every extra field,
    and any exception or stack text."""
    fields = {key: value for key, value in vars(record).items() if key not in ("exc_info",)}
    fields["message"] = record.getMessage()
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return json.dumps(fields, default=repr)


def forbidden_strings() -> list[str]:
    context = {"patientId": PATIENT, "userId": "Practitioner/nephro-1"}
    queries = {fill_template(spec.template, context).partition("?")[2] for spec in PREFETCH_KEYS.values()}
    return [PATIENT, TOKEN, "patient=", "_offset=", *sorted(q for q in queries if q)]


def test_hook_calls_that_fetch_leave_no_patient_id_token_or_query_in_any_log_record_at_debug(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with FhirTestServer(patient_resources(), max_page_size=2, require_token=TOKEN) as fhir:
        client = create_app(settings_for(tmp_path, fhir), now=lambda: FROZEN_NOW).test_client()
        fetched = client.post(PATIENT_VIEW, json=hook_call(fhir))  # every key fetched, pages followed
        refused = hook_call(fhir)
        refused["fhirAuthorization"]["access_token"] = TOKEN + "-expired"  # every GET answered 401
        failed = client.post(PATIENT_VIEW, json=refused)
    assert fetched.status_code == 200 and failed.status_code == 412
    lines = [record for record in caplog.records if record.name == "cds_service.request"]
    events = [event["event"] for record in lines for event in getattr(record, "events", [])]
    assert (
        len(lines) == 2 and "prefetch resolved" in events
    )  # the capture works: the FHIR layer's events are on the request lines
    for record in caplog.records:
        text = record_text(record)
        for forbidden in forbidden_strings():
            assert forbidden not in text, (record.name, forbidden)


def test_library_warnings_keep_their_level_but_lose_the_url(caplog):
    FhirClient(connect_timeout=1, read_timeout=1, max_response_bytes=1024).close()
    caplog.set_level(logging.DEBUG)
    url = f"/fhir/Condition?patient={PATIENT}"
    logging.getLogger("urllib3.connection").warning("Failed to parse headers (url=%s): %s", url, "oops")
    logging.getLogger("urllib3.connectionpool").debug('"GET %s HTTP/1.1" 200 None', url)
    (record,) = [r for r in caplog.records if r.name.startswith("urllib3")]
    assert record.levelno == logging.WARNING and record.name == "urllib3.connection"
    assert PATIENT not in record_text(record) and "patient=" not in record_text(record)
    assert "details withheld" in record.getMessage()
