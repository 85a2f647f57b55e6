"""Free-text recognition of drugs and conditions, driven by ``data/synonyms.toml``.

Two entry points:

* :func:`match_drug_text` - the drug classes a medication text names (``"Renvela 800mg tab"``,
  ``"calcitirol 0.25 mcg"``), or ``None``.
* :func:`match_condition_text` - the condition kinds a problem/procedure text names, each flagged
  ``negated`` when the text says it is absent ("no AF", "calciphylaxis ruled out").

Order of precedence for drugs: false friends first ("leucovorin calcium", "calcipotriol",
"calcium channel blocker": no class, or only the right one), then exact whole-word names, brands
and abbreviations (case-insensitive; punctuation, hyphens, (R)/(TM) signs, extra spaces and trailing
strength/form text are tolerated), then misspellings and truncations under strict rapidfuzz
thresholds (never against abbreviations, short brands or known look-alikes).

``matched_words`` is always the exact substring of the input that matched, so a card can quote it.
Only the standard library and rapidfuzz are used; the synonym data is loaded once.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from rapidfuzz import fuzz, process

__all__ = [
    "ConditionTextMatch",
    "DrugTextMatch",
    "match_condition_text",
    "match_drug_text",
]

DrugHow = Literal["name", "brand", "abbreviation", "fuzzy", "spelling"]
ConditionHow = Literal["name", "abbreviation", "fuzzy"]

# Fuzzy thresholds (strict on purpose: a wrong drug class is worse than a missed misspelling).
FUZZY_MIN_SCORE = 88.0
FUZZY_MIN_LENGTH = 6  # letters in the text word and in the name
FUZZY_MIN_BRAND_LENGTH = 7  # shorter brands are never fuzzy-matched
TRUNCATION_MIN_LENGTH = 5  # a stem "paricalc" must have at least this many letters
COMPOUND_CATION_MIN_LENGTH = 6  # "calcium", "kalzium" may start a compound ("Calciumacetat"); "Ca" may not
CONDITION_FUZZY_MIN_LENGTH = 8
QUALIFIER_MAX_GAP = 1  # words allowed between "mechanical" and "valve"


@dataclass(frozen=True)
class DrugTextMatch:
    """What a drug text names. ``classes`` is the union over everything named in the text;
    ``concept``/``matched_words``/``how``/``score`` describe the first thing matched."""

    classes: frozenset[str]
    concept: str
    matched_words: str
    how: DrugHow
    score: float | None


@dataclass(frozen=True)
class ConditionTextMatch:
    kind: str
    matched_words: str
    how: ConditionHow
    negated: bool


# ------------------------------------------------------------------------------------------
# Text normalisation with an index back to the original string
# ------------------------------------------------------------------------------------------

_DROPPED_SIGNS = frozenset("®™©℠")
_TOKEN = re.compile(r"[^\W_]+")
# Between the words of a phrase: up to 6 spaces/punctuation marks, never a ";" or a line break.
_SEP = r"(?:[^\w;\n]|_){0,6}"
_RIGHT = r"(?![^\W_])"


@dataclass(frozen=True)
class _Text:
    original: str
    text: str  # diacritics folded, compatibility forms decomposed, (R)/(TM) blanked
    index: tuple[int, ...]  # position in ``text`` -> position in ``original``

    def words(self, start: int, end: int) -> str:
        """The original substring behind ``text[start:end]``."""
        if end <= start or not self.index:
            return ""
        return self.original[self.index[start] : self.index[end - 1] + 1]


# Japanese is written without spaces: a word ends where the script changes (katakana, hiragana,
# kanji, other), and a katakana drug name ends before the salt written onto it ("ワルファリンカリウム"
# is warfarin + potassium).
_KATAKANA_SALTS = ("カリウム", "ナトリウム", "カルシウム")


def _script(char: str) -> int:
    code = ord(char)
    if 0x30A0 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
        return 1  # katakana (the long-vowel mark included; half-width forms too)
    if 0x3040 <= code <= 0x309F:
        return 2  # hiragana
    if 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF:
        return 3  # kanji
    return 0


def _word_break(original: str, position: int) -> bool:
    """Whether a Japanese word starts at ``position`` although no space or mark precedes it."""
    before, here = _script(original[position - 1]), _script(original[position])
    if before != here:
        return original[position - 1].isalnum() and original[position].isalnum()
    if here != 1:
        return False
    for salt in _KATAKANA_SALTS:
        end = position + len(salt)
        if original.startswith(salt, position) and (end == len(original) or _script(original[end]) != 1):
            return True
    return False


def _normalise(original: str) -> _Text:
    chars: list[str] = []
    index: list[int] = []
    for position, char in enumerate(original):
        if position and (char >= "\u3000" or original[position - 1] >= "\u3000") and _word_break(original, position):
            chars.append(" ")
            index.append(position)
        if char < "\x80":
            chars.append(char)
            index.append(position)
            continue
        if char in _DROPPED_SIGNS:
            chars.append(" ")
            index.append(position)
            continue
        folded = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        for piece in folded:
            chars.append(piece)
            index.append(position)
    return _Text(original, "".join(chars), tuple(index))


def _tokens(phrase: str) -> list[str]:
    return [token.casefold() for token in _TOKEN.findall(_normalise(phrase).text)]


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    payload: Any


class _PhraseMatcher:
    """Leftmost-longest whole-word matching of many phrases.

    Phrases are compared word by word (words are runs of letters/digits), so punctuation, hyphens,
    (R)/(TM) signs and spacing between words do not matter, as long as the gap between two words
    is at most 6 characters and holds no ";" or line break. A multi-word phrase also matches its
    words written together ("Os-Cal" matches "OsCal"). Case-sensitive phrases compare the words
    as written; the others compare casefolded words."""

    def __init__(self, items: Iterable[tuple[str, bool, Any]]) -> None:
        self._by_first: dict[str, list[tuple[tuple[str, ...], bool, Any]]] = {}
        seen: set[tuple[tuple[str, ...], bool]] = set()
        for phrase, case_sensitive, payload in items:
            words = tuple(_TOKEN.findall(_normalise(phrase).text))
            if not words:
                continue
            variants = [words]
            joined = "".join(words)
            if len(words) > 1 and len(joined) >= 4:
                variants.append((joined,))
            for variant in variants:
                key = variant if case_sensitive else tuple(word.casefold() for word in variant)
                if (key, case_sensitive) in seen:
                    continue
                seen.add((key, case_sensitive))
                self._by_first.setdefault(key[0].casefold(), []).append((key, case_sensitive, payload))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda item: -len(item[0]))

    def spans(self, text: str) -> list[_Span]:
        tokens = [(m.start(), m.end(), m.group(0)) for m in _TOKEN.finditer(text)]
        folded = [token[2].casefold() for token in tokens]
        found: list[_Span] = []
        index = 0
        while index < len(tokens):
            best: tuple[int, Any] | None = None
            for words, case_sensitive, payload in self._by_first.get(folded[index], ()):
                last = index + len(words)
                if last > len(tokens) or (best is not None and last <= best[0]):
                    continue
                compare = [t[2] for t in tokens[index:last]] if case_sensitive else folded[index:last]
                if tuple(compare) != words:
                    continue
                if all(_gap_ok(text[tokens[k - 1][1] : tokens[k][0]]) for k in range(index + 1, last)):
                    best = (last, payload)
            if best is None:
                index += 1
                continue
            found.append(_Span(tokens[index][0], tokens[best[0] - 1][1], best[1]))
            index = best[0]
        return found

    def search(self, text: str) -> bool:
        return bool(self.spans(text))


def _gap_ok(gap: str) -> bool:
    return len(gap) <= 6 and ";" not in gap and "\n" not in gap


@dataclass(frozen=True)
class _Tok:
    start: int
    end: int
    word: str  # casefolded


def _word_tokens(text: str) -> list[_Tok]:
    return [_Tok(m.start(), m.end(), m.group(0).casefold()) for m in _TOKEN.finditer(text)]


def _neighbour_words(tokens: Sequence[_Tok], starts: Sequence[int], start: int, end: int) -> tuple[str, str]:
    """The word just before ``start`` and just after ``end`` ('' when none)."""
    before_index = bisect_right(starts, start - 1) - 1
    while before_index >= 0 and tokens[before_index].end > start:
        before_index -= 1
    after_index = bisect_left(starts, end)
    before = tokens[before_index].word if before_index >= 0 else ""
    after = tokens[after_index].word if after_index < len(tokens) else ""
    return before, after


def _resolve(spans: Iterable[_Span]) -> list[_Span]:
    """Non-overlapping spans, leftmost first, longest first at equal start."""
    chosen: list[_Span] = []
    last_end = -1
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if span.start >= last_end:
            chosen.append(span)
            last_end = span.end
    return chosen


def _free_tokens(tokens: Sequence[_Tok], spans: Sequence[_Span]) -> list[bool]:
    """For each token: True when no span (sorted, non-overlapping) covers any of it."""
    free: list[bool] = []
    ordered = sorted(spans, key=lambda s: s.start)
    index = 0
    for token in tokens:
        while index < len(ordered) and ordered[index].end <= token.start:
            index += 1
        free.append(not (index < len(ordered) and ordered[index].start < token.end))
    return free


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _term_items(values: object) -> list[dict[str, Any]]:
    """A list of strings or inline tables -> list of dicts with at least ``name``."""
    items: list[dict[str, Any]] = []
    for value in _as_list(values):
        if isinstance(value, str):
            items.append({"name": value})
        elif isinstance(value, dict) and isinstance(value.get("name"), str):
            items.append(dict(value))
    return items


def _words_set(values: object) -> frozenset[str]:
    return frozenset(token for value in _as_list(values) if isinstance(value, str) for token in _tokens(value))


# ------------------------------------------------------------------------------------------
# Drug data
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    forms: frozenset[str]
    phrases: _PhraseMatcher | None
    classes: frozenset[str]


@dataclass(frozen=True)
class _DrugTerm:
    concept: str
    classes: frozenset[str]
    how: DrugHow
    false_friend: bool
    generic: bool = False
    rules: tuple[_Rule, ...] = ()
    not_before: frozenset[str] = frozenset()
    not_after: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _DrugHit:
    start: int
    end: int
    term: _DrugTerm
    classes: frozenset[str]
    how: DrugHow
    score: float | None


@dataclass(frozen=True)
class _DrugData:
    phrases: _PhraseMatcher
    patterns: tuple[tuple[re.Pattern[str], _DrugTerm], ...]
    forms: Mapping[str, tuple[_PhraseMatcher, tuple[re.Pattern[str], ...]]]
    known_words: frozenset[str]  # every word of every name/brand/blocker (never fuzzy-matched)
    fuzzy_targets: Mapping[str, _DrugTerm]  # single words that may be fuzzy-matched
    fuzzy_blockers: tuple[str, ...]
    truncation_targets: Mapping[str, _DrugTerm]  # ingredient names a stem may abbreviate
    fuzzy_target_words: tuple[str, ...]
    truncation_words: tuple[str, ...]  # sorted
    other_known_words: tuple[str, ...]  # sorted known words that are not truncation targets
    multiword: Mapping[str, tuple[tuple[tuple[str, ...], int, _DrugTerm], ...]]  # word -> phrases
    named_terms: Mapping[str, _DrugTerm]  # drug key -> what its names are read as
    name_words: frozenset[str]  # the single-word names of drugs (not false friends)


_SYNONYM_FILES = ("synonyms.toml", "synonyms_international.toml")
_LIST_MEMBERS = (
    "names",
    "brands",
    "abbreviations",
    "form_rules",
    "patterns",
    "misspellings",
    "false_friends",
    "not_yet",
    "not_yet_after",
    "fuzzy_targets",
    "fuzzy_blockers",
)


def _load(name: str) -> dict[str, Any]:
    resource = resources.files("cds_service.patient") / "data" / name
    with resource.open("rb") as handle:
        return tomllib.load(handle)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` added to ``base``: an entry of a table present in both gets the lists of both
    (names, brands, abbreviations, form rules); a new entry is taken whole; the other tables
    (spelling rules, salts) come from the file that has them."""
    merged = dict(base)
    for section, value in extra.items():
        if section == "schema":
            continue
        if not isinstance(value, dict) or section not in merged:
            merged[section] = value
            continue
        table = dict(merged[section])
        for key, entry in value.items():
            if key in table and isinstance(table[key], dict) and isinstance(entry, dict):
                combined = dict(table[key])
                for member, items in entry.items():
                    if member in _LIST_MEMBERS:
                        combined[member] = _as_list(combined.get(member)) + _as_list(items)
                    elif member not in combined:
                        combined[member] = items
                table[key] = combined
            elif key in table and isinstance(table[key], list):
                table[key] = _as_list(table[key]) + _as_list(entry)
            else:
                table[key] = entry
        merged[section] = table
    return merged


@lru_cache(maxsize=1)
def _synonyms() -> dict[str, Any]:
    """The synonym data: ``synonyms.toml`` (English, US and UK names) with
    ``synonyms_international.toml`` (other countries, languages and scripts, and the spelling
    and salt rules) merged in."""
    data: dict[str, Any] = {}
    for name in _SYNONYM_FILES:
        data = _merge(data, _load(name))
    return data


def _form_matchers(data: Mapping[str, Any]) -> dict[str, tuple[_PhraseMatcher, tuple[re.Pattern[str], ...]]]:
    forms = data.get("forms", {})
    result: dict[str, tuple[_PhraseMatcher, tuple[re.Pattern[str], ...]]] = {}
    for name, values in forms.items():
        if name.endswith("_patterns") or not isinstance(values, list):
            continue
        # Very short cues (po, iv, inj) are matched case-insensitively but as whole words.
        matcher = _PhraseMatcher((value, False, name) for value in values if isinstance(value, str))
        patterns = tuple(re.compile(p, re.IGNORECASE) for p in _as_list(forms.get(f"{name}_patterns")))
        result[name] = (matcher, patterns)
    return result


def _rules(entry: Mapping[str, Any]) -> tuple[_Rule, ...]:
    rules: list[_Rule] = []
    for rule in _as_list(entry.get("form_rules")):
        if not isinstance(rule, dict):
            continue
        phrases = [p for p in _as_list(rule.get("phrases")) if isinstance(p, str)]
        rules.append(
            _Rule(
                forms=frozenset(f for f in _as_list(rule.get("forms")) if isinstance(f, str)),
                phrases=_PhraseMatcher((p, False, True) for p in phrases) if phrases else None,
                classes=frozenset(c for c in _as_list(rule.get("classes")) if isinstance(c, str)),
            )
        )
    return tuple(rules)


@lru_cache(maxsize=1)
def _drug_data() -> _DrugData:
    data = _synonyms()
    items: list[tuple[str, bool, _DrugTerm]] = []
    patterns: list[tuple[re.Pattern[str], _DrugTerm]] = []
    known: set[str] = set()
    concept_of_word: dict[str, set[str]] = {}
    single_targets: dict[str, _DrugTerm] = {}
    truncation: dict[str, _DrugTerm] = {}
    multi_names: list[tuple[tuple[str, ...], _DrugTerm]] = []
    named_terms: dict[str, _DrugTerm] = {}
    name_words: set[str] = set()
    blockers: set[str] = set(_words_set(data.get("fuzzy", {}).get("blockers")))

    def note(phrase: str, concept: str) -> list[str]:
        words = _tokens(phrase)
        known.update(words)
        for word in words:
            concept_of_word.setdefault(word, set()).add(concept)
        return words

    # False friends first: on an exact tie they win.
    for key, entry in data.get("false_friends", {}).items():
        classes = frozenset(c for c in _as_list(entry.get("classes")) if isinstance(c, str))
        term = _DrugTerm(concept=key, classes=classes, how="name", false_friend=True)
        for item in _term_items(entry.get("names")) + _term_items(entry.get("abbreviations")):
            name = str(item["name"])
            items.append((name, bool(item.get("case_sensitive", False)), term))
            words = note(name, key)
            blockers.update(w for w in words if w.isalpha() and len(w) >= FUZZY_MIN_LENGTH)
            if len(words) > 1:
                multi_names.append((tuple(words), term))

    for key, entry in data.get("drugs", {}).items():
        concept = str(entry.get("concept", key))
        classes = frozenset(c for c in _as_list(entry.get("classes")) if isinstance(c, str))
        rules = _rules(entry)
        fuzzy_ok = bool(entry.get("fuzzy", True))
        name_term = _DrugTerm(concept=concept, classes=classes, how="name", false_friend=False, rules=rules)
        named_terms[key] = name_term
        for item in _term_items(entry.get("names")):
            name = str(item["name"])
            items.append((name, bool(item.get("case_sensitive", False)), name_term))
            words = note(name, concept)
            if len(words) == 1:
                name_words.add(words[0])
            if not fuzzy_ok:
                blockers.update(w for w in words if w.isalpha() and len(w) >= FUZZY_MIN_LENGTH)
                continue
            if len(words) == 1 and words[0].isalpha() and len(words[0]) >= FUZZY_MIN_LENGTH:
                single_targets[words[0]] = name_term
                truncation[words[0]] = name_term
            elif len(words) > 1:
                multi_names.append((tuple(words), name_term))
        for item in _term_items(entry.get("brands")):
            name = str(item["name"])
            brand_classes = item.get("classes")
            term = _DrugTerm(
                concept=concept,
                classes=frozenset(brand_classes) if isinstance(brand_classes, list) else classes,
                how="brand",
                false_friend=False,
                rules=rules,
            )
            items.append((name, bool(item.get("case_sensitive", False)), term))
            words = note(name, concept)
            joined = "".join(words)
            if fuzzy_ok and joined.isalpha() and len(joined) >= FUZZY_MIN_BRAND_LENGTH:
                single_targets[joined] = term
        for item in _term_items(entry.get("abbreviations")):
            name = str(item["name"])
            term = _DrugTerm(
                concept=concept,
                classes=classes,
                how="abbreviation",
                false_friend=False,
                generic=bool(item.get("generic", False)),
                rules=rules,
                not_before=_words_set(item.get("not_before")),
                not_after=_words_set(item.get("not_after")),
            )
            items.append((name, bool(item.get("case_sensitive", False)), term))
            note(name, concept)
        for pattern in _as_list(entry.get("patterns")):
            if isinstance(pattern, str):
                patterns.append((re.compile(pattern, re.IGNORECASE), name_term))

    multiword: dict[str, list[tuple[tuple[str, ...], int, _DrugTerm]]] = {}
    for phrase_words, phrase_term in multi_names:
        for position, word in enumerate(phrase_words):
            multiword.setdefault(word, []).append((phrase_words, position, phrase_term))

    known.update(blockers)
    return _DrugData(
        phrases=_PhraseMatcher(items),
        patterns=tuple(patterns),
        forms=_form_matchers(data),
        known_words=frozenset(known),
        fuzzy_targets=single_targets,
        fuzzy_blockers=tuple(sorted(blockers - set(single_targets))),
        truncation_targets=truncation,
        fuzzy_target_words=tuple(single_targets),
        truncation_words=tuple(sorted(truncation)),
        other_known_words=tuple(sorted(known - set(truncation))),
        multiword={word: tuple(entries) for word, entries in multiword.items()},
        named_terms=named_terms,
        name_words=frozenset(name_words),
    )


# ------------------------------------------------------------------------------------------
# Rules for the ways other languages and hurried hands write a drug (synonyms_international.toml)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Salts:
    """Salts named by cation and anion in any listed language and order: "calcium acet",
    "Ca carb", "Calciumacetat", "acetato de calcio", "calcio carbonato"."""

    cations: Mapping[str, str]  # spelling (casefolded) -> cation key
    compound_cations: tuple[tuple[str, str], ...]  # (spelling, key) that may start a compound word
    anions: tuple[tuple[str, tuple[str, ...], int], ...]  # (key, spellings, shortest prefix)
    connectors: frozenset[str]
    products: Mapping[tuple[str, str], _DrugTerm]  # (cation, anion) -> the salt's drug entry

    def anion(self, word: str) -> str | None:
        """The anion a word spells or begins (at least its shortest prefix); None if none or two."""
        found = {
            key
            for key, spellings, shortest in self.anions
            if len(word) >= shortest and any(s.startswith(word) for s in spellings)
        }
        return found.pop() if len(found) == 1 else None

    def compound(self, word: str) -> tuple[str, str] | None:
        """(cation, anion) of a compound word such as "calciumacetat" or "kalciumkarbonat"."""
        for spelling, cation in self.compound_cations:
            if word.startswith(spelling) and len(word) > len(spelling):
                anion = self.anion(word[len(spelling) :])
                if anion is not None:
                    return cation, anion
        return None


@dataclass(frozen=True)
class _Spelling:
    """Other languages' spellings of an INN, read by rule: letters folded (ph/f, th/t, ou/u, w/v,
    y/i, k/c ...), doubled letters single, one language ending dropped (French -e, Italian and
    Spanish -a/-o, Latin -um): "Varfarina", "warfarine", "acenocumarolo", "fenprocumona",
    "calcitriolum" all reduce to what their INN reduces to."""

    folds: tuple[tuple[str, str], ...]
    endings: tuple[str, ...]
    min_letters: int
    index: Mapping[str, _DrugTerm | None]  # skeleton -> the one drug it names (None: ambiguous)

    def skeleton(self, word: str) -> str:
        for old, new in self.folds:
            word = word.replace(old, new)
        word = re.sub(r"(.)\1+", r"\1", word)
        for ending in self.endings:
            if word.endswith(ending) and len(word) - len(ending) >= self.min_letters - 2:
                return word[: -len(ending)]
        return word


@lru_cache(maxsize=1)
def _salts() -> _Salts:
    data = _synonyms().get("salts", {})
    drugs = _drug_data().named_terms
    cations: dict[str, str] = {}
    compound: list[tuple[str, str]] = []
    for key, spellings in data.get("cations", {}).items():
        for spelling in _as_list(spellings):
            folded = " ".join(_tokens(str(spelling)))
            cations[folded] = key
            if len(folded) >= COMPOUND_CATION_MIN_LENGTH and folded.isalpha():
                compound.append((folded, key))
    anions = tuple(
        (
            key,
            tuple(" ".join(_tokens(str(sp))) for sp in _as_list(entry.get("spellings"))),
            int(entry.get("min_prefix", 4)),
        )
        for key, entry in data.get("anions", {}).items()
    )
    products = {
        (str(pair[0]), str(pair[1])): drugs[key]
        for key, pair in data.get("products", {}).items()
        if isinstance(pair, list) and len(pair) == 2 and key in drugs
    }
    return _Salts(
        cations=cations,
        compound_cations=tuple(sorted(compound, key=lambda item: -len(item[0]))),
        anions=anions,
        connectors=_words_set(data.get("connectors")),
        products=products,
    )


@lru_cache(maxsize=1)
def _spelling() -> _Spelling:
    data = _synonyms().get("spelling", {})
    folds = tuple((str(a), str(b)) for a, b in (pair for pair in _as_list(data.get("folds")) if len(pair) == 2))
    rules = _Spelling(folds, tuple(str(e) for e in _as_list(data.get("endings"))), int(data.get("min_letters", 7)), {})
    index: dict[str, _DrugTerm | None] = {}
    concepts: dict[str, set[str]] = {}
    data_words = _drug_data()
    terms = data_words.named_terms
    for key, entry in _synonyms().get("drugs", {}).items():
        if entry.get("fuzzy", True) is False:
            continue
        for item in _term_items(entry.get("names")):
            words = _tokens(str(item["name"]))
            if len(words) == 1 and words[0].isalpha() and len(words[0]) >= rules.min_letters:
                skeleton = rules.skeleton(words[0])
                concepts.setdefault(skeleton, set()).add(terms[key].concept)
                index[skeleton] = terms[key]
    # Every other word the data knows (false friends, blockers, brands, salts) blocks its skeleton.
    named = {word for word in data_words.known_words if word.isalpha() and len(word) >= rules.min_letters}
    for word in named:
        skeleton = rules.skeleton(word)
        if skeleton in index and word not in data_words.name_words:
            index[skeleton] = None
    for skeleton, found in concepts.items():
        if len(found) > 1:
            index[skeleton] = None
    return _Spelling(rules.folds, rules.endings, rules.min_letters, index)


def _salt_hits(tokens: Sequence[_Tok], free: list[bool], text: str) -> list[tuple[int, int, _DrugTerm]]:
    """Salts written by cation and (truncated) anion among the free tokens: (first, last + 1, term)."""
    salts = _salts()
    found: list[tuple[int, int, _DrugTerm]] = []

    def joined(first: int, second: int) -> bool:
        return _gap_ok(text[tokens[first].end : tokens[second].start])

    index = 0
    while index < len(tokens):
        word = tokens[index].word
        pair: tuple[str, str] | None = None
        span = 1
        if free[index] and (compound := salts.compound(word)) is not None:
            pair = compound
        elif (
            free[index]
            and word in salts.cations
            and index + 1 < len(tokens)
            and free[index + 1]
            and joined(index, index + 1)
        ):
            anion = salts.anion(tokens[index + 1].word)
            pair, span = ((salts.cations[word], anion), 2) if anion is not None else (None, 1)
        if pair is None and free[index] and (anion := salts.anion(word)) is not None:
            # The anion first ("acetato de calcio", "carbonate de calcium", "acetato calcico").
            after = index + 1
            if after < len(tokens) and tokens[after].word in salts.connectors and joined(index, after):
                after += 1
            cation = tokens[after].word if after < len(tokens) and free[after] else ""
            # "Ca" only before its anion: "acetate ca" is not read as a salt.
            if cation in salts.cations and len(cation) > 2 and joined(after - 1, after):
                pair, span = (salts.cations[cation], anion), after - index + 1
        term = salts.products.get(pair) if pair is not None else None
        if term is not None:
            found.append((index, index + span, term))
            for position in range(index, index + span):
                free[position] = False
            index += span
            continue
        index += 1
    return found


@lru_cache(maxsize=8192)
def _spelling_word(word: str) -> _DrugTerm | None:
    rules = _spelling()
    if not word.isalpha() or len(word) < rules.min_letters or word in _drug_data().known_words:
        return None
    return rules.index.get(rules.skeleton(word))


def _forms_present(data: _DrugData, text: str) -> frozenset[str]:
    present = set()
    for name, (matcher, patterns) in data.forms.items():
        if matcher.search(text) or any(p.search(text) for p in patterns):
            present.add(name)
    return frozenset(present)


def _effective_classes(term: _DrugTerm, forms: frozenset[str], text: str) -> frozenset[str]:
    for rule in term.rules:
        if (rule.forms and rule.forms & forms) or (rule.phrases is not None and rule.phrases.search(text)):
            return rule.classes
    return term.classes


def _best(choices: Sequence[str], word: str) -> tuple[str, float] | None:
    if not choices:
        return None
    found = process.extractOne(word, choices, scorer=fuzz.ratio)
    if found is None:
        return None
    return str(found[0]), float(found[1])


def _with_prefix(words: Sequence[str], prefix: str) -> list[str]:
    """Words of a sorted sequence that start with ``prefix``."""
    found: list[str] = []
    for index in range(bisect_left(words, prefix), len(words)):
        if not words[index].startswith(prefix):
            break
        found.append(words[index])
    return found


@lru_cache(maxsize=8192)
def _fuzzy_word(word: str) -> tuple[_DrugTerm, float] | None:
    """A misspelt (ratio >= 88) or truncated ingredient/brand name, unless a look-alike wins."""
    data = _drug_data()
    if not word.isalpha() or word in data.known_words:
        return None
    if len(word) >= FUZZY_MIN_LENGTH:
        best = _best(data.fuzzy_target_words, word)
        if best is not None and best[1] >= FUZZY_MIN_SCORE:
            blocker = _best(data.fuzzy_blockers, word)
            if blocker is None or blocker[1] < best[1]:
                return data.fuzzy_targets[best[0]], best[1]
            return None
    if len(word) >= TRUNCATION_MIN_LENGTH:
        stems = [name for name in _with_prefix(data.truncation_words, word) if name != word]
        concepts = {data.truncation_targets[name].concept for name in stems}
        if len(concepts) == 1 and not _with_prefix(data.other_known_words, word):
            return data.truncation_targets[stems[0]], float(fuzz.ratio(word, stems[0]))
    return None


def _fuzzy_phrase(
    data: _DrugData, tokens: Sequence[_Tok], free: Sequence[bool], index: int
) -> tuple[int, int, _DrugTerm, float] | None:
    """A multi-word name with exactly one misspelt word ("calcium acetat"), anchored on an exact
    word at ``index``. Returns (first token, last token + 1, term, score)."""
    best: tuple[int, int, _DrugTerm, float] | None = None
    for words, position, term in data.multiword.get(tokens[index].word, ()):
        first = index - position
        last = first + len(words)
        if first < 0 or last > len(tokens) or not all(free[first:last]):
            continue
        mismatches = 0
        for token, word in zip(tokens[first:last], words, strict=True):
            if token.word == word:
                continue
            mismatches += 1
            if (
                mismatches > 1
                or not token.word.isalpha()
                or token.word in data.known_words
                or len(word) < FUZZY_MIN_LENGTH
                or len(token.word) < FUZZY_MIN_LENGTH - 1
                or fuzz.ratio(token.word, word) < FUZZY_MIN_SCORE
            ):
                mismatches = 99
                break
        if mismatches != 1:
            continue
        score = float(fuzz.ratio(" ".join(t.word for t in tokens[first:last]), " ".join(words)))
        if best is None or score > best[3]:
            best = (first, last, term, score)
    return best


def _exact_drug_spans(data: _DrugData, value: str) -> list[_Span]:
    candidates = list(data.phrases.spans(value))
    for pattern, term in data.patterns:
        for match in pattern.finditer(value):
            start, end = (match.start(1), match.end(1)) if match.lastindex else (match.start(), match.end())
            candidates.append(_Span(start, end, term))
    return candidates


def names_false_friend(text: str) -> bool:
    """Whether a medication text names a known look-alike (topical calcitriol, leucovorin
    calcium, calcipotriol ...): callers that have other ways to recognise a drug must not
    override the guard."""
    if not isinstance(text, str) or not text.strip():
        return False
    spans = _resolve(_exact_drug_spans(_drug_data(), _normalise(text).text))
    return any(span.payload.false_friend for span in spans)


def match_drug_text(text: str) -> DrugTextMatch | None:
    """The drug classes a medication text names, or ``None`` (nothing, or only false friends)."""
    if not isinstance(text, str) or not text.strip():
        return None
    data = _drug_data()
    norm = _normalise(text)
    value = norm.text
    forms = _forms_present(data, value)
    tokens = _word_tokens(value)
    starts = [token.start for token in tokens]

    candidates = _exact_drug_spans(data, value)
    hits: list[_DrugHit] = []
    consumed: list[_Span] = []
    for span in _resolve(candidates):
        exact: _DrugTerm = span.payload
        if exact.not_before or exact.not_after:
            before, after = _neighbour_words(tokens, starts, span.start, span.end)
            if before in exact.not_before or after in exact.not_after:
                continue
        consumed.append(span)
        exact_classes = exact.classes if exact.false_friend else _effective_classes(exact, forms, value)
        hits.append(_DrugHit(span.start, span.end, exact, exact_classes, exact.how, None))

    free = _free_tokens(tokens, consumed)
    # A salt written by cation and (truncated) anion, in any listed language and order; then
    # another language's spelling of a drug name (both admitted on the card as a spelling).
    for first, last, salt in _salt_hits(tokens, free, value):
        salt_classes = _effective_classes(salt, forms, value)
        hits.append(_DrugHit(tokens[first].start, tokens[last - 1].end, salt, salt_classes, "spelling", None))
    for index, token in enumerate(tokens):
        if not free[index] or (spelled := _spelling_word(token.word)) is None:
            continue
        free[index] = False
        hits.append(
            _DrugHit(token.start, token.end, spelled, _effective_classes(spelled, forms, value), "spelling", None)
        )

    # Misspellings and truncations, only where nothing exact matched.
    for index, token in enumerate(tokens):
        if not free[index] or token.word not in data.multiword:
            continue
        phrase = _fuzzy_phrase(data, tokens, free, index)
        if phrase is None:
            continue
        first_token, last_token, phrase_term, phrase_score = phrase
        for position in range(first_token, last_token):
            free[position] = False
        phrase_classes = (
            phrase_term.classes if phrase_term.false_friend else _effective_classes(phrase_term, forms, value)
        )
        start, end = tokens[first_token].start, tokens[last_token - 1].end
        hits.append(_DrugHit(start, end, phrase_term, phrase_classes, "fuzzy", phrase_score))
    for index, token in enumerate(tokens):
        if not free[index]:
            continue
        word = _fuzzy_word(token.word)
        if word is None:
            continue
        free[index] = False
        word_term, word_score = word
        word_classes = _effective_classes(word_term, forms, value)
        hits.append(_DrugHit(token.start, token.end, word_term, word_classes, "fuzzy", word_score))

    classes: set[str] = set()
    for hit in hits:
        classes |= hit.classes
    if "active_vitamin_d" in classes and all(
        hit.term.generic for hit in hits if "nutritional_vitamin_d" in hit.classes
    ):
        # "vitamin D3" inside an active sterol's description is not a second drug.
        classes.discard("nutritional_vitamin_d")
    if not classes:
        return None
    lead = min((hit for hit in hits if hit.classes & classes), key=lambda hit: hit.start)
    return DrugTextMatch(
        classes=frozenset(classes),
        concept=lead.term.concept,
        matched_words=norm.words(lead.start, lead.end),
        how=lead.how,
        score=lead.score,
    )


# ------------------------------------------------------------------------------------------
# Conditions
# ------------------------------------------------------------------------------------------

_VALVE_KIND = {
    "mechanical": "mechanical_valve",
    "bioprosthetic": "bioprosthetic_valve",
    "unspecified": "prosthetic_valve_unspecified",
}
# Negation scope: a negation cue reaches the term only within its clause. Before the term a comma
# also ends the scope ("No history of bleeding, ESRD on HD" keeps ESRD and HD); after the term it
# does not ("calciphylaxis, ruled out").
_CLAUSE_BREAK_BEFORE = re.compile(r"[;.:,\n]|\bbut\b|\bhowever\b", re.IGNORECASE)
_CLAUSE_BREAK_AFTER = re.compile(r"[;.:\n]|\bbut\b|\bhowever\b", re.IGNORECASE)
_MENTION_BREAK = re.compile(r"[;,\n&+]|(?<!\bst)(?<!\bSt)(?<!\bST)\.(?:\s|$)")


@dataclass(frozen=True)
class _CondTerm:
    kind: str  # a condition kind, "" for a false friend
    how: ConditionHow
    context: str = ""  # a [contexts] name this abbreviation needs nearby
    self_before: frozenset[str] = frozenset()
    self_after: frozenset[str] = frozenset()
    not_near: frozenset[str] = frozenset()
    not_before: frozenset[str] = frozenset()
    not_after: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _ValveTerm:
    role: str  # anchor, weak_anchor, qualifier, brand, standalone, exclusion
    valve: str  # mechanical / bioprosthetic / unspecified / "" (anchors, exclusions)
    not_before: frozenset[str] = frozenset()
    not_after: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Negation:
    window: int
    before: _PhraseMatcher
    suspicion: _PhraseMatcher
    after: re.Pattern[str]
    suspicion_after: re.Pattern[str]
    not_yet: Mapping[str, _PhraseMatcher]
    not_yet_after: Mapping[str, re.Pattern[str]]


@dataclass(frozen=True)
class _ConditionData:
    phrases: _PhraseMatcher
    patterns: tuple[tuple[re.Pattern[str], _CondTerm], ...]
    contexts: Mapping[str, tuple[_PhraseMatcher, int]]
    negation: _Negation
    fuzzy: Mapping[str, str]  # target word -> kind
    fuzzy_blockers: tuple[str, ...]
    known_words: frozenset[str]
    valves: _PhraseMatcher


def _after_regex(cues: Iterable[str], allow_word: bool) -> re.Pattern[str]:
    alternatives = sorted(
        (_SEP.join(re.escape(w) for w in _TOKEN.findall(cue)) for cue in cues if _TOKEN.findall(cue)),
        key=len,
        reverse=True,
    )
    body = "|".join(alternatives) or r"(?!x)x"
    filler = r"(?:(?:was|is|are|has\s+been|been|now)[\W_]{1,3})?"
    if allow_word:
        filler = r"(?:[^\W_]+[\W_]{1,3})?"
    return re.compile(rf"^[\W_]{{0,3}}{filler}(?:{body}){_RIGHT}", re.IGNORECASE)


def _suspicion_after_regex(cues: Iterable[str]) -> re.Pattern[str]:
    words = [cue for cue in cues if _TOKEN.findall(cue)]
    alternatives = sorted((_SEP.join(re.escape(w) for w in _TOKEN.findall(c)) for c in words), key=len, reverse=True)
    body = "|".join(alternatives) or r"(?!x)x"
    question = r"|\?" if any(cue.strip() == "?" for cue in cues) else ""
    return re.compile(rf"^[\W_]{{0,3}}(?:(?:{body}){_RIGHT}{question})", re.IGNORECASE)


@lru_cache(maxsize=1)
def _condition_data() -> _ConditionData:
    data = _synonyms()
    items: list[tuple[str, bool, Any]] = []
    patterns: list[tuple[re.Pattern[str], _CondTerm]] = []
    fuzzy_targets: dict[str, str] = {}
    blockers: set[str] = set()
    known: set[str] = set()
    not_yet: dict[str, _PhraseMatcher] = {}
    not_yet_after: dict[str, re.Pattern[str]] = {}
    false_friend = _CondTerm(kind="", how="name")

    for kind, entry in data.get("conditions", {}).items():
        for item in _term_items(entry.get("false_friends")):
            items.append((str(item["name"]), False, false_friend))
        name_term = _CondTerm(kind=kind, how="name")
        for item in _term_items(entry.get("names")):
            items.append((str(item["name"]), bool(item.get("case_sensitive", False)), name_term))
            known.update(_tokens(str(item["name"])))
        for item in _term_items(entry.get("misspellings")):
            items.append((str(item["name"]), False, _CondTerm(kind=kind, how="fuzzy")))
        for item in _term_items(entry.get("abbreviations")):
            term = _CondTerm(
                kind=kind,
                how="abbreviation",
                context=str(item.get("context", "")),
                self_before=_words_set(item.get("self_context_before")),
                self_after=_words_set(item.get("self_context_after")),
                not_near=_words_set(item.get("not_near")),
                not_before=_words_set(item.get("not_before")),
                not_after=_words_set(item.get("not_after")),
            )
            items.append((str(item["name"]), bool(item.get("case_sensitive", False)), term))
        for pattern in _as_list(entry.get("patterns")):
            if isinstance(pattern, str):
                patterns.append((re.compile(pattern, re.IGNORECASE), _CondTerm(kind=kind, how="abbreviation")))
        for word in _as_list(entry.get("fuzzy_targets")):
            if isinstance(word, str):
                fuzzy_targets[word.casefold()] = kind
        blockers.update(_words_set(entry.get("fuzzy_blockers")))
        cues = [c for c in _as_list(entry.get("not_yet")) if isinstance(c, str)]
        if cues:
            not_yet[kind] = _PhraseMatcher((cue, False, True) for cue in cues)
        after_cues = [c for c in _as_list(entry.get("not_yet_after")) if isinstance(c, str)]
        if after_cues:
            not_yet_after[kind] = _after_regex(after_cues, allow_word=True)

    valves = data.get("valves", {})
    valve_cues = [c for c in _as_list(valves.get("not_yet")) if isinstance(c, str)]
    valve_after_cues = [c for c in _as_list(valves.get("not_yet_after")) if isinstance(c, str)]
    for kind in _VALVE_KIND.values():
        if valve_cues:
            not_yet[kind] = _PhraseMatcher((cue, False, True) for cue in valve_cues)
        if valve_after_cues:
            not_yet_after[kind] = _after_regex(valve_after_cues, allow_word=True)

    contexts: dict[str, tuple[_PhraseMatcher, int]] = {}
    raw_contexts = data.get("contexts", {})
    for name, values in raw_contexts.items():
        if isinstance(values, list):
            window = int(raw_contexts.get(f"{name}_window", 80))
            contexts[name] = (_PhraseMatcher((v, False, True) for v in values if isinstance(v, str)), window)

    neg = data.get("negation", {})

    def cue_matcher(values: object) -> _PhraseMatcher:
        return _PhraseMatcher((v, False, v) for v in _as_list(values) if isinstance(v, str) and _TOKEN.search(v))

    negation = _Negation(
        window=int(neg.get("window", 30)),
        before=cue_matcher(neg.get("before")),
        suspicion=cue_matcher(neg.get("suspicion")),
        after=_after_regex([c for c in _as_list(neg.get("after")) if isinstance(c, str)], allow_word=False),
        suspicion_after=_suspicion_after_regex([c for c in _as_list(neg.get("suspicion_after")) if isinstance(c, str)]),
        not_yet=not_yet,
        not_yet_after=not_yet_after,
    )
    return _ConditionData(
        phrases=_PhraseMatcher(items),
        patterns=tuple(patterns),
        contexts=contexts,
        negation=negation,
        fuzzy=fuzzy_targets,
        fuzzy_blockers=tuple(sorted(blockers)),
        known_words=frozenset(known | blockers),
        valves=_valve_matcher(valves),
    )


def _valve_matcher(valves: Mapping[str, Any]) -> _PhraseMatcher:
    items: list[tuple[str, bool, _ValveTerm]] = []

    def add(values: object, role: str, valve: str) -> None:
        for item in _term_items(values):
            term = _ValveTerm(
                role=role,
                valve=valve,
                not_before=_words_set(item.get("not_before")),
                not_after=_words_set(item.get("not_after")),
            )
            items.append((str(item["name"]), bool(item.get("case_sensitive", False)), term))

    add(valves.get("exclusions"), "exclusion", "")
    for valve in ("mechanical", "bioprosthetic", "unspecified"):
        add(valves.get(valve), "standalone", valve)
        add(valves.get(f"{valve}_brands"), "brand", valve)
        add(valves.get(f"{valve}_qualifiers"), "qualifier", valve)
    add(valves.get("anchors"), "anchor", "")
    add(valves.get("weak_anchors"), "weak_anchor", "")
    return _PhraseMatcher(items)


def _last_cue_end(matcher: _PhraseMatcher, text: str) -> int:
    spans = matcher.spans(text)
    return max((span.end for span in spans), default=-1)


def _negated(cdata: _ConditionData, kind: str, text: str, start: int, end: int) -> bool:
    neg = cdata.negation
    before = text[max(0, start - neg.window) : start]
    breaks = list(_CLAUSE_BREAK_BEFORE.finditer(before))
    if breaks:
        before = before[breaks[-1].end() :]
    after = text[end : end + neg.window]
    after_break = _CLAUSE_BREAK_AFTER.search(after)
    if after_break:
        after = after[: after_break.start()]

    # "Not yet" cues (awaiting / candidate for / failed transplant) bind tightly: at most one word
    # between the cue and the term.
    not_yet = neg.not_yet.get(kind)
    if not_yet is not None:
        near = text[max(0, start - 60) : start]
        for span in not_yet.spans(near):
            if len(_TOKEN.findall(near[span.end :])) <= 1:
                return True
    not_yet_after = neg.not_yet_after.get(kind)
    if not_yet_after is not None and not_yet_after.search(after):
        return True

    negation_end = _last_cue_end(neg.before, before)
    suspicion_end = _last_cue_end(neg.suspicion, before)
    if before.rstrip().endswith("?"):
        suspicion_end = len(before)
    if negation_end > suspicion_end:
        return True
    if neg.suspicion_after.search(after):
        return False
    return neg.after.search(after) is not None


def _has_context(
    cdata: _ConditionData, term: _CondTerm, text: str, tokens: Sequence[_Tok], starts: Sequence[int], span: _Span
) -> bool:
    before, after = _neighbour_words(tokens, starts, span.start, span.end)
    if before in term.not_before or after in term.not_after:
        return False
    window = cdata.contexts.get(term.context, (None, 80))[1] if term.context else 80
    lo, hi = max(0, span.start - window), min(len(text), span.end + window)
    if term.not_near:
        nearby = {t.word for t in tokens[bisect_left(starts, lo) : bisect_left(starts, hi)]}
        if nearby & term.not_near:
            return False
    if not term.context:
        return True
    if before in term.self_before or after in term.self_after:
        return True
    matcher = cdata.contexts.get(term.context)
    if matcher is None:
        return False
    return matcher[0].search(text[lo : span.start]) or matcher[0].search(text[span.end : hi])


def _valve_matches(
    cdata: _ConditionData, norm: _Text, tokens: Sequence[_Tok], starts: Sequence[int]
) -> list[tuple[int, int, str, ConditionHow]]:
    text = norm.text
    spans: list[_Span] = []
    for span in cdata.valves.spans(text):
        term: _ValveTerm = span.payload
        if term.not_before or term.not_after:
            before, after = _neighbour_words(tokens, starts, span.start, span.end)
            if before in term.not_before or after in term.not_after:
                continue
        spans.append(span)
    if not spans:
        return []

    def token_range(span: _Span) -> tuple[int, int]:
        return bisect_left(starts, span.start), bisect_left(starts, span.end)

    # A mention is the text between , ; newline & + or a full stop (not the one in "St. Jude").
    breaks = [m.end() for m in _MENTION_BREAK.finditer(text)]
    mentions: dict[int, list[_Span]] = {}
    for span in spans:
        mentions.setdefault(bisect_right(breaks, span.start), []).append(span)
    results: list[tuple[int, int, str, ConditionHow]] = []
    for _, mention in sorted(mentions.items()):
        if any(s.payload.role == "exclusion" for s in mention):
            continue
        strong = [s for s in mention if s.payload.role in ("anchor", "standalone")]
        weak = [s for s in mention if s.payload.role == "weak_anchor"]
        brands = [s for s in mention if s.payload.role == "brand"]

        def gap(a: _Span, b: _Span) -> int:
            (a0, a1), (b0, b1) = token_range(a), token_range(b)
            return b0 - a1 if a1 <= b0 else a0 - b1

        counted: dict[str, list[list[_Span]]] = {}  # valve type -> groups of spans that named it
        for span in mention:
            term = span.payload
            involved = [span]
            if term.role == "standalone":
                pass
            elif term.role == "brand":
                near_weak = [w for w in weak if gap(span, w) <= QUALIFIER_MAX_GAP]
                if not strong and not near_weak:
                    continue
                involved += near_weak
            elif term.role == "qualifier":
                anchors = [a for a in strong + brands if a is not span and gap(span, a) <= QUALIFIER_MAX_GAP]
                anchors += [w for w in weak if gap(span, w) == 0]
                if not anchors:
                    continue
                involved += anchors
            else:
                continue
            counted.setdefault(term.valve, []).append(involved)
        specific: list[str] = [v for v in ("mechanical", "bioprosthetic") if v in counted]
        for valve in specific or (["unspecified"] if "unspecified" in counted else []):
            involved = min(counted[valve], key=lambda group: min(s.start for s in group))  # the first naming
            start = min(s.start for s in involved)
            end = max(s.end for s in involved)
            roles = {s.payload.role for s in involved if s.payload.valve == valve}
            how: ConditionHow = (
                "abbreviation" if _is_abbreviation(text[start:end]) and roles == {"standalone"} else "name"
            )
            results.append((start, end, _VALVE_KIND[valve], how))
    return results


def _is_abbreviation(words: str) -> bool:
    letters = [c for c in words if c.isalpha()]
    return bool(letters) and len(letters) <= 5 and all(c.isupper() for c in letters)


def match_condition_text(text: str) -> tuple[ConditionTextMatch, ...]:
    """Condition kinds named in a problem/procedure text, in text order. A negated mention ("no AF",
    "calciphylaxis ruled out", "awaiting kidney transplant") is returned with ``negated=True``;
    suspected ones ("r/o calciphylaxis", "?CUA", "suspected calciphylaxis") count as present."""
    if not isinstance(text, str) or not text.strip():
        return ()
    cdata = _condition_data()
    norm = _normalise(text)
    value = norm.text
    tokens = _word_tokens(value)
    starts = [token.start for token in tokens]

    candidates = list(cdata.phrases.spans(value))
    for pattern, term in cdata.patterns:
        candidates.extend(_Span(m.start(), m.end(), term) for m in pattern.finditer(value))
    found: list[tuple[int, int, str, ConditionHow]] = []
    consumed: list[_Span] = []
    for span in _resolve(candidates):
        cond: _CondTerm = span.payload
        if cond.how == "abbreviation" and not _has_context(cdata, cond, value, tokens, starts, span):
            continue
        consumed.append(span)
        if cond.kind:
            found.append((span.start, span.end, cond.kind, cond.how))

    if cdata.fuzzy:
        targets = list(cdata.fuzzy)
        for token, is_free in zip(tokens, _free_tokens(tokens, consumed), strict=True):
            word = token.word
            if not is_free or len(word) < CONDITION_FUZZY_MIN_LENGTH or not word.isalpha() or word in cdata.known_words:
                continue
            best = _best(targets, word)
            if best is None or best[1] < FUZZY_MIN_SCORE:
                continue
            blocker = _best(cdata.fuzzy_blockers, word)
            if blocker is not None and blocker[1] >= best[1]:
                continue
            found.append((token.start, token.end, cdata.fuzzy[best[0]], "fuzzy"))

    found.extend(_valve_matches(cdata, norm, tokens, starts))
    found.sort(key=lambda item: item[0])

    # One match per kind and polarity (the first in the text): "ESRD on HD, haemodialysis MWF" names
    # dialysis once; "no calciphylaxis ... calciphylaxis confirmed" returns both polarities.
    results: list[ConditionTextMatch] = []
    seen: set[tuple[str, bool]] = set()
    for start, end, kind, how in found:
        negated = _negated(cdata, kind, value, start, end)
        if (kind, negated) in seen:
            continue
        seen.add((kind, negated))
        results.append(ConditionTextMatch(kind=kind, matched_words=norm.words(start, end), how=how, negated=negated))
    return tuple(results)
