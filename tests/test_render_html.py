"""The card preview page (render/html.py): cards as an EHR shows them, and card text never markup."""

from __future__ import annotations

import json

import pytest

from cds_service.config import Settings
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.pages import CSP
from cds_service.pipeline import run_hook
from cds_service.protocol import (
    Action,
    Card,
    CDSResponse,
    Coding,
    Link,
    OverrideReason,
    Source,
    Suggestion,
)
from cds_service.render.html import is_safe_url, render_markdown, render_preview
from cds_service.services import SERVICES
from tests.conftest import FIXTURES, FROZEN_NOW
from tests.html_support import event_handler_attributes, parse

SOURCE = Source(
    label="Calciphylaxis CDS",
    topic=Coding(
        system="https://calciphylaxis-cds.example.org/CodeSystem/card-topic",
        code="calcium-binder",
        display="Calcium-based phosphate binder",
    ),
)
REASON_SYSTEM = "https://calciphylaxis-cds.example.org/CodeSystem/override-reason"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)><iframe src="https://evil.example"></iframe>'


def card(**overrides) -> Card:
    values = dict(summary="Stop calcium acetate", indicator="critical", source=SOURCE) | overrides
    return Card(**values)


def page_of(*cards: Card, **kwargs) -> str:
    return render_preview(CDSResponse(cards=list(cards)), title=kwargs.pop("title", "Preview"), **kwargs)


def fixture_response(name: str) -> CDSResponse:
    body = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    body.pop("_expected", None)
    service = next(s for s in SERVICES.values() if s.hook == body["hook"])
    return run_hook(service, body, PrefetchResolver(Settings()), now=lambda: FROZEN_NOW)[1]


# --- safety ---------------------------------------------------------------------------------


def test_card_text_with_script_never_becomes_a_script_element():
    page = page_of(
        card(
            summary='Stop <script>alert("summary")</script> now',
            detail=f"**Why.** {HOSTILE}\n\n{HOSTILE}\n\n<script>\nalert(2)\n</script>\n",
            rule_id='C1"><script>alert(3)</script>',
            suggestions=[Suggestion(label="<script>alert(4)</script>", actions=None)],
            selectionBehavior="at-most-one",
            overrideReasons=[OverrideReason(system=REASON_SYSTEM, code="x<y", display="<b>bold</b> reason")],
            links=[Link(label="<script>alert(5)</script>", url="https://example.org/?a=<b>", type="absolute")],
        ),
        title="<script>alert(6)</script>",
        request_summary="<img src=x onerror=alert(7)>",
    )
    root = parse(page)
    assert root.find_all("script") == []
    assert root.find_all("img") == [] and root.find_all("iframe") == [] and root.find_all("b") == []
    assert event_handler_attributes(root) == []
    # The text is still there for the reader, as text.
    assert 'Stop <script>alert("summary")</script> now' in root.find("h2").text()
    assert "<b>bold</b> reason" in root.find("ul", cls="override-list").text()
    assert "&lt;script&gt;" in page and "<script" not in page


def test_markdown_raw_html_and_images_are_text_and_only_web_links_are_links():
    rendered = render_markdown(
        "A [safe link](https://pubmed.ncbi.nlm.nih.gov/25960299/), a [bad one](javascript:alert(1)),"
        " [data](data:text/html;base64,PHNjcmlwdD4=), [file](file:///etc/passwd), [relative](/x)"
        ' and ![tracker](https://tracker.example/p.png) <a href="javascript:alert(2)">raw</a>'
    )
    root = parse(rendered)
    links = root.find_all("a")
    # An image is never loaded: it becomes a link to the picture.
    assert [a.attrs["href"] for a in links] == [
        "https://pubmed.ncbi.nlm.nih.gov/25960299/",
        "https://tracker.example/p.png",
    ]
    assert all(a.attrs["rel"] == "noopener noreferrer" and a.attrs["target"] == "_blank" for a in links)
    assert root.find_all("img") == []
    assert "javascript:" not in " ".join(a.attrs.get("href", "") for a in root.iter() if a.tag == "a")
    assert '<a href="javascript:alert(2)">raw</a>' in root.text()


def test_card_links_get_noopener_and_unsafe_urls_are_shown_not_linked():
    page = page_of(
        card(
            links=[
                Link(label="Nigwekar 2015", url="https://pubmed.ncbi.nlm.nih.gov/25960299/", type="absolute"),
                Link(label="Wound app", url="https://apps.example.org/launch", type="smart", appContext="x"),
                Link(label="Sneaky", url="javascript:alert(1)", type="absolute"),
            ]
        )
    )
    section = parse(page).find("section", cls="card__links")
    anchors = section.find_all("a")
    assert [a.attrs["href"] for a in anchors] == [
        "https://pubmed.ncbi.nlm.nih.gov/25960299/",
        "https://apps.example.org/launch",
    ]
    assert all(a.attrs["rel"] == "noopener noreferrer" for a in anchors)
    assert "SMART app" in section.text()
    assert "Sneaky javascript:alert(1)" in section.text()


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://example.org/a", True),
        ("http://example.org", True),
        ("mailto:cds@example.org", True),
        ("javascript:alert(1)", False),
        (" JavaScript:alert(1)", False),
        ("data:text/html,x", False),
        ("//example.org/x", False),
        ("/relative", False),
        ("https:///no-host", False),
    ],
)
def test_only_absolute_web_and_mail_urls_are_safe(url, safe):
    assert is_safe_url(url) is safe


def test_the_page_is_self_contained_and_forbids_scripts():
    root = parse(page_of(card(detail="[x](https://example.org)")))
    assert root.find("html").attrs["lang"] == "en"
    assert root.find("meta", http_equiv="Content-Security-Policy").attrs["content"] == CSP
    assert "default-src 'none'" in CSP and "script-src" not in CSP
    # Nothing to fetch: no stylesheet, script, image or frame references.
    assert root.find_all("link") == [] and root.find_all("script") == [] and root.find_all("img") == []
    assert all("src" not in n.attrs for n in root.iter())


# --- what an EHR shows ----------------------------------------------------------------------


def test_each_indicator_has_its_class_and_a_text_label():
    root = parse(
        page_of(
            card(indicator="critical", summary="A critical card"),
            card(indicator="warning", summary="A warning card"),
            card(indicator="info", summary="An info card"),
        )
    )
    articles = root.find_all("article")
    assert [a.attrs["data-indicator"] for a in articles] == ["critical", "warning", "info"]
    for article, label in zip(articles, ["Critical", "Warning", "Info"], strict=True):
        indicator = article.attrs["data-indicator"]
        assert f"card--{indicator}" in article.classes
        badge = article.find("span", cls=f"indicator--{indicator}")
        assert badge.text().endswith(label), "the indicator is named in text, not by colour only"
    assert "3 cards: 1 critical, 1 warning, 1 info" in root.find("header").text()


def test_markdown_tables_lists_and_bold_render_as_html():
    detail = (
        "**Latest results against targets**\n\n"
        "| Test | Latest | Target | Status |\n| --- | --- | --- | --- |\n"
        "| Corrected calcium | 10.3 mg/dL on 2026-11-16 | 8.4-9.5 mg/dL | above target |\n"
        "| Phosphate | 6.4 mg/dL | 3.5-5.5 mg/dL | above target |\n\n"
        "- first\n- second with `code`\n"
    )
    root = parse(page_of(card(indicator="info", detail=detail)))
    table = root.find("table")
    assert [th.text() for th in table.find_all("th")] == ["Test", "Latest", "Target", "Status"]
    assert len(table.find("tbody").find_all("tr")) == 2
    assert "Corrected calcium" in table.text()
    assert [li.text() for li in root.find("div", cls="card__detail").find_all("li")] == ["first", "second with code"]
    assert root.find("div", cls="card__detail").find("strong").text() == "Latest results against targets"


def test_suggestions_are_disabled_buttons_with_the_recommended_one_marked_and_actions_listed():
    create = Action(
        type="create",
        description="Create a draft order: sevelamer carbonate 800 MG Oral Tablet",
        resource={
            "resourceType": "MedicationRequest",
            "status": "draft",
            "medicationCodeableConcept": {"text": "sevelamer carbonate 800 MG Oral Tablet"},
        },
    )
    delete = Action(type="delete", description="Remove the draft order", resourceId="MedicationRequest/draft-ca")
    root = parse(
        page_of(
            card(
                suggestions=[
                    Suggestion(label="Replace with sevelamer", isRecommended=True, actions=[create, delete]),
                    Suggestion(label="Replace with lanthanum", actions=[create]),
                ],
                selectionBehavior="at-most-one",
            )
        )
    )
    section = root.find("section", cls="card__suggestions")
    assert "choose at most one" in section.find("h3").text()
    buttons = section.find_all("button")
    assert [b.text() for b in buttons] == ["Replace with sevelamer Recommended", "Replace with lanthanum"]
    assert all("disabled" in b.attrs for b in buttons), "a preview orders nothing"
    assert "btn--primary" in buttons[0].classes and "btn--primary" not in buttons[1].classes
    first = section.find_all("li", cls="suggestion")[0]
    actions = [li.text() for li in first.find_all("li", cls="action")]
    assert actions == [
        "create Create a draft order: sevelamer carbonate 800 MG Oral Tablet "
        "MedicationRequest draft: sevelamer carbonate 800 MG Oral Tablet",
        "delete Remove the draft order MedicationRequest/draft-ca",
    ]


def test_override_reasons_source_topic_and_rule_are_shown():
    root = parse(
        page_of(
            card(
                rule_id="C1-calcium-binder-calciphylaxis",
                overrideReasons=[
                    OverrideReason(
                        system=REASON_SYSTEM, code="benefit-outweighs-risk", display="Benefit outweighs the risk"
                    ),
                    OverrideReason(system=REASON_SYSTEM, code="substitute-unsuitable", display="Substitute unsuitable"),
                ],
            )
        )
    )
    override = root.find("section", cls="card__override")
    radios = override.find_all("input")
    assert len(radios) == 2 and all("disabled" in r.attrs for r in radios)
    assert "Benefit outweighs the risk benefit-outweighs-risk" in override.text()
    source = root.find("p", cls="card__source").text()
    assert "Source: Calciphylaxis CDS" in source
    assert "Topic: Calcium-based phosphate binder calcium-binder" in source
    assert root.find("code", cls="rule-id").text() == "C1-calcium-binder-calciphylaxis"


def test_title_and_request_summary_head_the_page_and_no_cards_says_so():
    root = parse(render_preview(CDSResponse(cards=[]), title="Cards for c1", request_summary="order-select, 1 draft"))
    assert root.find("title").text() == "Cards for c1"
    assert root.find("h1").text() == "Cards for c1"
    assert root.find("p", cls="request").text() == "order-select, 1 draft"
    assert root.find("p", cls="no-cards").text() == "No cards: nothing to flag for this request."
    assert root.find_all("article") == []


def test_system_actions_are_listed():
    response = CDSResponse(
        cards=[],
        systemActions=[
            Action(type="delete", description="Remove the duplicate draft", resourceId="MedicationRequest/1")
        ],
    )
    root = parse(render_preview(response, title="t"))
    assert "Remove the duplicate draft" in root.find("section", cls="system-actions").text()


def test_a_real_critical_card_renders_with_its_table_of_data_suggestions_and_evidence():
    response = fixture_response("c1-calcium-acetate-calciphylaxis.json")
    root = parse(render_preview(response, title="c1"))
    (article,) = root.find_all("article")
    assert article.attrs["data-indicator"] == "critical"
    assert article.find("h2").text().startswith("Stop calcium acetate 667 MG Oral Tablet")
    detail = article.find("div", cls="card__detail")
    assert "Corrected calcium: 9.7 mg/dL on 2026-11-16" in detail.text()
    assert "**" not in detail.text(), "markdown bold is rendered, not shown"
    assert any(a.attrs["href"] == "https://pubmed.ncbi.nlm.nih.gov/25960299/" for a in detail.find_all("a"))
    buttons = article.find("section", cls="card__suggestions").find_all("button")
    assert buttons[0].text() == "Replace with sevelamer carbonate 800 mg three times daily with meals Recommended"
    assert root.find_all("script") == [] and event_handler_attributes(root) == []
