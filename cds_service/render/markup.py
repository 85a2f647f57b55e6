"""Text from the EHR (or any caller) made inert inside a card's markdown detail.

A card's detail is GitHub-flavoured markdown that the EHR renders. Drug names, condition texts,
units and resource ids come from the EHR's free text, which anyone who can write a medication or
a problem-list entry controls: written into the detail as they are, "[see here](https://...)"
becomes a live link, "![x](...)" an image, "<b>" markup, "|" a table cell, a line break a new
block, and "www.example.com" or a bare "https://" address an automatic link. ``inert`` escapes
every character that can start one of those (a backslash escape renders as the character
itself, so the clinician reads the text unchanged; a bracket is escaped only where it would
close a link's text, so "[Coumadin]" in an RxNorm name reads as written) and bounds its length; the service's own
content (cards/*.toml) is markdown on purpose and is never passed through it.
"""

from __future__ import annotations

import re

__all__ = ["MAX_SHOWN_CHARS", "inert", "one_line", "plain"]

# The longest piece of EHR text a card quotes (a medication or condition text is far shorter;
# a longer one is cut, and says so).
MAX_SHOWN_CHARS = 200

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
# Markdown punctuation that can open emphasis, code, HTML, a table cell, strikethrough or an escape
# of its own. Brackets alone are plain text (an RxNorm name's "[Coumadin]" stays as it is): a link or
# an image needs "](" or "][" right after the text, and that bracket is escaped (_LINK_OPENING). A
# reference definition would have to start a line, and the text is kept on one line.
_SPECIAL = re.compile(r"([\\`*_<>|~])")
_LINK_OPENING = re.compile(r"\](?=[(\[])")
# What GFM turns into links without any markup: a scheme's "://", "www.", e-mail addresses.
_AUTOLINK = re.compile(r"(?i)(?<=:)//|(?<=www)\.|@")


def one_line(text: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` on one line (control characters and line breaks become spaces), at most
    ``limit`` characters (an ellipsis marks a cut)."""
    value = _CONTROL.sub(" ", str(text)).strip()
    if len(value) > limit:
        value = value[: limit - 1].rstrip() + "\u2026"
    return value


# Anything ``inert`` would change: most texts (a drug name, a unit, a date) hold none of it and
# are returned as they are after one search.
_TO_ESCAPE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\\`*_<>|~@]|\][(\[]|://|(?i:www)\.")


def inert(text: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` safe to place anywhere in a markdown detail: one line, bounded, no markup."""
    if type(text) is str and len(text) <= limit and text == text.strip() and not _TO_ESCAPE.search(text):
        return text
    value = _LINK_OPENING.sub(r"\\]", _SPECIAL.sub(r"\\\1", one_line(text, limit)))
    return _AUTOLINK.sub(lambda m: "\\" + m.group(0) if m.group(0) != "//" else "\\/\\/", value)


# In a plain-text field (a card's summary, a suggestion's label) there is nothing to escape, but
# an EHR that renders it as markdown anyway, or turns addresses into links, must find nothing to
# act on: the characters that open emphasis, code or HTML are dropped, a bracket that would close
# a link's text is parted from what follows ("[Coumadin]" stays), and addresses are broken
# ("https: //", "www .", "a @b").
_PLAIN_DROPPED = re.compile(r"[\\`*<>|~]+")
_PLAIN_LINK_OPENING = re.compile(r"\](?=[(\[])")
_PLAIN_ADDRESS = re.compile(r"(?i)(?<=:)(?=//)|(?<=www)(?=\.)|(?=@)")


def plain(text: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` for a plain-text field: one line, bounded, without markup, with web and e-mail
    addresses broken so that no renderer makes them links."""
    value = _PLAIN_DROPPED.sub("", one_line(text, limit))
    return _PLAIN_ADDRESS.sub(" ", _PLAIN_LINK_OPENING.sub("] ", value))
