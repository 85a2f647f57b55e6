"""EHR free text on a card is data, never markup: a drug or condition text, a unit or a resource
id cannot form a link, an image, HTML, a table cell or a new block in the card's detail, and is
bounded in length (issue 20)."""

from __future__ import annotations

import copy
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.render.markup import MAX_SHOWN_CHARS, inert, one_line
from tests.conftest import FIXTURES

CALCIPHYLAXIS = json.loads((FIXTURES / "c1-calcium-acetate-calciphylaxis.json").read_text())
EVIL = "calcium acetate [click here](https://evil.example/phish) ![x](http://evil.example/p.png) <img src=x> www.evil.example a@evil.example | col"

# Markdown that would be live: a link or image, an HTML tag, a bare URL, www. or e-mail autolink.
_LIVE = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(|(?<!\\)<[a-z/]|https?://|(?<!\\)www\.|[\w.]+(?<!\\)@\w")


def _post(client, body):
    body = copy.deepcopy(body)
    body.pop("_expected", None)
    return client.post(f"/cds-services/calciphylaxis-{body['hook']}", json=body)


def _service_markdown_removed(detail: str) -> str:
    """The detail without the service's own evidence links (markdown on purpose)."""
    return re.sub(r"\[(?:PubMed|link)\]\(https://[^)]+\)", "", detail)


def test_a_drug_text_with_links_images_and_html_stays_plain_text_on_the_card(client):
    body = copy.deepcopy(CALCIPHYLAXIS)
    body["context"]["draftOrders"]["entry"][0]["resource"]["medicationCodeableConcept"] = {"text": EVIL}
    (card,) = _post(client, body).get_json()["cards"]
    assert card["indicator"] == "critical"
    detail = _service_markdown_removed(card["detail"])
    assert not _LIVE.search(detail), detail
    assert "[click here\\](" in detail and "\\<img src=x\\>" in detail and "www\\.evil" in detail
    assert "[click here](https://" not in card["summary"]  # the summary is plain text on one line
    assert "\n" not in card["summary"]


def test_a_condition_text_unit_and_resource_id_from_the_ehr_cannot_form_markup(client):
    body = copy.deepcopy(CALCIPHYLAXIS)
    condition = body["prefetch"]["conditions"]["entry"][0]["resource"]
    condition["code"] = {"text": "Calciphylaxis\n# Heading [x](https://evil.example)"}
    condition["id"] = "calciphylaxis"
    calcium = body["prefetch"]["calcium"]["entry"][0]["resource"]
    calcium["valueQuantity"] = {"value": 2.35, "unit": "mmol/L"}
    calcium["id"] = "ca-1"
    (card,) = _post(client, body).get_json()["cards"]
    detail = _service_markdown_removed(card["detail"])
    assert not _LIVE.search(detail), detail
    assert "\n# Heading" not in detail


def test_a_very_long_drug_text_is_cut_on_the_card_and_says_so(client):
    body = copy.deepcopy(CALCIPHYLAXIS)
    body["context"]["draftOrders"]["entry"][0]["resource"]["medicationCodeableConcept"] = {
        "text": "calcium acetate 667 mg " + "x" * 20_000
    }
    (card,) = _post(client, body).get_json()["cards"]
    assert len(card["summary"]) < 140
    assert "x" * (MAX_SHOWN_CHARS + 1) not in card["detail"]
    assert "\u2026" in card["detail"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_made_inert_has_no_live_markup_no_line_break_and_a_bound(text):
    shown = inert(text)
    assert "\n" not in shown and "\r" not in shown
    assert len(shown) <= 2 * MAX_SHOWN_CHARS  # each character escaped at most once
    assert not _LIVE.search(shown)
    # Unescaping gives the one-line, cut text back: the clinician reads what the EHR wrote.
    assert re.sub(r"\\(.)", r"\1", shown) == one_line(text)


def test_an_earlier_override_is_shown_in_the_services_words_never_the_callers(client):
    from datetime import timedelta

    from cds_service.checks.findings import Snooze
    from cds_service.knowledge.content import content
    from cds_service.render.cards import _override_reason

    c = content()
    snooze = Snooze(
        "C1-calcium-binder-calciphylaxis",
        "calcium acetate",
        "critical",
        __import__("datetime").datetime.now(),
        "[evil](https://x)",
        reason_code="addressed-with-nephrology",
    )
    assert _override_reason(c, snooze) == c.override_codes["addressed-with-nephrology"]
    unknown = Snooze(
        "C1-calcium-binder-calciphylaxis",
        "calcium acetate",
        "critical",
        snooze.until + timedelta(days=1),
        "x" * 200_000,
        reason_code="not-offered",
    )
    assert "x" not in _override_reason(c, unknown)


def test_an_rxnorm_brand_in_brackets_reads_as_written():
    """Brackets alone are not markup: "[Coumadin]" in an RxNorm name stays as the EHR wrote it."""
    assert inert("warfarin sodium 5 MG Oral Tablet [Coumadin]") == "warfarin sodium 5 MG Oral Tablet [Coumadin]"
