"""Reading a chart in one pass (cds_service/patient/chart.py): identity screened and resources
selected in the same pass, only what the checks read normalised or classified, and the reading a
pure function of the prefetch and whose chart it is."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.fhir.prefetch import ResolvedPrefetch
from cds_service.patient import chart as chart_module
from cds_service.patient.analytes import ANALYTES
from cds_service.patient.chart import OTHER_PATIENT, read_chart

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PATIENT = "chart-patient"
LOINC = "http://loinc.org"


def _observation(rid, code, value, unit, days_ago, *, patient=PATIENT, status="final"):
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": (NOW - timedelta(days=days_ago)).isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def _order(rid, text, status="active", patient=PATIENT):
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {"text": text},
    }


def _condition(rid, text, patient=PATIENT):
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient}"},
    }


def _bundle(*resources):
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _read(**keys):
    return read_chart(ResolvedPrefetch(dict(keys), {}), PATIENT)


def _labs_chart(observations: int) -> dict:
    """Calcium, PTH and urea nitrogen (a code no check reads), newest first every third day."""
    resources = []
    for i in range(observations):
        code, value, unit = [("17861-6", 9.0, "mg/dL"), ("2731-8", 300.0, "pg/mL"), ("6299-2", 40.0, "mg/dL")][i % 3]
        resources.append(_observation(f"o{i}", code, value + i % 7, unit, days_ago=i))
    return _bundle(*resources)


@pytest.fixture
def normalised(monkeypatch):
    """Counts the Observations normalised (unit conversion, plausibility)."""
    calls: list[str] = []
    real = chart_module.lab_result

    def counting(resource, *args):
        calls.append(resource["id"])
        return real(resource, *args)

    monkeypatch.setattr(chart_module, "lab_result", counting)
    return calls


# --- read only what a check can use ------------------------------------------------------------


@pytest.mark.parametrize("observations", [30, 300, 3000])
def test_only_as_many_results_as_the_checks_read_are_normalised_whatever_the_size_of_the_chart(
    observations, normalised
):
    chart = _read(labs=_labs_chart(observations))
    assert len(normalised) == ANALYTES["calcium"].series + ANALYTES["pth"].series
    assert [lab.resource_id for lab in chart.labs["calcium"]] == ["Observation/o0"]  # the newest
    assert [lab.resource_id for lab in chart.labs["pth"]] == ["Observation/o1", "Observation/o4"]
    assert set(chart.labs) == {"calcium", "pth"}  # urea nitrogen: never read


def test_newest_results_are_found_whatever_the_order_they_are_sent_in(normalised):
    bundle = _labs_chart(90)
    random.Random(3).shuffle(bundle["entry"])
    chart = _read(labs=bundle)
    assert [lab.resource_id for lab in chart.labs["pth"]] == ["Observation/o1", "Observation/o4"]


def test_an_unusable_newer_result_is_kept_beside_the_older_usable_one(normalised):
    newer = _observation("bad", "17861-6", 9.9, "furlongs", days_ago=1)
    older = _observation("good", "17861-6", 9.4, "mg/dL", days_ago=3)
    oldest = _observation("old", "17861-6", 9.1, "mg/dL", days_ago=9)
    chart = _read(calcium=_bundle(oldest, older, newer))
    assert [lab.resource_id for lab in chart.labs["calcium"]] == ["Observation/good"]
    assert [u.resource_id for u in chart.unusable_labs] == ["Observation/bad"]
    assert "Observation/old" not in normalised  # nothing older than what the checks read


def test_an_observation_sent_under_two_keys_counts_once():
    albumin = _observation("alb", "1751-7", 3.1, "g/dL", days_ago=2)
    chart = _read(albumin=_bundle(albumin), everything=_bundle(copy.deepcopy(albumin)))
    assert [lab.resource_id for lab in chart.labs["albumin"]] == ["Observation/alb"]


def test_stopped_and_completed_orders_are_not_classified(monkeypatch):
    classified: list[str] = []
    real = chart_module.classify_medication

    def counting(resource, catalog):
        classified.append(resource["id"])
        return real(resource, catalog)

    monkeypatch.setattr(chart_module, "classify_medication", counting)
    chart = _read(
        meds=_bundle(
            _order("now", "warfarin 5 MG Oral Tablet"),
            _order("done", "calcium acetate 667 MG Oral Capsule", status="completed"),
            _order("stopped", "calcitriol 0.25 MCG Oral Capsule", status="stopped"),
        )
    )
    assert classified == ["now"]
    assert [o.resource_id for o in chart.orders] == ["MedicationRequest/now"]


# --- identity in the same pass ---------------------------------------------------------------


def test_a_stray_resource_is_dropped_alone_and_counted_per_key():
    chart = _read(
        conditions=_bundle(_condition("mine", "Calciphylaxis"), _condition("theirs", "Calciphylaxis", "someone-else")),
        calcium=_bundle(_observation("ca-theirs", "17861-6", 12.9, "mg/dL", days_ago=1, patient="someone-else")),
    )
    assert [c.resource_id for c in chart.conditions] == ["Condition/mine"]
    assert chart.other_patient == {"conditions": 1, "calcium": 1}
    assert chart.unavailable == {"calcium": OTHER_PATIENT} and "calcium" not in chart.labs


def test_a_key_holding_nothing_about_the_patient_contributes_nothing_not_even_its_medications():
    medication = {"resourceType": "Medication", "id": "m1", "code": {"text": "warfarin"}}
    theirs = {**_order("o1", "warfarin"), "subject": {"reference": "Patient/someone-else"}}
    chart = _read(meds=_bundle(theirs, medication))
    assert chart.unavailable == {"meds": OTHER_PATIENT}
    assert chart.orders == () and chart.medication_catalog == {}


def test_a_reference_by_the_bundles_urn_is_resolved_through_the_patients_entry():
    urn_mine, urn_theirs = "urn:uuid:0000-mine", "urn:uuid:0000-theirs"
    everything = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": urn_mine, "resource": {"resourceType": "Patient", "id": PATIENT, "birthDate": "1950-02-03"}},
            {"fullUrl": urn_theirs, "resource": {"resourceType": "Patient", "id": "someone-else"}},
            {"resource": {**_condition("mine", "Calciphylaxis"), "subject": {"reference": urn_mine}}},
            {"resource": {**_condition("theirs", "Calciphylaxis"), "subject": {"reference": urn_theirs}}},
        ],
    }
    chart = _read(everything=everything)
    assert [c.resource_id for c in chart.conditions] == ["Condition/mine"]
    assert chart.other_patient == {"everything": 2}  # their Condition and their Patient
    assert str(chart.birth_date) == "1950-02-03"


def test_without_a_patient_id_nothing_is_screened():
    chart = read_chart(ResolvedPrefetch({"conditions": _bundle(_condition("c", "Calciphylaxis"))}, {}), "")
    assert [c.kind for c in chart.conditions] == ["calciphylaxis"] and chart.other_patient == {}


# --- a pure function of its input --------------------------------------------------------------


def test_reading_changes_nothing_it_was_given_and_reads_the_same_twice():
    prefetch = {
        "labs": _labs_chart(40),
        "conditions": _bundle(_condition("c1", "End stage renal disease on dialysis")),
        "meds": _bundle(_order("m1", "warfarin 5 MG Oral Tablet")),
    }
    sent = copy.deepcopy(prefetch)
    first = read_chart(ResolvedPrefetch(prefetch, {}), PATIENT)
    second = read_chart(ResolvedPrefetch(prefetch, {}), PATIENT)
    assert prefetch == sent
    assert first == second


_RESOURCES = st.sampled_from(
    [
        _observation("a", "17861-6", 9.5, "mg/dL", 1),
        _observation("b", "17861-6", 2.4, "mmol/L", 2),
        _observation("c", "17861-6", 9.5, "mg/dL", 3, patient="other"),
        _observation("d", "2731-8", 310.0, "pg/mL", 4, status="preliminary"),
        _condition("e", "Calciphylaxis"),
        _condition("f", "Atrial fibrillation", patient="other"),
        _order("g", "warfarin"),
        _order("h", "calcium carbonate", status="completed"),
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]},
        {"resourceType": "Medication", "id": "i", "code": {"text": "sevelamer"}},
        {"no": "resourceType"},
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_RESOURCES, max_size=6), min_size=1, max_size=4), st.randoms())
def test_the_reading_does_not_depend_on_the_order_of_resources_within_a_key(keys, rng):
    prefetch = {f"k{i}": _bundle(*resources) for i, resources in enumerate(keys)}
    shuffled = copy.deepcopy(prefetch)
    for value in shuffled.values():
        rng.shuffle(value["entry"])
    first, second = (read_chart(ResolvedPrefetch(p, {}), PATIENT) for p in (prefetch, shuffled))
    assert first.labs == second.labs
    assert sorted(c.resource_id for c in first.conditions) == sorted(c.resource_id for c in second.conditions)
    assert sorted(o.resource_id for o in first.orders) == sorted(o.resource_id for o in second.orders)
    assert first.other_patient == second.other_patient and first.unavailable == second.unavailable


# --- a very large body, sieved as it is decoded ------------------------------------------------


def _sieved(prefetch: dict, patient_id: str = PATIENT) -> dict:
    """The prefetch as the decoder hands it on after offering each Bundle's entries to the sieve."""
    sieve = chart_module.EntrySieve(patient_id)
    out = {}
    for key, value in prefetch.items():
        if isinstance(value, dict) and isinstance(value.get("entry"), list):
            for entry in value["entry"]:
                sieve.offer(key, entry)
            out[key] = {**value, "entry": sieve.kept(key)}
        else:
            out[key] = value
    return out if sieve.exact else prefetch  # as the decoder does: not exact, read whole


def _same_reading(prefetch: dict) -> None:
    whole = read_chart(ResolvedPrefetch(prefetch, {}), PATIENT)
    sieved = read_chart(ResolvedPrefetch(_sieved(prefetch), {}), PATIENT)
    assert sieved.labs == whole.labs
    assert sieved.unusable_labs == whole.unusable_labs
    assert sieved.other_patient == whole.other_patient and sieved.unavailable == whole.unavailable
    assert sieved.conditions == whole.conditions and sieved.orders == whole.orders


def test_the_sieve_keeps_only_what_the_checks_read_of_a_large_chart():
    prefetch = {"labs": _labs_chart(3000)}
    kept = _sieved(prefetch)["labs"]["entry"]
    # the newest calcium and the two newest PTH: nothing else
    assert len(kept) == ANALYTES["calcium"].series + ANALYTES["pth"].series
    _same_reading(prefetch)


_SIEVED_RESOURCES = st.builds(
    lambda rid, code_unit, value, day, patient, status, dated: {
        **_observation(f"o{rid}", code_unit[0], value, code_unit[1], day, patient=patient, status=status),
        **({} if dated else {"effectiveDateTime": None}),
    },
    st.integers(0, 12),  # few ids: the same resource sent twice, with other values
    st.sampled_from(
        [("17861-6", "mg/dL"), ("17861-6", "furlongs"), ("2731-8", "pg/mL"), ("1751-7", "g/dL"), ("6299-2", "mg/dL")]
    ),
    st.sampled_from([3.5, 9.4, 300.0, 1e9]),  # 1e9: implausible, unusable
    st.integers(0, 6),  # days ago: equal times are common
    st.sampled_from([PATIENT, PATIENT, PATIENT, "someone-else"]),
    st.sampled_from(["final", "final", "amended", "preliminary"]),
    st.booleans(),
)


def _clean(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if v is not None}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_SIEVED_RESOURCES.map(_clean), max_size=25), min_size=1, max_size=3))
def test_reading_the_sieved_entries_gives_the_reading_of_the_whole_bundles(keys):
    _same_reading({f"k{i}": _bundle(*resources) for i, resources in enumerate(keys)})


def test_a_key_of_another_patients_results_and_this_patients_unread_ones_stays_this_patients():
    urea = _observation("urea", "6299-2", 40.0, "mg/dL", 1)
    theirs = _observation("theirs", "17861-6", 9.1, "mg/dL", 1, patient="someone-else")
    prefetch = {"calcium": _bundle(urea, *[copy.deepcopy(urea) | {"id": f"u{i}"} for i in range(5)], theirs)}
    _same_reading(prefetch)
    assert "calcium" not in read_chart(ResolvedPrefetch(_sieved(prefetch), {}), PATIENT).unavailable
