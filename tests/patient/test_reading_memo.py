"""Readings remembered per exact resource JSON (cds_service/patient/memo.py): a chart sent again
is read from memory, and nothing that differs in any way ever shares a reading."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from cds_service.fhir.reading import ResourceIndex
from cds_service.patient import build
from cds_service.patient.build import build_record, medication_order
from cds_service.patient.memo import ReadingMemo, resource_json

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PATIENT = "memo-patient"


@pytest.fixture(autouse=True)
def _empty_memos():
    for memo in (
        build.OBSERVATIONS,
        build.CONDITIONS,
        build.ALLERGIES,
        build.MEDICATIONS,
        build.PREFETCH_VALUES,
        build.CHARTS,
    ):
        memo.clear()
    yield


def _calcium(value, *, unit="mg/dL", rid="ca-1"):
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": "2026-11-29T08:00:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def _order(text="calcium acetate 667 MG Oral Capsule", rid="mr-1"):
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "medicationCodeableConcept": {"text": text},
    }


def _record(*resources):
    bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}
    return build_record({"patientId": PATIENT}, {"chart": bundle}, NOW)


def test_a_chart_sent_again_is_read_from_memory_with_the_same_result():
    first = _record(_calcium(9.4), _order())
    misses = build.OBSERVATIONS.misses + build.MEDICATIONS.misses
    second = _record(_calcium(9.4), _order())
    assert build.OBSERVATIONS.misses + build.MEDICATIONS.misses == misses  # nothing read afresh
    assert build.PREFETCH_VALUES.hits == 1  # the whole Bundle, by one encoding
    assert second.labs == first.labs
    assert second.medications == first.medications
    assert second.medications[0].raw is not first.medications[0].raw  # each call's own resource


def test_a_bundle_with_one_new_resource_reads_only_that_one_afresh():
    _record(_calcium(9.4, rid="a"), _calcium(9.5, rid="b"), _order())
    misses = build.OBSERVATIONS.misses
    record = _record(_calcium(9.4, rid="a"), _calcium(9.5, rid="b"), _calcium(9.9, rid="c"), _order())
    assert build.OBSERVATIONS.misses == misses + 1
    assert build.OBSERVATIONS.hits == 2 and build.MEDICATIONS.hits == 1
    assert sorted(r.value for r in record.labs["calcium"]) == [9.4, 9.5, 9.9]


def test_any_changed_member_is_read_afresh():
    assert _record(_calcium(9.4)).labs["calcium"][0].value == 9.4
    assert _record(_calcium(9.5)).labs["calcium"][0].value == 9.5
    converted = _record(_calcium(2.4, unit="mmol/L")).labs["calcium"][0]
    assert converted.original_unit == "mmol/L" and converted.value == pytest.approx(9.62, abs=0.01)


def test_member_order_and_number_type_are_part_of_the_key():
    a = _calcium(9)
    b = _calcium(9.0)
    assert resource_json(a) != resource_json(b)
    reordered = dict(reversed(list(a.items())))
    assert resource_json(reordered) != resource_json(a)
    assert _record(reordered).labs["calcium"][0].value == 9


def test_json_holding_null_or_an_unrepresentable_number_is_never_a_key():
    assert resource_json({"resourceType": "Observation", "value": None}) is None
    assert resource_json({"resourceType": "Observation", "value": float("inf")}) is None
    assert resource_json({"resourceType": "Observation", "value": float("nan")}) is None
    # The infinite value is still named as implausible, not mistaken for a missing one.
    record = _record(_calcium(float("inf")))
    assert not record.labs
    assert [u.reason for u in record.unusable_labs] == ["no numeric valueQuantity"]
    _record(_calcium(None))
    assert len(build.OBSERVATIONS) == 0


def test_the_order_returned_carries_this_calls_resource_not_a_remembered_one():
    index = ResourceIndex()
    first_resource = _order()
    second_resource = copy.deepcopy(first_resource)
    first = medication_order(first_resource, index)
    second = medication_order(second_resource, index)
    assert first is not None and second is not None
    assert first.raw is first_resource
    assert second.raw is second_resource
    assert second.drug_classes == first.drug_classes == frozenset({"calcium_binder"})
    assert build.MEDICATIONS.hits == 1


def test_an_order_naming_its_medication_by_reference_is_always_classified_afresh():
    order = {
        "resourceType": "MedicationRequest",
        "id": "mr-ref",
        "status": "active",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "medicationReference": {"reference": "Medication/m1"},
    }
    calcium = ResourceIndex([(None, {"resourceType": "Medication", "id": "m1", "code": {"text": "calcium acetate"}})])
    sevelamer = ResourceIndex([(None, {"resourceType": "Medication", "id": "m1", "code": {"text": "sevelamer"}})])
    first = medication_order(order, calcium)
    second = medication_order(order, sevelamer)
    assert first is not None and first.drug_classes == frozenset({"calcium_binder"})
    assert second is not None and second.drug_classes == frozenset({"non_calcium_binder"})
    assert len(build.MEDICATIONS) == 0


def test_a_reading_never_crosses_to_another_patient():
    mine = _calcium(9.4)
    theirs = copy.deepcopy(mine)
    theirs["subject"] = {"reference": "Patient/someone-else"}
    _record(mine)
    assert not _record(theirs).labs  # identity is screened on every call, before any memory


def test_the_memo_is_bounded():
    memo: ReadingMemo[int] = ReadingMemo("test", 4)
    for i in range(50):
        memo.put(str(i).encode(), i)
    assert len(memo) <= 8
    assert memo.get(b"49") == 49
    assert memo.get(b"0") is None


def test_an_entry_still_in_use_survives_a_generation_swap():
    memo: ReadingMemo[int] = ReadingMemo("test", 3)
    memo.put(b"kept", 1)
    for i in range(3):
        memo.put(str(i).encode(), i)  # the young generation fills and becomes the old one
        assert memo.get(b"kept") == 1  # read again: promoted each time
    for i in range(3, 9):
        memo.put(str(i).encode(), i)
    assert memo.get(b"kept") is None  # not read for two generations: gone


def test_a_chart_larger_than_the_limit_is_read_without_the_memo(monkeypatch):
    monkeypatch.setattr(build, "MEMO_CHART_LIMIT", 2)
    record = _record(_calcium(9.4, rid="a"), _calcium(9.6, rid="b"), _order())
    assert record.labs["calcium"][0].value in (9.4, 9.6) and record.medications
    assert len(build.OBSERVATIONS) == len(build.MEDICATIONS) == len(build.PREFETCH_VALUES) == 0


def test_the_memo_is_bounded_in_bytes_too():
    memo: ReadingMemo[int] = ReadingMemo("test", 1000, max_bytes=1000)
    for i in range(100):
        memo.put(bytes(300) + str(i).encode(), i)
    assert memo.key_bytes() <= 2 * 1000
    memo.put(bytes(5000), 1)  # larger than a generation: not kept at all
    assert memo.get(bytes(5000)) is None


def test_a_kept_key_holds_its_json_and_not_the_encoders_buffer():
    import tracemalloc

    memo: ReadingMemo[int] = ReadingMemo("test", 1000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            key = resource_json({"resourceType": "Observation", "id": f"o-{i}"})
            assert key is not None
            memo.put(key, i)
        del key
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 200 * 1024  # about 100 bytes a key (orjson's own buffers are 8 KiB each)


def _procedure(performed: str):
    return {
        "resourceType": "Procedure",
        "id": "hd-1",
        "status": "completed",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "302497006", "display": "Hemodialysis"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "performedDateTime": performed,
    }


def test_a_chart_read_from_memory_still_reads_what_depends_on_the_time_of_the_call():
    """Same chart, byte for byte, seen by the resolver: the second call comes from the chart
    memo, yet a dialysis session's recency and an order's status are judged at its own time."""
    from cds_service.fhir.resolver import ResolvedPrefetch

    chart = {"resourceType": "Bundle", "entry": [{"resource": _procedure("2026-11-20T08:00:00Z")}]}
    encoded = {"chart": resource_json(chart, compact=True)}

    def record(now):
        prefetch = ResolvedPrefetch(data={"chart": chart}, unavailable={}, screened_for=PATIENT, encoded=encoded)
        return build_record({"patientId": PATIENT}, prefetch, now)

    recent = record(NOW)
    hits = build.CHARTS.hits
    much_later = record(NOW.replace(year=2028))
    assert build.CHARTS.hits == hits + 1  # read from memory
    assert [c.kind for c in recent.conditions] == ["dialysis"]
    assert much_later.conditions == ()  # a session two years ago is not current dialysis
