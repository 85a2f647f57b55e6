"""The clinical content review's probes (../shared/reviews/clinical-content-review-2026-12.md,
section 4), replayed over HTTP: each changes one fact of a fixture, as the reviewer did, and checks
the service now answers as a nephrologist and a renal pharmacist would. Each test names the
finding it proves fixed (F01-F36); docs/clinical/review-responses.md maps every finding to its test
or its answer.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fhir_fixtures"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"


def fixture(name: str) -> dict[str, Any]:
    body = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    body.pop("_expected")
    return copy.deepcopy(body)


def call(client, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(f"/cds-services/calciphylaxis-{body['hook']}", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["cards"]


def only_card(client, body: dict[str, Any]) -> dict[str, Any]:
    cards = call(client, body)
    assert len(cards) == 1, [c["summary"] for c in cards]
    return cards[0]


def entries(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in body["prefetch"][key]["entry"]]


def set_condition(body: dict[str, Any], cid: str, system: str, code: str, display: str) -> None:
    for resource in entries(body, "conditions"):
        if resource["id"] == cid:
            resource["code"] = {"coding": [{"system": system, "code": code, "display": display}], "text": display}
            return
    raise AssertionError(f"no condition {cid}")


def add_condition(body: dict[str, Any], cid: str, system: str, code: str, display: str) -> None:
    patient = body["context"]["patientId"]
    body["prefetch"]["conditions"]["entry"].append(
        {
            "fullUrl": f"http://ehr.example.org/fhir/Condition/{cid}",
            "resource": {
                "resourceType": "Condition",
                "id": cid,
                "clinicalStatus": {"coding": [{"code": "active"}]},
                "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
                "subject": {"reference": f"Patient/{patient}"},
            },
        }
    )


def set_value(body: dict[str, Any], key: str, value: float) -> None:
    entries(body, key)[0]["valueQuantity"]["value"] = value


def created(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [a["resource"] for s in card.get("suggestions", []) for a in s["actions"] if a["type"] == "create"]


def codes(card: dict[str, Any]) -> list[str]:
    return [r["medicationCodeableConcept"]["coding"][0]["code"] for r in created(card)]


def test_f01_no_bare_stop_in_the_summary_for_a_vka_taken_for_a_venous_thromboembolism(client):
    # Variant J: atrial fibrillation replaced by a DVT: no apixaban, and the summary must not say stop.
    body = fixture("c2-warfarin-calciphylaxis-atrial-fibrillation")
    set_condition(body, "af", SNOMED, "128053003", "Deep venous thrombosis")
    card = only_card(client, body)
    assert card["indicator"] == "critical" and not card.get("suggestions")
    assert not card["summary"].startswith("Stop") and "do not stop it unbridged" in card["summary"]
    assert "anticoagulation team" in card["detail"]


def test_f01_mechanical_valve_summary_asks_for_a_plan(client):
    card = only_card(client, fixture("c2-warfarin-calciphylaxis-mechanical-valve"))
    assert card["summary"].startswith("Plan a replacement for warfarin") and not card.get("suggestions")


def test_f02_apixaban_dose_follows_the_us_label_and_the_card_states_the_conflict(client):
    body = fixture("c2-warfarin-calciphylaxis-atrial-fibrillation")  # 68 years, 72 kg
    card = only_card(client, body)
    assert codes(card) == ["1364445"]  # 5 mg
    (order,) = created(card)
    assert "Dose chosen by: age 68" in order["dosageInstruction"][0]["text"]
    assert "INR is below 2.0" in order["dosageInstruction"][0]["text"]
    assert "EU product information does not recommend apixaban on dialysis" in card["detail"]
    set_value(body, "weight", 57)
    assert codes(only_card(client, body)) == ["1364435"]  # 2.5 mg at 60 kg or less
    body["prefetch"]["weight"] = None
    card = only_card(client, body)  # no weight: the dose cannot be chosen
    assert codes(card) == [] and "Apixaban dose cannot be chosen" in card["detail"]


def test_f02_siontis_is_no_longer_cited_as_support_for_2_5_mg(client):
    card = only_card(client, fixture("c2-warfarin-calciphylaxis-atrial-fibrillation"))
    assert "reduced-dose apixaban (2.5 mg twice daily) has been proposed" not in card["detail"]
    assert "5 mg dose associated with fewer strokes and deaths than 2.5 mg" in card["detail"]


@pytest.mark.parametrize(
    ("system", "code", "display"),
    [
        (SNOMED, "236434000", "End stage renal failure untreated by renal replacement therapy"),  # variant B2
        (ICD10, "N18.5", "Chronic kidney disease, stage 5"),
        (SNOMED, "433146000", "Chronic kidney disease stage 5"),
    ],
)
def test_f03_kidney_failure_without_dialysis_gets_no_dialysis_dosed_apixaban(client, system, code, display):
    body = fixture("c2-warfarin-calciphylaxis-atrial-fibrillation")
    set_condition(body, "esrd", system, code, display)
    card = only_card(client, body)
    assert codes(card) == []
    assert "Dialysis not shown" in card["detail"] and "\u2714 On dialysis" not in card["detail"]


def test_f03_an_egfr_below_15_alone_is_not_dialysis(client):
    body = fixture("c2-warfarin-calciphylaxis-atrial-fibrillation")
    body["prefetch"]["conditions"]["entry"] = [
        e for e in body["prefetch"]["conditions"]["entry"] if e["resource"]["id"] != "esrd"
    ]
    assert codes(only_card(client, body)) == []


def test_f04_severe_rheumatic_mitral_stenosis_rules_out_apixaban(client):
    body = fixture("c2-warfarin-calciphylaxis-atrial-fibrillation")  # variant I
    add_condition(body, "ms", ICD10, "I05.0", "Rheumatic mitral stenosis, severe")
    card = only_card(client, body)
    assert codes(card) == [] and "Mitral stenosis recorded" in card["detail"]


def test_f04_antiphospholipid_syndrome_rules_out_apixaban(client):
    body = fixture("c2-warfarin-calciphylaxis-atrial-fibrillation")
    add_condition(body, "aps", ICD10, "D68.61", "Antiphospholipid syndrome")
    assert codes(only_card(client, body)) == []


def test_f04_a_partly_read_conditions_list_is_not_checked_and_withholds_apixaban(client):
    body = fixture("c2-warfarin-calciphylaxis-atrial-fibrillation")  # variant E
    body["prefetch"]["conditions"]["link"] = [
        {"relation": "next", "url": "https://ehr.example.org/fhir/Condition?page=2"}
    ]
    card = only_card(client, body)
    assert codes(card) == []
    assert "\u2714 No mechanical or unspecified prosthetic heart valve" not in card["detail"]
    assert "Heart valves not checked" in card["detail"]


def test_f05_cinacalcet_is_not_offered_in_ckd_5_not_on_dialysis(client):
    body = fixture("c3-calcitriol-calciphylaxis-cinacalcet")  # variant B
    set_condition(body, "esrd", ICD10, "N18.5", "Chronic kidney disease, stage 5")
    card = only_card(client, body)
    assert codes(card) == [] and "dialysis only" in card["detail"]


@pytest.mark.parametrize("pth", [120, 280])
def test_f06_cinacalcet_is_not_offered_at_or_below_the_pth_target(client, pth):
    body = fixture("c3-calcitriol-calciphylaxis-cinacalcet")  # variant A (120); the 280 fixture
    set_value(body, "pth", pth)
    card = only_card(client, body)
    assert codes(card) == [] and "PTH not above the 150-300 pg/mL target" in card["detail"]


def test_f07_a_new_cinacalcet_draft_at_calcium_8_1_is_not_started(client):
    body = fixture("c6-cinacalcet-dialysis-calcium-below-7-5-withhold")  # variant F
    set_value(body, "calcium", 7.8)  # with albumin 3.6: corrected 8.1 mg/dL
    card = only_card(client, body)
    assert card["indicator"] == "warning" and card["summary"].startswith("Do not start or increase")
    assert "8.1 mg/dL" in card["detail"]
    assert "keeps the calcimimetic" not in card["detail"]
    ((action,),) = [s["actions"] for s in card["suggestions"]]
    assert action["type"] == "delete"


def test_f08_a_calcium_binder_at_corrected_calcium_6_7_gets_a_review_not_a_one_click_stop(client):
    body = fixture("c1-calcium-acetate-calciphylaxis")  # variant L
    set_value(body, "calcium", 6.4)
    card = only_card(client, body)
    assert card["indicator"] == "warning" and not card.get("suggestions")
    assert "6.7 mg/dL" in card["summary"] and "hypocalcaemia" in card["detail"]


def test_f08_a_recent_parathyroidectomy_guards_active_vitamin_d(client):
    body = fixture("c3-calcitriol-calciphylaxis-cinacalcet")
    patient = body["context"]["patientId"]
    body["prefetch"]["parathyroidectomy"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "Procedure",
                    "id": "ptx",
                    "status": "completed",
                    "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "60500"}]},
                    "subject": {"reference": f"Patient/{patient}"},
                    "performedDateTime": "2026-10-20",
                }
            }
        ],
    }
    card = only_card(client, body)
    assert card["indicator"] == "warning" and not card.get("suggestions") and "Procedure/ptx" in card["detail"]


def test_f09_a_sevelamer_already_drafted_is_not_offered_again(client):
    card = only_card(client, fixture("order-sign-only-the-calcium-binder-of-two-drafts"))
    assert codes(card) == [] and "drafted now" in card["detail"]


def test_f09_on_order_select_an_unselected_draft_counts_as_drafted(client):
    body = fixture("order-sign-only-the-calcium-binder-of-two-drafts")
    body["hook"] = "order-select"
    body["context"]["selections"] = ["MedicationRequest/draft-ca"]
    assert codes(only_card(client, body)) == []


def test_f10_no_binder_is_offered_at_a_phosphate_of_2_6(client):
    body = fixture("c1-calcium-acetate-calciphylaxis")  # variant C
    set_value(body, "phosphate", 2.6)
    card = only_card(client, body)
    assert codes(card) == [] and "Phosphate is below 3.5 mg/dL" in card["detail"]


def test_f10_a_binder_at_target_phosphate_is_offered_but_not_recommended(client):
    body = fixture("c1-calcium-acetate-calciphylaxis")
    set_value(body, "phosphate", 5.2)
    card = only_card(client, body)
    assert codes(card) == ["749206", "477347"]
    assert not any(s.get("isRecommended") for s in card["suggestions"])


def test_f11_the_sodium_thiosulfate_order_is_complete(client):
    cards = call(client, fixture("m1-sodium-thiosulfate-offered-on-haemodialysis-with-crp-trend"))
    (order,) = [r for card in cards for r in created(card)]
    dosage = order["dosageInstruction"][0]
    repeat = dosage["timing"]["repeat"]
    assert (repeat["duration"], repeat["durationMax"], repeat["durationUnit"]) == (30, 60, "min")
    assert repeat["boundsDuration"]["value"] == 3 and repeat["boundsDuration"]["code"] == "mo"
    assert dosage["route"]["coding"][0]["code"] == "47625008"
    for words in ("Off-label", "blood pressure", "anion gap", "sodium", "2 weeks", "3-6 months"):
        assert words in dosage["text"], words
    assert order["reasonReference"] == [{"reference": "Condition/calciphylaxis"}]


def test_f12_etelcalcetide_restarts_by_its_own_label(client):
    card = only_card(client, fixture("c6-etelcalcetide-dialysis-calcium-below-7-5-its-own-label"))
    assert card["indicator"] == "critical"
    assert "extrapolation" not in card["detail"] and "5 mg lower" in card["detail"]
    assert "back to 8 mg/dL" not in card["detail"]


def test_f16_non_uraemic_calciphylaxis_is_not_judged_against_dialysis_targets(client):
    body = fixture("m1-sodium-thiosulfate-offered-on-haemodialysis-with-crp-trend")  # variant K
    body["prefetch"]["conditions"]["entry"] = [
        e for e in body["prefetch"]["conditions"]["entry"] if e["resource"]["id"] == "calciphylaxis"
    ]
    body["prefetch"]["procedures"] = None
    set_value(body, "pth", 45)
    set_value(body, "phosphate", 3.2)
    set_value(body, "egfr", 62)
    card = next(c for c in call(client, body) if "mineral review" in c["summary"])
    assert "low bone turnover" not in card["detail"] and "reference ranges" in card["detail"]
    assert "below target" not in card["detail"]


def test_f22_an_aluminium_magnesium_antacid_is_not_replaced_by_a_phosphate_binder(client):
    body = fixture("c5-aluminium-magnesium-antacid-out-of-scope")  # variant H: eGFR 8
    body["prefetch"]["egfr"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "egfr-8",
                    "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "98979-8"}]},
                    "subject": {"reference": f"Patient/{body['context']['patientId']}"},
                    "effectiveDateTime": "2026-11-16T08:30:00Z",
                    "valueQuantity": {"value": 8, "unit": "mL/min/{1.73_m2}"},
                }
            }
        ],
    }
    cards = call(client, body)
    assert cards and all(codes(card) == [] for card in cards)
    assert any("not a phosphate binder" in card["detail"] for card in cards if card["indicator"] == "warning")


def test_f23_no_check_incomplete_card_for_iron_with_normal_kidney_function(client):
    body = fixture("c4-ferrous-sulfate-out-of-scope")  # variant M: conditions removed
    body["prefetch"].pop("conditions")
    assert call(client, body) == []


def test_f24_a_critical_card_offers_no_3_month_snooze(client):
    card = only_card(client, fixture("c1-calcium-acetate-calciphylaxis"))
    assert card["indicator"] == "critical"
    assert "addressed-with-nephrology-3-months" not in {r["code"] for r in card["overrideReasons"]}
    assert "benefit-outweighs-risk-review-1-month" in {r["code"] for r in card["overrideReasons"]}


def test_f31_created_orders_carry_a_coded_route_and_their_indication(client):
    card = only_card(client, fixture("c2-warfarin-calciphylaxis-atrial-fibrillation"))
    (order,) = created(card)
    assert order["dosageInstruction"][0]["route"]["coding"][0] == {
        "system": SNOMED,
        "code": "26643006",
        "display": "Oral route",
    }
    assert order["reasonReference"] == [{"reference": "Condition/af"}]


def test_f32_doses_below_1_mg_are_shown_in_micrograms(client):
    card = only_card(client, fixture("c3-calcitriol-calciphylaxis-cinacalcet"))
    assert "calcitriol 0.25 mcg" in card["summary"] and "0.00025 MG" not in card["summary"]


def test_f34_cards_come_critical_first(client):
    cards = call(client, fixture("m1-calciphylaxis-active-trigger-medications"))
    order = {"critical": 0, "warning": 1, "info": 2}
    assert [order[c["indicator"]] for c in cards] == sorted(order[c["indicator"]] for c in cards)
    assert cards[-1]["indicator"] == "info"


def test_f35_a_crp_never_measured_is_not_called_overdue(client):
    cards = call(client, fixture("c1-calcium-acetate-on-home-medication-list-patient-view"))
    review = next(c for c in cards if "mineral review" in c["summary"])
    assert "CRP not measured" in review["summary"] and "CRP overdue" not in review["summary"]


def test_f21_fluindione_coded_only_by_its_atc_code_is_a_vitamin_k_antagonist(client):
    body = fixture("c2-warfarin-calciphylaxis-atrial-fibrillation")  # variant N
    (draft,) = [e["resource"] for e in body["context"]["draftOrders"]["entry"]]
    draft["medicationCodeableConcept"] = {
        "coding": [{"system": "http://www.whocc.no/atc", "code": "B01AA12"}],
        "text": "Fluindione (Préviscan) 20 mg",
    }
    card = only_card(client, body)
    assert card["indicator"] == "critical" and "`C2-vka-calciphylaxis`" in card["detail"]
    assert "ATC B01AA12" in card["detail"]


def test_f21_fluindione_written_by_its_brand_alone_is_recognised(client):
    body = fixture("c2-warfarin-calciphylaxis-atrial-fibrillation")
    (draft,) = [e["resource"] for e in body["context"]["draftOrders"]["entry"]]
    draft["medicationCodeableConcept"] = {"text": "Previscan 20mg 1 cp le soir"}
    card = only_card(client, body)
    assert "`C2-vka-calciphylaxis`" in card["detail"] and "brand name" in card["detail"]


def test_f13_active_vitamin_d_with_high_calcium_on_dialysis_is_put_on_hold_not_stopped(client):
    body = fixture("c3-calcitriol-dialysis-high-calcium")
    (order,) = [e["resource"] for e in body["context"].pop("draftOrders")["entry"]]
    body["context"].pop("selections", None)
    order["status"] = "active"
    body["hook"] = "patient-view"
    body["prefetch"]["meds"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": order}]}
    card = only_card(client, body)
    assert card["summary"].startswith("Hold calcitriol")
    ((update,),) = [s["actions"] for s in card["suggestions"]]
    assert update["type"] == "update" and update["resource"]["status"] == "on-hold"
    assert "above 10.2 mg/dL" in update["resource"]["statusReason"]["text"]
