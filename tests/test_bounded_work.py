"""Every input's work is bounded (issue 20): the name matcher reads at most MAX_MATCHED_TEXT
characters of a text and at most MAX_NAMED_RESOURCES named resources of a prefetch key per call;
what it did not read is named on the cards, and its caches hold only bounded keys."""

from __future__ import annotations

import copy
import json

from cds_service.patient import terminology as term
from cds_service.patient.build import MAX_NAMED_RESOURCES
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


def test_a_problem_list_longer_than_the_bound_is_read_in_part_and_no_order_is_offered(client, monkeypatch):
    from cds_service.patient import text_match

    calls = []
    real = text_match.match_condition_text
    monkeypatch.setattr(text_match, "match_condition_text", lambda text: calls.append(text) or real(text))
    body = copy.deepcopy(CALCIPHYLAXIS)
    conditions = body["prefetch"]["conditions"]
    template = conditions["entry"][1]
    for n in range(MAX_NAMED_RESOURCES + 200):
        entry = copy.deepcopy(template)
        entry["resource"]["id"] = f"other-{n}"
        entry["resource"]["code"] = {"text": f"Seasonal allergic rhinitis episode {n}"}
        entry["fullUrl"] = f"http://ehr.example.org/fhir/Condition/other-{n}"
        conditions["entry"].append(entry)
    (card,) = _post(client, body).get_json()["cards"]
    assert len(calls) <= MAX_NAMED_RESOURCES + 10  # this call's problem texts, within the bound
    assert f"only the first {MAX_NAMED_RESOURCES} of" in card["detail"]
    assert "suggestions" not in card or all(
        a["type"] != "create" for s in card["suggestions"] for a in s["actions"]
    ), "a partly read problem list withholds the one-click substitute"


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
