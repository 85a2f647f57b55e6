"""Card content (cards/*.toml) and rendering: Findings -> valid CDS Hooks cards."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from fhir.resources.medicationrequest import MedicationRequest as R5MedicationRequest
from fhir.resources.R4B.medicationrequest import MedicationRequest as R4BMedicationRequest

from cds_service import engine
from cds_service.checks import RULE_INCOMPLETE, check_order, review_chart
from cds_service.checks import c1_calcium_binders as calcium_binders
from cds_service.checks import c2_vitamin_k_antagonists as vitamin_k_antagonists
from cds_service.checks import c3_active_vitamin_d as active_vitamin_d
from cds_service.checks import c4_iron as iron
from cds_service.checks import c5_aluminium_binders as aluminium_binders
from cds_service.checks import c6_calcimimetic_hypocalcaemia as calcimimetic
from cds_service.checks.findings import Finding, Gap, Substitution
from cds_service.checks.m1_mineral_status import RULE_ID as MINERAL_RULE
from cds_service.knowledge import content as card_content
from cds_service.knowledge.content import CardContentError, content, fill
from cds_service.patient import terminology
from cds_service.protocol import Card
from cds_service.render.cards import render_card
from cds_service.render.orders import stopped_resource, substitute_resource
from tests.checks.builders import (
    CALCIPHYLAXIS,
    CALCIUM_ACETATE,
    ESRD,
    HIGH_PHOSPHATE_LABS,
    NORMAL_LABS,
    active,
    cond,
    draft,
    lab,
    med,
    record,
)

OVERRIDE_SYSTEM = "https://calciphylaxis-cds.example.org/CodeSystem/override-reason"


def _card(findings) -> dict:
    assert len(findings) == 1
    card = render_card(findings[0], patient_id="p1", encounter_id="e1")
    return card.to_json() | {"rule_id": card.rule_id}


# --- the content files ----------------------------------------------------------------------


def test_every_rule_the_checks_can_fire_has_card_content():
    rules = {
        calcium_binders.RULE_CALCIPHYLAXIS,
        calcium_binders.RULE_DIALYSIS,
        calcium_binders.RULE_DIALYSIS_STALE,
        vitamin_k_antagonists.RULE_CALCIPHYLAXIS,
        vitamin_k_antagonists.RULE_DIALYSIS,
        active_vitamin_d.RULE_CALCIPHYLAXIS,
        active_vitamin_d.RULE_DIALYSIS,
        active_vitamin_d.RULE_DIALYSIS_STALE,
        iron.RULE_CALCIPHYLAXIS,
        aluminium_binders.RULE_BEYOND,
        aluminium_binders.RULE_NO_END,
        calcimimetic.RULE_HOLD,
        calcimimetic.RULE_LOW_CALCIPHYLAXIS,
        calcimimetic.RULE_LOW_DIALYSIS,
        calcimimetic.RULE_STALE,
        calcimimetic.RULE_PTH,
        MINERAL_RULE,
        RULE_INCOMPLETE,
    }
    assert rules == set(content().rules)


def test_content_is_loaded_once_per_process():
    assert content() is content()


def test_evaluating_a_request_reads_no_file(monkeypatch):
    from cds_service.engine import HookCall, evaluate
    from cds_service.fhir.prefetch import ResolvedPrefetch
    from cds_service.patient.chart import read_chart
    from tests.conftest import FIXTURES, FROZEN_NOW

    body = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text())
    engine.warm_up()  # start-up: card content, terminology tables, synonym data

    def no_reads(*args, **kwargs):
        raise AssertionError("a file was read while answering a request")

    monkeypatch.setattr(Path, "read_text", no_reads)
    monkeypatch.setattr(Path, "open", no_reads)
    chart = read_chart(ResolvedPrefetch(body["prefetch"], {}), body["context"]["patientId"])
    call = HookCall("s", body["hook"], body["hookInstance"], body["context"], chart, FROZEN_NOW)
    assert [c.rule_id for c in evaluate(call)] == ["C1-calcium-binder-calciphylaxis"]


def test_a_template_with_an_unknown_placeholder_is_refused_at_load_time():
    broken_rule = dataclasses.replace(content().rules["C2-vka-dialysis"], summary="{drug} and {patient_name}")
    broken = dataclasses.replace(content(), rules={**content().rules, "C2-vka-dialysis": broken_rule})
    with pytest.raises(CardContentError, match="patient_name"):
        card_content._check(broken)


def test_a_rule_citing_an_unknown_reference_is_refused_at_load_time():
    broken_rule = dataclasses.replace(content().rules["C2-vka-dialysis"], evidence=("nobody2020",))
    broken = dataclasses.replace(content(), rules={**content().rules, "C2-vka-dialysis": broken_rule})
    with pytest.raises(CardContentError, match="nobody2020"):
        card_content._check(broken)


def test_thresholds_in_card_texts_come_from_the_thresholds_module():
    from cds_service.knowledge import thresholds

    why = fill(content().rules["C1-calcium-binder-dialysis"].why)
    assert f"above {thresholds.CORRECTED_CALCIUM_HIGH:g} mg/dL" in why
    assert f"below {thresholds.PTH_OVERSUPPRESSED:g} pg/mL" in why


def test_each_substitute_code_is_a_confirmed_rxnorm_drug_of_the_intended_class():
    for key, spec in content().substitutes.items():
        assert terminology.drug_classes_for_code(terminology.RXNORM, spec.rxnorm) == {spec.drug_class}, key


def test_every_substitute_is_a_valid_r4_medication_request():
    order = CALCIUM_ACETATE
    for spec in content().substitutes.values():
        resource = substitute_resource(spec, order, "p1", "e1")
        model = R4BMedicationRequest.model_validate(resource)
        assert (model.status, model.intent, model.subject.reference) == ("draft", "order", "Patient/p1")
        coding = model.medicationCodeableConcept.coding[0]
        assert (coding.system, coding.code, coding.display) == (terminology.RXNORM, spec.rxnorm, spec.display)
        assert model.medicationCodeableConcept.text == spec.display
        dosage = model.dosageInstruction[0]
        assert dosage.text and dosage.timing.repeat.frequency == spec.frequency
        assert float(dosage.doseAndRate[0].doseQuantity.value) == spec.dose_value
        assert model.encounter.reference == "Encounter/e1"


def test_r5_and_dstu2_orders_get_a_substitute_in_their_own_shape():
    spec = content().substitutes["sevelamer"]
    r5 = med("calcium_binder", raw={"resourceType": "MedicationRequest", "id": "d1", "medication": {"concept": {}}})
    resource = substitute_resource(spec, r5, "p1")
    assert resource["medication"]["concept"]["coding"][0]["code"] == "749206"
    R5MedicationRequest.model_validate(resource)
    dstu2 = med("calcium_binder", rid="MedicationOrder/d1")
    resource = substitute_resource(spec, dstu2, "p1")
    assert resource["resourceType"] == "MedicationOrder" and resource["patient"] == {"reference": "Patient/p1"}
    assert resource["dosageInstruction"][0]["timing"]["repeat"] == {
        "frequency": 3,
        "period": 1,
        "periodUnits": "d",
        "when": "C",
    }


# --- rendering ------------------------------------------------------------------------------


def test_draft_order_card_suggests_substitute_first_then_deletes_the_draft():
    card = _card(
        check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=HIGH_PHOSPHATE_LABS), draft(CALCIUM_ACETATE))
    )
    assert (
        card["rule_id"] == "C1-calcium-binder-calciphylaxis"
        and "rule_id" not in Card(**{k: v for k, v in card.items() if k != "rule_id"}).to_json()
    )
    assert card["selectionBehavior"] == "at-most-one"
    first, second = card["suggestions"]
    assert first["isRecommended"] is True and "isRecommended" not in second
    assert [a["type"] for a in first["actions"]] == ["create", "delete"]
    assert first["actions"][1]["resourceId"] == "MedicationRequest/d1"
    assert first["actions"][0]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "749206"
    assert second["actions"][0]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "477347"
    assert all(s["uuid"] for s in card["suggestions"]) and card["uuid"]


def test_active_order_card_stops_the_whole_existing_order_and_creates_the_substitute():
    raw = {
        "resourceType": "MedicationRequest",
        "id": "a1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "calcium acetate"},
        "dosageInstruction": [{"text": "667 mg with meals"}],
    }
    order = med("calcium_binder", name="calcium acetate", rid="MedicationRequest/a1", status="active", raw=raw)
    card = _card(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=HIGH_PHOSPHATE_LABS), active(order)))
    create, update = card["suggestions"][0]["actions"]
    assert create["type"] == "create" and update["type"] == "update"
    stopped = update["resource"]
    assert stopped["status"] == "stopped" and stopped["statusReason"]["text"]
    assert {k: v for k, v in stopped.items() if k not in ("status", "statusReason")} == {
        k: v for k, v in raw.items() if k != "status"
    }
    assert raw["status"] == "active", "the record's copy must not be modified"
    R4BMedicationRequest.model_validate(stopped)


def test_dstu2_active_order_is_stopped_with_reason_ended():
    order = med("calcium_binder", rid="MedicationOrder/a1", status="active")
    stopped = stopped_resource(content(), order)
    assert stopped["status"] == "stopped" and "reasonEnded" in stopped and "statusReason" not in stopped


def test_order_without_id_gets_no_suggestion_and_the_card_says_why():
    order = med("calcium_binder", name="calcium acetate", rid="MedicationRequest")
    card = _card(check_order(record(conditions=[CALCIPHYLAXIS, ESRD]), draft(order)))
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert "no id" in card["detail"]


def test_summary_stays_under_140_characters_and_still_names_the_drug_and_reason():
    long_name = "calcium carbonate 1250 MG / cholecalciferol 0.01 MG / magnesium oxide 40 MG Oral Tablet [Brand]"
    order = med("calcium_binder", name=long_name)
    labs = NORMAL_LABS[:3] + (lab("pth", 120, 5), lab("pth", 130, 100), lab("calcium", 10.9, 1))
    card = _card(check_order(record(conditions=[ESRD], labs=labs), draft(order)))
    assert len(card["summary"]) < 140
    assert card["summary"].startswith("Avoid calcium carbonate")
    assert card["summary"].endswith("PTH is below 150 pg/mL on 2 consecutive results")


def test_detail_lists_each_value_with_unit_date_method_and_source():
    labs = (lab("calcium", 2.5, original=(0.624, "mmol/L")), lab("albumin", 3.0, original=(30, "g/L")))
    labs = (dataclasses.replace(labs[0], value=10.0), labs[1])
    card = _card(check_order(record(conditions=[ESRD], labs=labs), draft(CALCIUM_ACETATE)))
    detail = card["detail"]
    assert "Corrected calcium: 10.8 mg/dL on 2026-11-18" in detail
    assert "albumin-corrected from total calcium 10.0 mg/dL [reported as 0.624 mmol/L]" in detail
    assert "albumin 3.0 g/dL [reported as 30 g/L]" in detail
    assert labs[0].resource_id in detail and labs[1].resource_id in detail
    assert "`C1-calcium-binder-dialysis`" in detail and "K/DOQI" in detail
    assert "Severe vascular or soft-tissue calcification: not assessed" in detail


def test_card_for_a_drug_matched_by_text_says_so():
    order = med("calcium_binder", name="Calcium acetate 667mg caps", matched_by="text")
    detail = _card(check_order(record(conditions=[CALCIPHYLAXIS, ESRD]), draft(order)))["detail"]
    assert 'recognised from its name ("Calcium acetate 667mg caps"), not from a drug code' in detail


def test_stale_values_are_marked_stale_in_the_detail():
    labs = (lab("calcium", 10.9, days_ago=60), lab("albumin", 4.0, days_ago=60))
    detail = _card(check_order(record(conditions=[ESRD], labs=labs), draft(CALCIUM_ACETATE)))["detail"]
    assert "10.9 mg/dL on 2026-09-22" in detail and "out of date: older than the monitoring interval" in detail


def test_override_reasons_are_coded_in_the_project_code_system_with_displays():
    card = _card(check_order(record(conditions=[CALCIPHYLAXIS, ESRD]), draft(CALCIUM_ACETATE)))
    reasons = card["overrideReasons"]
    assert {r["system"] for r in reasons} == {OVERRIDE_SYSTEM}
    assert {"benefit-outweighs-risk", "substitute-unsuitable", "addressed-with-nephrology"} <= {
        r["code"] for r in reasons
    }
    assert all(r["display"] for r in reasons)


def test_source_has_label_and_topic():
    card = _card(check_order(record(conditions=[CALCIPHYLAXIS, ESRD]), draft(CALCIUM_ACETATE)))
    assert card["source"]["label"] == "Calciphylaxis CDS"
    assert card["source"]["topic"]["code"] == "calcium-binder" and card["source"]["topic"]["display"]


def test_evidence_is_cited_with_links():
    card = _card(check_order(record(conditions=[CALCIPHYLAXIS, ESRD]), draft(CALCIUM_ACETATE)))
    assert "Nigwekar SU" in card["detail"] and "Am J Kidney Dis. 2015" in card["detail"]
    assert "[PubMed](https://pubmed.ncbi.nlm.nih.gov/25960299/)" in card["detail"]
    assert {
        "label": "Nigwekar et al., AJKD 2015 (MGH calciphylaxis review)",
        "url": "https://pubmed.ncbi.nlm.nih.gov/25960299/",
        "type": "absolute",
    } in card["links"]


def test_parathyroidectomy_card_states_both_thresholds():
    labs = (lab("calcium", 9.0), lab("albumin", 4.0), lab("pth", 700))
    detail = _card(
        check_order(
            record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs), draft(med("active_vitamin_d", name="calcitriol"))
        )
    )["detail"]
    assert "above 500 pg/mL" in detail and "1000-1500 pg/mL" in detail and "limited" in detail


def test_mineral_summary_card_shows_a_results_table_and_the_thiosulfate_conflict():
    labs = (lab("calcium", 9.9), lab("albumin", 4.0), lab("phosphate", 6.5), lab("pth", 280, days_ago=140))
    card = _card(review_chart(record(conditions=[CALCIPHYLAXIS, ESRD], labs=labs)))
    assert card["indicator"] == "info" and "suggestions" not in card
    # ESRD alone does not say haemodialysis: sodium thiosulfate is named, not offered as an order.
    assert card["summary"] == (
        "Calciphylaxis mineral review: 3 out of target; Intact PTH overdue; CRP not measured; no sodium thiosulfate"
    )
    assert "| Phosphate | 6.5 mg/dL on 2026-11-18" in card["detail"]
    assert "| 3.5-5.5 mg/dL | above target |" in card["detail"]
    assert "meta-analysis found no association" in card["detail"]


def test_check_incomplete_card_names_the_drug_and_what_was_missing_and_why():
    findings = check_order(record(unavailable={"conditions": "FHIR server timed out"}), draft(CALCIUM_ACETATE))
    card = _card(findings)
    assert card["summary"] == (
        "Calciphylaxis check not completed for calcium acetate 667 MG Oral Tablet: conditions (diagnoses) unavailable"
    )
    assert "conditions (diagnoses): not available (FHIR server timed out)" in card["detail"]
    assert card["indicator"] == "info" and "suggestions" not in card


def test_every_finding_shape_renders_to_a_valid_card():
    # Card() validation enforces the wire rules (summary length, no empty members, at-most-one ...).
    valve = cond("prosthetic_valve")
    cases = [
        check_order(record(conditions=[CALCIPHYLAXIS, valve]), draft(med("vka", name="warfarin"))),
        check_order(record(conditions=[ESRD]), draft(med("vka", name="warfarin"))),
        check_order(
            record(conditions=[CALCIPHYLAXIS, ESRD], labs=(lab("calcium", 7.9),)), active(med("active_vitamin_d"))
        ),
    ]
    for findings in cases:
        card = render_card(findings[0], patient_id="p1")
        assert isinstance(card, Card) and card.rule_id == findings[0].rule_id


def test_a_gap_for_an_unreadable_lab_says_why():
    finding = Finding(
        rule_id="C1-calcium-binder-dialysis",
        indicator="warning",
        review=draft(CALCIUM_ACETATE),
        reasons=("corrected_calcium_high",),
        substitutions=(Substitution("sevelamer", True),),
        gaps=(Gap("lab_unusable", {"analyte": "pth", "why": "unit 'mEq/L' cannot be converted"}),),
    )
    detail = render_card(finding, patient_id="p1").detail
    assert "Intact PTH: a result could not be used (unit 'mEq/L' cannot be converted)" in detail


# --- issue 14: a chart-level order to create, withholding, order dates, CRP trend ------------

HAEMODIALYSIS = cond("dialysis", "Hemodialysis (procedure)", rid="Procedure/hd-1")


def test_the_mineral_review_offers_sodium_thiosulfate_as_a_new_r4_order_and_replaces_nothing():
    card = _card(review_chart(record(conditions=[CALCIPHYLAXIS, HAEMODIALYSIS], labs=NORMAL_LABS)))
    (suggestion,) = card["suggestions"]
    assert card["selectionBehavior"] == "at-most-one" and "isRecommended" not in suggestion
    (action,) = suggestion["actions"]
    assert action["type"] == "create" and "resourceId" not in action
    model = R4BMedicationRequest.model_validate(action["resource"])
    coding = model.medicationCodeableConcept.coding[0]
    assert (coding.system, coding.code) == (terminology.RXNORM, "237832")
    dosage = model.dosageInstruction[0]
    assert dosage.route.text == "intravenous"
    assert (dosage.timing.repeat.frequency, float(dosage.timing.repeat.period), dosage.timing.repeat.periodUnit) == (
        3,
        1.0,
        "wk",
    )
    assert (float(dosage.doseAndRate[0].doseQuantity.value), dosage.doseAndRate[0].doseQuantity.code) == (25.0, "g")
    assert model.subject.reference == "Patient/p1" and model.encounter.reference == "Encounter/e1"
    assert card["summary"].endswith("no sodium thiosulfate (order offered)")
    assert "✔ On haemodialysis (Hemodialysis (procedure) (Procedure/hd-1))" in card["detail"]
    assert "12.5-25 g" in card["detail"] and "meta-analysis" in card["detail"]


def test_sodium_thiosulfate_order_is_a_valid_r5_medication_request_too():
    from cds_service.render.orders import new_order

    R5MedicationRequest.model_validate(new_order(content().substitutes["sodium_thiosulfate"], "R5", "p1"))


def test_withholding_an_active_calcimimetic_puts_the_whole_order_on_hold():
    raw = {
        "resourceType": "MedicationRequest",
        "id": "a1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "cinacalcet 30 mg"},
    }
    order = med("calcimimetic", name="cinacalcet 30 mg", rid="MedicationRequest/a1", status="active", raw=raw)
    labs = (lab("calcium", 7.0), lab("albumin", 4.0))
    card = _card(check_order(record(conditions=[ESRD], labs=labs), active(order)))
    assert card["indicator"] == "critical" and card["summary"].startswith("Withhold cinacalcet 30 mg:")
    (suggestion,) = card["suggestions"]
    (update,) = suggestion["actions"]
    assert update["type"] == "update" and update["resource"]["status"] == "on-hold"
    assert update["resource"]["statusReason"]["text"].startswith("Withheld")
    R4BMedicationRequest.model_validate(update["resource"])
    assert "withholds the order" in card["detail"] and "back to 8 mg/dL" in card["detail"]


def test_withholding_a_draft_removes_it_and_a_dose_given_cannot_be_held():
    labs = (lab("calcium", 7.0), lab("albumin", 4.0))
    card = _card(check_order(record(conditions=[ESRD], labs=labs), draft(med("calcimimetic", name="cinacalcet"))))
    assert card["suggestions"][0]["actions"] == [
        {"type": "delete", "description": "Remove the draft order for cinacalcet", "resourceId": "MedicationRequest/d1"}
    ]
    given = dataclasses.replace(
        med("calcimimetic", name="etelcalcetide 5 mg", rid="MedicationAdministration/x"), kind="administration"
    )
    card = _card(check_order(record(conditions=[ESRD], labs=labs), active(given)))
    assert "suggestions" not in card and "hold the standing order" in card["detail"]


def test_an_iron_card_given_as_doses_does_not_tell_to_stop_the_order():
    given = dataclasses.replace(
        med("iron", name="Venofer 100 mg", rid="MedicationAdministration/x"), kind="administration"
    )
    card = _card(check_order(record(conditions=[CALCIPHYLAXIS]), active(given)))
    assert card["indicator"] == "warning" and "suggestions" not in card
    assert "standing order" not in card["detail"] and "Whether to stop iron" in card["detail"]


def test_aluminium_card_lists_the_dates_it_used():
    raw = {
        "resourceType": "MedicationRequest",
        "id": "d1",
        "status": "draft",
        "authoredOn": "2026-11-21",
        "dispenseRequest": {"expectedSupplyDuration": {"value": 6, "code": "wk"}},
    }
    order = med("aluminium_binder", name="aluminium hydroxide 475 mg", raw=raw)
    detail = _card(check_order(record(conditions=[ESRD], labs=(lab("phosphate", 7.0),)), draft(order)))["detail"]
    assert "- Start: 2026-11-21 (read from authoredOn)" in detail
    assert (
        "- Runs to 2027-01-02, 42 days from the start (read from dispenseRequest.expectedSupplyDuration: 42 days)"
        in detail
    )


def test_crp_row_shows_no_target_and_the_trend():
    labs = (*NORMAL_LABS, lab("crp", 12.0, days_ago=5), lab("crp", 30.0, days_ago=40))
    detail = _card(review_chart(record(conditions=[CALCIPHYLAXIS], labs=labs)))["detail"]
    row = next(line for line in detail.splitlines() if line.startswith("| CRP |"))
    assert "12.0 mg/L on 2026-11-16" in row and "no monitoring interval given" in row
    assert row.endswith("| down from 30.0 mg/L on 2026-10-12 |") and "in range" not in row


def test_an_order_nested_too_deeply_to_echo_back_gets_no_update_but_a_card():
    from cds_service.render.orders import MAX_RESOURCE_DEPTH, TooDeep, copy_resource

    shallow = {"a": [{"b": 1}, 2], "c": {"d": [3, [4]]}}
    copied = copy_resource(shallow)
    assert copied == shallow and copied["a"] is not shallow["a"] and copied["c"]["d"][1] is not shallow["c"]["d"][1]
    deep: dict = {"resourceType": "MedicationStatement", "id": "s1", "status": "active"}
    node = deep
    for _ in range(MAX_RESOURCE_DEPTH + 5):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(TooDeep):
        copy_resource(deep)
    order = med("calcium_binder", name="calcium acetate", rid="MedicationStatement/s1", status="active", raw=deep)
    card = _card(check_order(record(conditions=[CALCIPHYLAXIS, ESRD], labs=NORMAL_LABS), active(order)))
    assert card["indicator"] == "critical" and "suggestions" not in card
