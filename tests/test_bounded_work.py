"""Every input's work is bounded (issue 20): the name matcher reads at most MAX_MATCHED_TEXT
characters of a text and at most CALL_TEXT_BUDGET characters per call (its caches answer texts
seen before for free); what it did not read is named on the cards, and its caches hold only
bounded keys."""

from __future__ import annotations

import copy
import json

from cds_service.patient import terminology as term
from cds_service.patient.chart import CALL_TEXT_BUDGET
from tests.conftest import FIXTURES

CALCIPHYLAXIS = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text())


def _post(client, body):
    body = copy.deepcopy(body)
    body.pop("_expected", None)
    return client.post(f"/cds-services/calciphylaxis-{body['hook']}", json=body)


def test_a_huge_drug_text_is_read_to_its_bound_and_the_card_says_so(client):
    body = copy.deepcopy(CALCIPHYLAXIS)
    text = "calcium acetate 667 mg " + "lorem ipsum dolor sit amet " * 40_000  # about 1 MB
    body["context"]["draftOrders"]["entry"][0]["resource"]["medicationCodeableConcept"] = {"text": text}
    (card,) = _post(client, body).get_json()["cards"]
    assert card["indicator"] == "critical"
    assert f"longer than {term.MAX_MATCHED_TEXT} characters were read to that length" in card["detail"]


def test_a_short_text_is_always_read_in_full():
    text = "x " * ((term.MAX_MATCHED_TEXT - 20) // 2) + "warfarin"
    assert len(text) <= term.MAX_MATCHED_TEXT
    assert term.bounded_text(text) == (text, False)
    assert term.drug_classes_for_text(text) == {"vka"}


def test_a_text_is_cut_at_a_word_boundary_never_inside_a_drug_name():
    text = "y" * (term.MAX_MATCHED_TEXT - 4) + " calcitriol 0.25 mcg"
    cut, was_cut = term.bounded_text(text)
    assert was_cut and len(cut) <= term.MAX_MATCHED_TEXT
    assert not cut.endswith("calc")  # a stem that could read as a truncated drug name
    assert term.drug_classes_for_text(text) == frozenset()


def test_the_matcher_caches_hold_only_bounded_keys():
    term.match_drug_text("calcium acetate " + "z" * 50_000)
    term.match_condition_text("calciphylaxis " + "z" * 50_000)
    for cached in (term._match_drug_text, term._match_condition_text):
        assert cached.cache_info().maxsize is not None
    # the cache wrappers receive the bounded text only
    assert term.bounded_text("a" * 50_000)[0] == "a" * term.MAX_MATCHED_TEXT


def test_a_problem_list_that_spends_the_text_budget_is_read_in_part_and_no_order_is_offered(client, monkeypatch):
    from cds_service.patient import text_match

    read = []
    real = text_match.match_condition_text
    monkeypatch.setattr(text_match, "match_condition_text", lambda text: read.append(len(text)) or real(text))
    body = copy.deepcopy(CALCIPHYLAXIS)
    conditions = body["prefetch"]["conditions"]
    template = conditions["entry"][1]
    # 2,000 distinct problem texts of about 280 characters: 560,000 characters, past the budget.
    for n in range(2000):
        entry = copy.deepcopy(template)
        entry["resource"]["id"] = f"other-{n}"
        entry["resource"]["code"] = {"text": f"Seasonal allergic rhinitis episode {n} " + "with notes " * 22}
        entry["fullUrl"] = f"http://ehr.example.org/fhir/Condition/other-{n}"
        conditions["entry"].append(entry)
    (card,) = _post(client, body).get_json()["cards"]
    assert sum(read) <= CALL_TEXT_BUDGET + 2 * term.MAX_MATCHED_TEXT  # the work of this call, bounded
    assert "entries not read: the text budget of one call was spent" in card["detail"]
    assert all(a["type"] != "create" for s in card.get("suggestions", []) for a in s["actions"]), (
        "a partly read problem list withholds the one-click substitute"
    )


def test_a_long_chart_of_coded_medications_is_read_in_full(client):
    """Codes cost no text matching: thousands of RxNorm-coded orders are all read."""
    body = copy.deepcopy(CALCIPHYLAXIS)
    template = body["context"]["draftOrders"]["entry"][0]["resource"]
    entries = []
    for n in range(3000):
        order = copy.deepcopy(template)
        order["id"] = f"old-{n}"
        order["status"] = "stopped"
        order["medicationCodeableConcept"] = {"coding": [{"system": term.RXNORM, "code": "197433"}]}
        entries.append({"resource": order})
    body["prefetch"]["meds"] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    (card,) = _post(client, body).get_json()["cards"]
    assert "text budget" not in card["detail"]


def test_made_up_http_methods_share_one_metric_series(client):
    for n in range(50):
        client.open("/cds-services", method=f"BREW{n}")
    exposition = client.get("/metrics").get_data(as_text=True)
    methods = {
        line.split('method="', 1)[1].split('"', 1)[0]
        for line in exposition.splitlines()
        if line.startswith("cds_http_requests_total{") and 'method="' in line
    }
    assert not any(m.startswith("BREW") for m in methods)
    assert "other" in methods
