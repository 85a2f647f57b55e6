"""build_record and orders_under_review: selection from raw JSON, labs, derived values, hooks."""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cds_service.checks.labs import ca_x_p, corrected_calcium
from cds_service.fhir.prefetch import ResolvedPrefetch
from cds_service.fhir.reading import iter_resources
from cds_service.patient import terminology as term
from cds_service.patient.analytes import ANALYTES
from cds_service.patient.build import build_record, orders_under_review
from cds_service.patient.chart import read_lab
from cds_service.patient.model import STALE_AFTER, LabResult, UnusableLab
from cds_service.patient.units import ALBUMIN_PAIRING_WINDOW, CA_X_P_PAIRING_WINDOW
from tests.conftest import load_shared, skip_without_shared

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
# ../shared/fhir-data beside the repository (never copied into it); tests skip when absent.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "fhir-data"
CONTEXT = {"patientId": "p1", "userId": "Practitioner/u1"}


def days_ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def obs(rid, loinc, value, unit, when=None, status="final", **extra):
    resource = {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "code": {"coding": [{"system": term.LOINC, "code": loinc}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": value, "unit": unit, "system": term.UCUM, "code": unit},
        **extra,
    }
    if when is not None:
        resource["effectiveDateTime"] = when
    return resource


def bundle(*resources, full_urls=None):
    entries = []
    for i, resource in enumerate(resources):
        entry = {"resource": resource}
        if full_urls:
            entry["fullUrl"] = full_urls[i]
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def build(prefetch=None, unavailable=None, context=CONTEXT):
    return build_record(context, ResolvedPrefetch(prefetch or {}, unavailable or {}), NOW)


def med(rid, rxnorm, display, status="active"):
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": term.RXNORM, "code": rxnorm, "display": display}]},
    }


def condition(rid, system, code, display, clinical="active"):
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"code": clinical}]},
        "verificationStatus": {"coding": [{"code": "confirmed"}]},
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
    }


# --- labs ---------------------------------------------------------------------------------


def test_latest_result_wins_whatever_the_input_order():
    record = build(
        {
            "calcium": bundle(
                obs("old", "17861-6", 9.0, "mg/dL", days_ago(20)),
                obs("new", "17861-6", 10.6, "mg/dL", days_ago(1)),
                obs("mid", "17861-6", 9.8, "mg/dL", days_ago(10)),
            )
        }
    )
    assert [r.resource_id for r in record.labs["calcium"]] == ["Observation/new"]  # the checks read the latest
    assert record.latest("calcium").value == 10.6


@pytest.mark.parametrize("status", ["preliminary", "registered", "entered-in-error", "cancelled", None])
def test_only_final_amended_corrected_results_are_used(status):
    bad = obs("bad", "17861-6", 12.0, "mg/dL", days_ago(1), status=status)
    good = obs("good", "17861-6", 9.4, "mg/dL", days_ago(5))
    record = build({"calcium": bundle(bad, good)})
    assert record.latest("calcium").resource_id == "Observation/good"
    assert len(record.labs["calcium"]) == 1


@pytest.mark.parametrize("status", ["final", "amended", "corrected"])
def test_final_amended_and_corrected_are_used(status):
    record = build({"calcium": bundle(obs("x", "17861-6", 9.4, "mg/dL", days_ago(1), status=status))})
    assert record.latest("calcium").status == status


def test_effective_time_falls_back_through_period_instant_and_issued():
    # Albumin: the checks read several (the one nearest a calcium), so the order shows in full.
    period = obs("period", "1751-7", 3.0, "g/dL", effectivePeriod={"start": days_ago(3)})
    instant = obs("instant", "1751-7", 3.1, "g/dL", effectiveInstant=days_ago(2))
    issued = obs("issued", "1751-7", 3.2, "g/dL", issued=days_ago(1))
    undated = obs("undated", "1751-7", 3.3, "g/dL")
    record = build({"albumin": bundle(undated, period, instant, issued)})
    assert [r.resource_id.split("/")[1] for r in record.labs["albumin"]] == ["issued", "instant", "period", "undated"]
    assert record.labs["albumin"][-1].effective is None


def test_units_are_normalised_and_originals_kept():
    record = build(
        {
            "calcium": bundle(obs("ca", "2000-8", 2.6, "mmol/L", days_ago(1))),
            "pth": bundle(obs("pth", "14866-8", 50.0, "pmol/L", days_ago(1))),
        }
    )
    calcium = record.latest("calcium")
    assert calcium.value == pytest.approx(2.6 * 4.008)
    assert (calcium.unit, calcium.original_value, calcium.original_unit) == ("mg/dL", 2.6, "mmol/L")
    assert record.latest("pth").value == pytest.approx(471.5)
    assert record.latest("pth").unit == "pg/mL"


def test_a_result_with_an_unknown_unit_is_not_used_and_is_noted():
    record = build(
        {
            "calcium": bundle(
                obs("odd", "17861-6", 4.8, "mmol/mol", days_ago(1)), obs("ok", "17861-6", 9.1, "mg/dL", days_ago(9))
            )
        }
    )
    assert record.latest("calcium").resource_id == "Observation/ok"
    [note] = record.unusable_labs
    assert (note.analyte, note.resource_id) == ("calcium", "Observation/odd")
    assert "mmol/mol" in note.reason
    # The result before it is not the latest any more: never acted on as if it were current.
    assert note.effective is not None
    assert record.superseded_by(record.latest("calcium")) == note
    assert record.is_stale("calcium")


def test_an_unreadable_result_older_than_the_one_used_changes_nothing():
    record = build(
        {
            "calcium": bundle(
                obs("ok", "17861-6", 9.1, "mg/dL", days_ago(1)), obs("odd", "17861-6", 4.8, "mmol/mol", days_ago(9))
            )
        }
    )
    assert record.superseded_by(record.latest("calcium")) is None
    assert not record.is_stale("calcium")


def test_a_calcium_in_meq_per_litre_is_read_in_mg_per_dl():
    record = build({"calcium": bundle(obs("meq", "17861-6", 5.6, "mEq/L", days_ago(1)))})
    lab = record.latest("calcium")
    assert lab.value == pytest.approx(11.2224) and (lab.original_value, lab.original_unit) == (5.6, "mEq/L")
    assert record.unusable_labs == ()


def _egfr_text(text):
    return build(
        {
            "egfr": bundle(
                {
                    "resourceType": "Observation",
                    "id": "e",
                    "status": "final",
                    "code": {"coding": [{"system": term.LOINC, "code": "98979-8"}]},
                    "valueString": text,
                }
            )
        }
    )


def test_a_result_without_a_numeric_value_is_noted():
    record = _egfr_text("pending")
    assert record.labs == {}
    assert record.unusable_labs[0].reason == "a text result that is not a number"


def test_a_text_result_with_a_comparator_is_read_with_the_comparator_kept_and_the_unit_assumed():
    (egfr,) = _egfr_text(">60").labs["egfr"]
    assert (egfr.value, egfr.comparator, egfr.unit) == (60.0, ">", "mL/min/{1.73_m2}")
    assert egfr.original_unit == "mL/min/{1.73_m2}, unit not stated"
    assert not _egfr_text(">60").on_dialysis  # ">60" is not below 15


def test_a_text_result_with_its_unit_is_converted():
    record = build(
        {
            "phosphate": bundle(
                {
                    "resourceType": "Observation",
                    "id": "p",
                    "status": "final",
                    "code": {"coding": [{"system": term.LOINC, "code": "2777-1"}]},
                    "valueString": "< 0,8 mmol/L",
                }
            )
        }
    )
    (phosphate,) = record.labs["phosphate"]
    assert phosphate.comparator == "<" and phosphate.value == pytest.approx(0.8 * 3.097)


@pytest.mark.parametrize(("value", "unit"), [(1e30, "mg/dL"), (-4.0, "mg/dL"), (240.0, "mg/dL"), (1e300, "mmol/L")])
def test_an_implausible_calcium_is_ignored_and_named_never_used(value, unit):
    record = build({"calcium": bundle(obs("huge", "17861-6", value, unit, days_ago(1)))})
    assert record.latest("calcium") is None
    [note] = record.unusable_labs
    assert note.resource_id == "Observation/huge"
    assert "implausible" in note.reason


def test_observations_of_other_codes_or_systems_are_ignored():
    record = build(
        {
            "x": bundle(
                obs("bun", "6299-2", 48, "mg/dL", days_ago(1)),
                {
                    **obs("local", "17861-6", 9.0, "mg/dL", days_ago(1)),
                    "code": {"coding": [{"system": "http://lab.example/codes", "code": "17861-6"}]},
                },
            )
        }
    )
    assert record.labs == {} and record.unusable_labs == ()


def test_the_same_observation_under_two_prefetch_keys_is_counted_once():
    same = obs("ca1", "17861-6", 9.6, "mg/dL", days_ago(1))
    record = build({"calcium": bundle(same), "everything": bundle(copy.deepcopy(same))})
    assert len(record.labs["calcium"]) == 1


def test_prefetch_nulls_operation_outcomes_and_junk_are_skipped():
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
    with_outcome_entry = bundle(obs("ca", "17861-6", 9.6, "mg/dL", days_ago(1)), outcome)
    with_outcome_entry["entry"][1]["search"] = {"mode": "outcome"}
    record = build(
        {
            "patient": None,
            "conditions": outcome,
            "calcium": with_outcome_entry,
            "junk": "text",
            "list": [1, 2],
            "bundle_junk": {"resourceType": "Bundle", "entry": [None, 5, {"resource": "x"}]},
        }
    )
    assert record.latest("calcium").value == 9.6
    assert record.conditions == () and record.medications == ()


def test_unavailable_prefetch_keys_are_carried_to_the_record():
    record = build({}, unavailable={"pth": "not in prefetch"})
    assert record.unavailable == {"pth": "not in prefetch"}


def test_patient_id_comes_from_the_context():
    assert build({}).patient_id == "p1"
    assert build({}, context={}).patient_id == ""


# --- corrected calcium and Ca x P ---------------------------------------------------------


def test_corrected_calcium_uses_an_albumin_drawn_the_same_day():
    record = build(
        {
            "calcium": bundle(obs("ca", "17861-6", 8.8, "mg/dL", days_ago(1))),
            "albumin": bundle(obs("alb", "1751-7", 2.5, "g/dL", days_ago(1.1))),
        }
    )
    corrected = corrected_calcium(record)
    assert corrected.method == "corrected"
    assert corrected.value == pytest.approx(8.8 + 0.8 * 1.5)
    assert corrected.albumin.resource_id == "Observation/alb"
    assert corrected.calcium.resource_id == "Observation/ca"


def test_corrected_calcium_accepts_albumin_in_g_per_litre():
    record = build(
        {
            "calcium": bundle(obs("ca", "17861-6", 8.8, "mg/dL", days_ago(1))),
            "albumin": bundle(obs("alb", "1751-7", 25, "g/L", days_ago(1))),
        }
    )
    assert corrected_calcium(record).value == pytest.approx(10.0)


def test_a_far_albumin_is_not_used_and_the_measured_value_is_reported():
    far = ALBUMIN_PAIRING_WINDOW + timedelta(hours=2)
    record = build(
        {
            "calcium": bundle(obs("ca", "17861-6", 8.8, "mg/dL", days_ago(1))),
            "albumin": bundle(obs("alb", "1751-7", 2.5, "g/dL", days_ago(1 + far.total_seconds() / 86400))),
        }
    )
    corrected = corrected_calcium(record)
    assert corrected.method == "measured" and corrected.value == 8.8 and corrected.albumin is None


def test_the_albumin_nearest_the_calcium_is_chosen():
    record = build(
        {
            "calcium": bundle(obs("ca", "17861-6", 9.0, "mg/dL", days_ago(3))),
            "albumin": bundle(
                obs("newer", "1751-7", 4.0, "g/dL", days_ago(1.5)), obs("near", "1751-7", 3.0, "g/dL", days_ago(3))
            ),
        }
    )
    assert corrected_calcium(record).albumin.resource_id == "Observation/near"


def test_a_newer_lab_reported_corrected_calcium_is_preferred():
    record = build(
        {
            "calcium": bundle(
                obs("ca", "17861-6", 8.8, "mg/dL", days_ago(5)), obs("cc", "29265-6", 2.6, "mmol/L", days_ago(1))
            )
        }
    )
    corrected = corrected_calcium(record)
    assert corrected.method == "reported-corrected"
    assert corrected.value == pytest.approx(2.6 * 4.008)


def test_an_older_lab_reported_corrected_calcium_yields_to_the_newer_total():
    record = build(
        {
            "calcium": bundle(
                obs("ca", "17861-6", 8.8, "mg/dL", days_ago(1)), obs("cc", "29265-6", 2.6, "mmol/L", days_ago(30))
            )
        }
    )
    assert corrected_calcium(record).method == "measured"


def test_no_calcium_means_no_corrected_calcium():
    assert corrected_calcium(build({})) is None


def test_ca_x_p_multiplies_the_corrected_calcium_and_the_latest_phosphate():
    record = build(
        {
            "calcium": bundle(obs("ca", "17861-6", 9.0, "mg/dL", days_ago(2))),
            "albumin": bundle(obs("alb", "1751-7", 3.0, "g/dL", days_ago(2))),
            "phosphate": bundle(obs("p", "14879-1", 2.0, "mmol/L", days_ago(2))),
        }
    )
    product = ca_x_p(record)
    assert product.value == pytest.approx(9.8 * 2.0 * 3.097)
    assert product.calcium.method == "corrected"
    assert product.phosphate.resource_id == "Observation/p"


def test_ca_x_p_needs_calcium_and_phosphate_drawn_together():
    apart = CA_X_P_PAIRING_WINDOW.days + 5
    record = build(
        {
            "calcium": bundle(obs("ca", "17861-6", 9.0, "mg/dL", days_ago(1))),
            "phosphate": bundle(obs("p", "2777-1", 6.0, "mg/dL", days_ago(1 + apart))),
        }
    )
    assert ca_x_p(record) is None
    assert ca_x_p(build({"calcium": bundle(obs("ca", "17861-6", 9.0, "mg/dL", days_ago(1)))})) is None


# --- staleness ----------------------------------------------------------------------------


def test_calcium_older_than_its_monitoring_interval_is_stale():
    limit = STALE_AFTER["calcium"].days
    fresh = build({"calcium": bundle(obs("ca", "17861-6", 9.0, "mg/dL", days_ago(limit - 1)))})
    stale = build({"calcium": bundle(obs("ca", "17861-6", 9.0, "mg/dL", days_ago(limit + 1)))})
    assert not fresh.is_stale("calcium")
    assert stale.is_stale("calcium") and stale.is_stale(stale.latest("calcium"))


def test_pth_has_a_longer_interval_than_calcium():
    record = build({"pth": bundle(obs("pth", "2731-8", 300, "pg/mL", days_ago(60)))})
    assert STALE_AFTER["pth"] > STALE_AFTER["calcium"]
    assert not record.is_stale("pth")
    assert build({"pth": bundle(obs("pth", "2731-8", 300, "pg/mL", days_ago(100)))}).is_stale("pth")


def test_an_undated_result_is_stale_and_a_missing_one_is_not():
    record = build({"calcium": bundle(obs("ca", "17861-6", 9.0, "mg/dL"))})
    assert record.is_stale("calcium")
    assert not record.is_stale("phosphate")


def test_analytes_without_a_monitoring_interval_are_never_stale():
    record = build({"egfr": bundle(obs("e", "98979-8", 9, "mL/min/{1.73_m2}", days_ago(400)))})
    assert record.stale_after("egfr") is None
    assert not record.is_stale("egfr")
    assert record.age(record.latest("egfr")) == timedelta(days=400)


# --- conditions, procedures, medications --------------------------------------------------


def test_conditions_and_recent_procedures_put_the_patient_in_scope():
    record = build(
        {
            "conditions": bundle(condition("c1", term.ICD10CM, "E83.59", "Calciphylaxis")),
            "procedures": bundle(
                {
                    "resourceType": "Procedure",
                    "id": "hd",
                    "status": "completed",
                    "code": {"coding": [{"system": term.SNOMED, "code": "302497006"}]},
                    "performedDateTime": days_ago(2),
                }
            ),
        }
    )
    assert record.has_calciphylaxis and record.on_dialysis
    assert {c.resource_id for c in record.conditions} == {"Condition/c1", "Procedure/hd"}


def test_latest_egfr_below_15_means_kidney_failure():
    record = build(
        {
            "egfr": bundle(
                obs("e", "98979-8", 11, "mL/min/{1.73_m2}", days_ago(3)),
                obs("e0", "98979-8", 40, "mL/min/{1.73_m2}", days_ago(300)),
            )
        }
    )
    assert record.on_dialysis


def test_only_active_and_on_hold_medications_are_on_the_chart():
    record = build(
        {
            "meds": bundle(
                med("a", "197433", "calcium acetate 667 MG Oral Tablet"),
                med("h", "855332", "warfarin sodium 5 MG Oral Tablet", status="on-hold"),
                med("s", "308867", "calcitriol 0.00025 MG Oral Capsule", status="stopped"),
                med("c", "308867", "calcitriol", status="completed"),
                med("x", "308867", "calcitriol", status="entered-in-error"),
                med("d", "308867", "calcitriol", status="draft"),
            )
        }
    )
    assert [m.resource_id for m in record.medications] == ["MedicationRequest/a", "MedicationRequest/h"]


def test_prefetch_medications_referring_to_bundled_medications_are_classified():
    request = {
        "resourceType": "MedicationRequest",
        "id": "r",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "urn:uuid:abc"},
    }
    medication = {
        "resourceType": "Medication",
        "id": "abc",
        "code": {"coding": [{"system": term.RXNORM, "code": "1894"}]},
    }
    record = build({"meds": bundle(request, medication, full_urls=["urn:uuid:r", "urn:uuid:abc"])})
    assert record.medications[0].drug_classes == {"active_vitamin_d"}
    assert "urn:uuid:abc" in record.medication_catalog


# --- orders under review ------------------------------------------------------------------


def draft(rid, rxnorm=None, display=None, status="draft", rtype="MedicationRequest"):
    resource = {"resourceType": rtype, "id": rid, "status": status}
    if rxnorm:
        resource["intent"] = "order"
        resource["medicationCodeableConcept"] = {
            "coding": [{"system": term.RXNORM, "code": rxnorm, "display": display}]
        }
    return resource


def draft_context(*resources, selections=None, with_type=False):
    orders = {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}
    if with_type:
        orders["type"] = "collection"
    context = {"patientId": "p1", "draftOrders": orders}
    if selections is not None:
        context["selections"] = selections
    return context


def ids(orders):
    return [o.order.resource_id for o in orders]


def test_order_select_reviews_only_the_selected_drafts():
    context = draft_context(
        draft("a", "197433", "calcium acetate"), draft("b", "855332", "warfarin"), selections=["MedicationRequest/b"]
    )
    reviewed = orders_under_review("order-select", context, build({}))
    assert ids(reviewed) == ["MedicationRequest/b"]
    assert reviewed[0].is_draft and reviewed[0].order.drug_classes == {"vka"}


def test_order_select_tolerates_bare_ids_and_a_typed_bundle():
    context = draft_context(draft("a", "197433", "calcium acetate"), selections=["a"], with_type=True)
    assert ids(orders_under_review("order-select", context, build({}))) == ["MedicationRequest/a"]


def test_order_select_skips_nutrition_orders_service_requests_and_the_empty_draft():
    context = draft_context(
        {"resourceType": "NutritionOrder", "id": "n", "status": "draft"},
        {"resourceType": "ServiceRequest", "id": "s", "status": "draft"},
        draft("empty"),
        selections=["NutritionOrder/n", "ServiceRequest/s", "MedicationRequest/empty"],
    )
    assert orders_under_review("order-select", context, build({})) == ()


def test_order_select_reads_a_dstu2_medication_order():
    context = draft_context(
        draft("m", "197433", "calcium acetate", rtype="MedicationOrder"), selections=["MedicationOrder/m"]
    )
    assert ids(orders_under_review("order-select", context, build({}))) == ["MedicationOrder/m"]


def test_order_sign_reviews_every_medication_draft_not_closed():
    context = draft_context(
        draft("a", "197433", "calcium acetate"),
        draft("b", "855332", "warfarin", status="active"),  # re-sign of an active order
        draft("c", "308867", "calcitriol", status="cancelled"),
        draft("d", "308867", "calcitriol", status="entered-in-error"),
        {"resourceType": "NutritionOrder", "id": "n", "status": "draft"},
    )
    assert ids(orders_under_review("order-sign", context, build({}))) == ["MedicationRequest/a", "MedicationRequest/b"]


def test_draft_referring_to_a_medication_in_the_draft_bundle_is_classified():
    request = {
        "resourceType": "MedicationRequest",
        "id": "a",
        "status": "draft",
        "intent": "order",
        "medicationReference": {"reference": "Medication/m1"},
    }
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {"coding": [{"system": term.RXNORM, "code": "197433"}]},
    }
    context = draft_context(request, medication)
    [order] = orders_under_review("order-sign", context, build({}))
    assert order.order.drug_classes == {"calcium_binder"}


def test_patient_view_reviews_chart_medications_as_not_drafts():
    record = build({"meds": bundle(med("a", "197433", "calcium acetate 667 MG Oral Tablet"))})
    [order] = orders_under_review("patient-view", {"patientId": "p1"}, record)
    assert order.order.resource_id == "MedicationRequest/a" and not order.is_draft


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"draftOrders": None},
        {"draftOrders": "x"},
        {"draftOrders": {"resourceType": "Bundle", "entry": "x"}},
        {"draftOrders": {"resourceType": "Bundle"}, "selections": 5},
    ],
)
def test_malformed_draft_orders_yield_nothing_rather_than_raise(context):
    for hook in ("order-select", "order-sign"):
        assert orders_under_review(hook, context, build({})) == ()


def test_unknown_hook_reviews_nothing():
    assert orders_under_review("encounter-start", draft_context(draft("a", "197433", "x")), build({})) == ()


# --- shared third-party data (skipped when ../shared/fhir-data is absent) -----------------


SYNTHEA = "fhir-data/synthea-r4-bundles/Dirk_Kuhlman_1e503533-b8c2-42cb-a6d5-bbd7d70d07ad.json"


def test_a_real_synthea_bundle_builds_a_record_out_of_scope():
    transaction = load_shared(SYNTHEA)
    record = build_record(
        {"patientId": "948e608d-e408-4788-8cf2-8157c49c2940"}, ResolvedPrefetch({"everything": transaction}, {}), NOW
    )
    # Calcium (49765-1, mg/dL) and eGFR (33914-3) are read; CKD stage 1 is not kidney failure.
    assert [r.unit for r in record.labs["calcium"]] == ["mg/dL"]  # the latest of 9: what the checks read
    assert len(record.labs["egfr"]) == 1 and record.latest("egfr").value > 15
    # The two (older) eGFRs whose display holds a zero-width space are reported in plain "mL/min":
    # not per 1.73 m2, so not usable as eGFR when read (noted, not guessed).
    read = [read_lab(r) for _, r in iter_resources(transaction) if r.get("resourceType") == "Observation"]
    unusable = [lab for lab in read if isinstance(lab, UnusableLab)]
    assert len(unusable) == 2
    assert all(u.analyte == "egfr" and "'mL/min'" in u.reason for u in unusable)
    assert sum(isinstance(lab, LabResult) and lab.analyte == "calcium" for lab in read) == 9
    assert not record.has_calciphylaxis and not record.on_dialysis
    assert all(m.status in ("active", "on-hold") for m in record.medications)
    assert record.medications and not any(m.drug_classes for m in record.medications)
    # Synthea's 2019-2021 labs are years old by the frozen clock.
    assert record.is_stale("calcium")


def test_a_synthea_bundle_with_added_dialysis_calciphylaxis_and_urn_uuid_medication():
    transaction = load_shared(SYNTHEA)
    patient_ref = "urn:uuid:948e608d-e408-4788-8cf2-8157c49c2940"
    added = [
        condition("calci", term.ICD10CM, "E83.59", "Calciphylaxis"),
        condition("esrd", term.SNOMED, "46177005", "End-stage renal disease"),
        obs("ca-new", "17861-6", 10.4, "mg/dL", days_ago(2)),
        obs("alb-new", "1751-7", 30, "g/L", days_ago(2)),
        obs("p-new", "2777-1", 6.5, "mg/dL", days_ago(2)),
        {"resourceType": "Medication", "id": "med-ca", "code": {"coding": [{"system": term.RXNORM, "code": "359296"}]}},
        {
            "resourceType": "MedicationRequest",
            "id": "mr-ca",
            "status": "active",
            "intent": "order",
            "subject": {"reference": patient_ref},
            "medicationReference": {"reference": "urn:uuid:med-ca"},
        },
    ]
    for resource in added:  # about the Synthea patient, referenced the way the bundle does
        if "subject" in resource:
            resource["subject"] = {"reference": patient_ref}
    transaction["entry"].extend({"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in added)
    record = build_record(
        {"patientId": patient_ref.split(":")[-1]}, ResolvedPrefetch({"everything": transaction}, {}), NOW
    )
    assert record.has_calciphylaxis and record.on_dialysis
    assert record.latest("calcium").resource_id == "Observation/ca-new"
    assert corrected_calcium(record).value == pytest.approx(10.4 + 0.8 * 1.0)
    assert ca_x_p(record).value == pytest.approx(11.2 * 6.5)
    binders = [m for m in record.medications if "calcium_binder" in m.drug_classes]
    assert [m.resource_id for m in binders] == ["MedicationRequest/mr-ca"]


def test_synthea_egfr_display_with_a_zero_width_space_is_still_read():
    transaction = load_shared(SYNTHEA)
    egfr = next(
        e["resource"]
        for e in transaction["entry"]
        if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "33914-3"
    )
    egfr = copy.deepcopy(egfr)
    egfr["code"]["coding"][0]["display"] = "Glomerular filtration rate/\u200b1.73 sq M.predicted"
    egfr["valueQuantity"].update(value=9.0, unit="mL/min/{1.73_m2}", code="mL/min/{1.73_m2}")
    egfr["effectiveDateTime"] = days_ago(1)
    synthea_patient = egfr["subject"]["reference"].split(":")[-1]  # the bundle's urn:uuid
    record = build({"egfr": bundle(egfr)}, context={"patientId": synthea_patient})
    assert record.latest("egfr").value == 9.0 and record.on_dialysis


def test_bulk_synthea_patient_with_dialysis_decades_ago_is_not_on_dialysis_now():
    folder = SHARED_DATA / "synthea-bulk-10-patients"
    skip_without_shared(folder, "bulk Synthea patients")
    patient = "Patient/79a66c97-6131-3213-f3c9-4606946ab056"
    resources = []
    for name in ("Condition.000.ndjson", "Procedure.000.ndjson", "MedicationRequest.000.ndjson"):
        with open(folder / name, encoding="utf-8") as handle:
            for line in handle:
                resource = json.loads(line)
                if resource.get("subject", {}).get("reference") == patient:
                    resources.append(resource)
    dialysis = [
        r for r in resources if r["resourceType"] == "Procedure" and r["code"]["coding"][0]["code"] == "265764009"
    ]
    assert len(dialysis) > 100  # the trap is really there
    record = build({"everything": bundle(*resources)}, context={"patientId": patient.split("/")[1]})
    assert not record.on_dialysis  # ESRD resolved, last dialysis 1990
    # Only the 1990 kidney transplant ("History of renal transplant") is a fact about her now.
    assert {c.kind for c in record.conditions} == {"kidney_transplant"}
    # The 430 epoetin orders are all stopped: only the active ones (none of our classes) remain.
    assert record.medications and all(m.status == "active" for m in record.medications)
    assert not any(m.drug_classes for m in record.medications)
    # ... whereas the same history, shifted to last week, would be current dialysis.
    last = max(dialysis, key=lambda r: r["performedPeriod"]["start"])
    recent = copy.deepcopy(last)
    recent["performedPeriod"] = {"start": days_ago(3), "end": days_ago(3)}
    assert build({"x": bundle(recent)}, context={"patientId": patient.split("/")[1]}).on_dialysis


@pytest.mark.parametrize(
    "name, hook_ids, classes",
    [
        ("order-select-request-rxnorm-197433.json", ["MedicationRequest/request-123"], {"calcium_binder"}),
        ("order-select-request-rxnorm-855332.json", ["MedicationRequest/request-123"], {"vka"}),
        ("order-select-request-empty-draft.json", [], None),
    ],
)
def test_captured_sandbox_order_select_requests(name, hook_ids, classes):
    request = load_shared(f"fhir-data/sandbox-captured-requests/{name}")
    record = build_record(request["context"], ResolvedPrefetch(request.get("prefetch") or {}, {}), NOW)
    reviewed = orders_under_review(request["hook"], request["context"], record)
    assert ids(reviewed) == hook_ids
    if classes is not None:
        assert reviewed[0].order.drug_classes == classes and reviewed[0].order.matched_by == "code"


def test_captured_sandbox_patient_view_reads_the_meds_key():
    request = load_shared("fhir-data/sandbox-captured-requests/patient-view-request.json")
    record = build_record(request["context"], ResolvedPrefetch(request["prefetch"], {}), NOW)
    assert len(record.medications) == 4  # the sandbox names its key "meds", not "medications"
    assert record.latest("calcium") is not None


# --- robustness ---------------------------------------------------------------------------

JUNK = (None, 5, -1.5, float("nan"), "x", "", [], {}, [None], {"a": 1}, True, [{"coding": 5}])


def _mutate(node, rng, rate):
    """A copy of ``node`` with some members replaced by values of the wrong type."""
    if isinstance(node, dict):
        return {k: (rng.choice(JUNK) if rng.random() < rate else _mutate(v, rng, rate)) for k, v in node.items()}
    if isinstance(node, list):
        return [rng.choice(JUNK) if rng.random() < rate else _mutate(v, rng, rate) for v in node]
    return node


def _rich_request():
    """One request touching every reader: labs, conditions, procedures, meds, drafts, references."""
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {"coding": [{"system": term.RXNORM, "code": "197433"}]},
        "ingredient": [{"itemCodeableConcept": {"coding": [{"system": term.RXNORM, "code": "1897"}]}}],
    }
    prefetch = {
        "calcium": bundle(
            obs("ca", "17861-6", 9.6, "mg/dL", days_ago(1)),
            obs("cc", "29265-6", 2.5, "mmol/L", days_ago(1)),
            obs("alb", "1751-7", 3.1, "g/dL", days_ago(1)),
            obs("p", "2777-1", 6.1, "mg/dL", days_ago(1), effectivePeriod={"start": days_ago(1)}),
        ),
        "conditions": bundle(
            condition("c1", term.ICD10CM, "E83.59", "Calciphylaxis"),
            condition("c2", term.ICD10CM, "Z95.2", "Mechanical valve"),
        ),
        "procedures": bundle(
            {
                "resourceType": "Procedure",
                "id": "hd",
                "status": "completed",
                "code": {"coding": [{"system": term.SNOMED, "code": "302497006"}]},
                "performedPeriod": {"start": days_ago(2), "end": days_ago(2)},
            }
        ),
        "meds": bundle(
            med("a", "855332", "warfarin"),
            medication,
            {
                "resourceType": "MedicationRequest",
                "id": "r5",
                "status": "active",
                "medication": {"concept": {"text": "calcitriol"}, "reference": {"reference": "Medication/m1"}},
            },
            full_urls=["urn:uuid:a", "urn:uuid:m1", "urn:uuid:r5"],
        ),
    }
    context = draft_context(
        {
            "resourceType": "MedicationRequest",
            "id": "d1",
            "status": "draft",
            "contained": [medication],
            "medicationReference": {"reference": "#m1"},
            "category": {"coding": [{"code": "community"}]},
        },
        draft("d2", "308867", "calcitriol", rtype="MedicationOrder"),
        selections=["MedicationRequest/d1", "d2"],
    )
    return context, prefetch


def test_wrongly_typed_members_anywhere_never_raise():
    import random

    rng = random.Random(20261121)
    context, prefetch = _rich_request()
    for _ in range(400):
        bad_context = _mutate(context, rng, 0.08)
        bad_prefetch = _mutate(prefetch, rng, 0.08)
        record = build_record(bad_context, ResolvedPrefetch(bad_prefetch, {}), NOW)
        corrected_calcium(record), ca_x_p(record), record.is_stale("calcium"), record.on_dialysis
        for hook in ("order-select", "order-sign", "patient-view"):
            orders_under_review(hook, bad_context, record)


def test_the_unmutated_rich_request_reads_everything():
    # The fuzz above only proves something if its base request exercises every reader.
    context, prefetch = _rich_request()
    record = build(prefetch, context=context)
    assert record.has_calciphylaxis and record.on_dialysis
    assert record.conditions_of("prosthetic_valve")
    assert corrected_calcium(record).method == "reported-corrected"
    assert ca_x_p(record) is not None
    assert [m.drug_classes for m in record.medications] == [{"vka"}, {"calcium_binder"}]
    reviewed = orders_under_review("order-select", context, record)
    assert [o.order.drug_classes for o in reviewed] == [{"calcium_binder"}, {"active_vitamin_d"}]


def test_nan_and_infinite_values_are_not_usable():
    record = build(
        {
            "calcium": bundle(
                obs("nan", "17861-6", float("nan"), "mg/dL", days_ago(1)),
                obs("inf", "17861-6", float("inf"), "mg/dL", days_ago(1)),
            )
        }
    )
    assert record.labs == {} and len(record.unusable_labs) == 2


@pytest.mark.parametrize(
    ("analyte", "loinc", "unit", "value"),
    [("calcium", "17861-6", "mg/dL", 9.0), ("pth", "2731-8", "pg/mL", 300.0), ("albumin", "1751-7", "g/dL", 3.5)],
)
def test_each_analyte_keeps_only_as_many_newest_usable_results_as_the_checks_read_whatever_the_input_order(
    analyte, loinc, unit, value
):
    days = list(range(40))
    random.Random(7).shuffle(days)
    results = [obs(f"r-{d}", loinc, value + d / 100, unit, when=days_ago(d)) for d in days]
    record = build({"chart": bundle(*results)})
    depth = ANALYTES[analyte].series
    assert [r.resource_id for r in record.labs[analyte]] == [f"Observation/r-{d}" for d in range(depth)]


def test_the_series_depths_cover_what_the_checks_read():
    from cds_service.checks.labs import PTH_SERIES

    assert ANALYTES["pth"].series >= PTH_SERIES  # two consecutive results
    assert ANALYTES["crp"].series >= 2  # the one before the latest: the trend
    assert ANALYTES["albumin"].series > 1  # the albumin nearest the latest calcium, a few back


def test_an_unusable_newest_result_is_reported_and_the_next_usable_one_is_used():
    newest = obs("ca-new", "17861-6", 9.9, "furlongs", when=days_ago(1))
    older = obs("ca-old", "17861-6", 9.1, "mg/dL", when=days_ago(3))
    record = build({"calcium": bundle(older, newest)})
    assert record.latest("calcium").resource_id == "Observation/ca-old"
    assert [u.resource_id for u in record.unusable_labs] == ["Observation/ca-new"]


# --- exposure beyond orders, allergies, and whose data it is (issue 10, 11) ---------------------


def _admin(aid, text, when, status="completed", patient="Patient/p1"):
    return {
        "resourceType": "MedicationAdministration",
        "id": aid,
        "status": status,
        "medicationCodeableConcept": {"text": text},
        "subject": {"reference": patient},
        "effectiveDateTime": when,
    }


def test_doses_given_in_the_last_two_weeks_are_current_exposure_and_older_ones_are_not():
    record = build(
        {
            "medadmins": bundle(
                _admin("recent", "paricalcitol 2 mcg IV", days_ago(3)),
                _admin("old", "doxercalciferol 4 mcg IV", days_ago(40)),
                _admin("not-done", "calcitriol 1 mcg IV", days_ago(1), status="not-done"),
            )
        }
    )
    assert [m.resource_id for m in record.medications] == ["MedicationAdministration/recent"]
    (given,) = record.medications
    assert given.kind == "administration" and given.drug_classes == {"active_vitamin_d"}


def test_a_home_medication_statement_counts_while_active_and_patient_view_reviews_one_card_per_drug():
    calcitriol_order = {
        "resourceType": "MedicationRequest",
        "id": "mr",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": term.RXNORM, "code": "308867"}]},
    }
    statement = {
        "resourceType": "MedicationStatement",
        "id": "ms",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "Rocaltrol 0.25 mcg daily"},
    }
    stopped = {**statement, "id": "ms-stopped", "status": "stopped", "medicationCodeableConcept": {"text": "Tums"}}
    record = build({"meds": bundle(calcitriol_order), "medstatements": bundle(statement, stopped)})
    assert {m.resource_id for m in record.medications} == {"MedicationRequest/mr", "MedicationStatement/ms"}
    reviewed = orders_under_review("patient-view", CONTEXT, record)
    # The statement names the same active sterol the order covers: one exposure, one card.
    assert [r.order.resource_id for r in reviewed] == ["MedicationRequest/mr"]


def test_allergies_that_count_are_read_with_their_classes_and_refuted_ones_are_not():
    def allergy(aid, concept, verification="confirmed"):
        return {
            "resourceType": "AllergyIntolerance",
            "id": aid,
            "verificationStatus": {"coding": [{"code": verification}]},
            "code": concept,
            "patient": {"reference": "Patient/p1"},
        }

    record = build(
        {
            "allergies": bundle(
                allergy("a1", {"text": "Renvela (sevelamer) - diarrhoea"}),
                allergy("a2", {"coding": [{"system": term.RXNORM, "code": "1364430"}]}),
                allergy("a3", {"text": "Eliquis"}, verification="refuted"),
                allergy("a4", {"text": "penicillin"}),
            )
        }
    )
    by_id = {a.resource_id: a for a in record.allergies}
    assert set(by_id) == {"AllergyIntolerance/a1", "AllergyIntolerance/a2"}
    assert by_id["AllergyIntolerance/a1"].drug_classes == {"non_calcium_binder"}
    assert by_id["AllergyIntolerance/a2"].ingredients == ("apixaban",)


def test_resources_about_another_patient_are_never_read_into_the_record():
    mine = {
        **condition("mine", term.SNOMED, "46177005", "End-stage renal disease"),
        "subject": {"reference": "Patient/p1"},
    }
    theirs = {**condition("theirs", term.SNOMED, "46177005", "Calciphylaxis"), "subject": {"reference": "Patient/p2"}}
    lab_theirs = {**obs("ca-theirs", "17861-6", 11.9, "mg/dL", days_ago(1)), "subject": {"reference": "Patient/p2"}}
    record = build({"conditions": bundle(mine, theirs), "calcium": bundle(lab_theirs)})
    assert [c.resource_id for c in record.conditions] == ["Condition/mine"]
    assert record.latest("calcium") is None
    assert record.other_patient == {"conditions": 1, "calcium": 1}
    assert "calcium" in record.unavailable and "conditions" not in record.unavailable


def test_draft_orders_about_another_patient_are_never_reviewed():
    draft = {
        "resourceType": "MedicationRequest",
        "id": "d-other",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p2"},
        "medicationCodeableConcept": {"coding": [{"system": term.RXNORM, "code": "197433"}]},
    }
    context = {**CONTEXT, "draftOrders": bundle(draft)}
    assert orders_under_review("order-sign", context, build({})) == ()


def test_calcium_and_phosphate_go_out_of_date_after_2_weeks_in_the_first_month_of_calciphylaxis():
    # Clinical review F25: every 2 weeks for the first month, then monthly (seeds 000, 001, 004).
    from dataclasses import replace

    from tests.checks.builders import NOW, cond, lab, record

    new = replace(cond("calciphylaxis", "Calciphylaxis"), recorded=NOW - timedelta(days=10))
    old = replace(cond("calciphylaxis", "Calciphylaxis"), recorded=NOW - timedelta(days=60))
    labs = (lab("calcium", 9.0, days_ago=20), lab("phosphate", 5.0, days_ago=20), lab("pth", 250, days_ago=20))
    early, later = record(conditions=[new], labs=labs), record(conditions=[old], labs=labs)
    assert early.is_stale("calcium") and early.is_stale("phosphate") and not early.is_stale("pth")
    assert not later.is_stale("calcium") and not later.is_stale("phosphate")


def test_a_calcium_drawn_before_a_calcimimetic_change_over_a_week_ago_is_out_of_date():
    from dataclasses import replace

    from tests.checks.builders import NOW, cond, lab, med, record

    cinacalcet = replace(
        med("calcimimetic", name="cinacalcet 60 MG", rid="MedicationRequest/c1", status="active"),
        authored=NOW - timedelta(days=12),
    )
    before = record(
        conditions=[cond("kidney_failure")], labs=(lab("calcium", 8.9, days_ago=15),), medications=[cinacalcet]
    )
    after = record(
        conditions=[cond("kidney_failure")], labs=(lab("calcium", 8.9, days_ago=5),), medications=[cinacalcet]
    )
    assert before.is_stale("calcium") and not after.is_stale("calcium")
