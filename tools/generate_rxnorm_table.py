#!/usr/bin/env python3
"""Generate ``cds_service/patient/data/rxnorm_generated.json`` from the sandbox's RxNorm extract.

Usage::

    python tools/generate_rxnorm_table.py [--source PATH] [--output PATH] [--check]

The source is ``medication-list.js`` from the public CDS Hooks sandbox (cds-hooks/sandbox,
Apache-2.0). It lives outside this repository, by default in
``../shared/fhir-data/sandbox-rxnorm/``, and is never copied in: only the derived table (the
classed RxCUIs, with the provenance of the source) is committed.

Why a generated table: clinicians order by brand or by any of several RxNorm term types
(SCD, SBD, SCDC, dose-form groups, ...); a hand-written code list always misses some. The table
holds every RxCUI of the extract whose ingredients fall into a drug class the service cares
about, so the class of an order can be looked up by code, and ``brands`` lets free text typed
as a brand be classed too.

How: the JS file is tokenised (no JS engine; strings with escapes, comments, trailing commas and
quoted or bare keys are handled), each RxNorm name is parsed into ingredients, strengths, dose
form and brand, and every ingredient is looked up in ONE explicit table, ``INGREDIENT_CLASSES``,
next to which ``FALSE_FRIENDS`` lists the look-alikes that must never be classed (leucovorin
calcium, rosuvastatin calcium, ...). An ingredient that matches ``REVIEW_PATTERN`` (anything with
calcium, iron, magnesium, vitamin D, ... in its name) but is in neither table stops the
generator: a new salt in a future extract is reviewed by a person, never guessed.

``--check`` regenerates in memory and exits 1 with a short summary when the committed file
differs (drift), 0 when it matches. The output is deterministic: sorted keys, one entry per
line, no timestamps; the ``provenance`` object records the source's sha256 and size.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from generated_table import check_or_write, parse_arguments, render_table
from generated_table import drift_summary as drift_summary  # re-exported: the tests call it

GENERATOR_VERSION: Final = "1.0.0"

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE: Final = REPO_ROOT.parent / "shared" / "fhir-data" / "sandbox-rxnorm" / "medication-list.js"
DEFAULT_OUTPUT: Final = REPO_ROOT / "cds_service" / "patient" / "data" / "rxnorm_generated.json"
SOURCE_DESCRIPTION: Final = (
    "RxNorm extract shipped with the public CDS Hooks sandbox (cds-hooks/sandbox, Apache-2.0), medication-list.js"
)

# ==========================================================================================
# Ingredient -> class: THE table. Keys are RxNorm ingredient names, lower-case, exactly as they
# are written inside RxNorm names (base, precise and salt forms all appear in the extract).
# A product gets the union of the classes of its ingredients, then route rules (below) apply.
# ==========================================================================================
CALCIUM_BINDER: Final = "calcium_binder"
PARENTERAL_CALCIUM: Final = "parenteral_calcium"
VKA: Final = "vka"
ACTIVE_VITAMIN_D: Final = "active_vitamin_d"
NUTRITIONAL_VITAMIN_D: Final = "nutritional_vitamin_d"
NON_CALCIUM_BINDER: Final = "non_calcium_binder"
ALUMINIUM_BINDER: Final = "aluminium_binder"
CALCIMIMETIC: Final = "calcimimetic"
DOAC: Final = "doac"
SODIUM_THIOSULFATE: Final = "sodium_thiosulfate"
IRON: Final = "iron"
MAGNESIUM: Final = "magnesium"

INGREDIENT_CLASSES: Final[Mapping[str, str]] = {
    # --- calcium salts that are a calcium load when swallowed (ROUTE_RULES: parenteral forms
    # become parenteral_calcium, topical/otic/ophthalmic forms get no class). Multi-ingredient
    # products count too: calcium + vitamin D, antacids with magnesium or famotidine, and
    # multivitamins that list a calcium salt, whatever the amount (strengths are kept).
    "calcium": CALCIUM_BINDER,
    "calcium acetate": CALCIUM_BINDER,
    "calcium carbonate": CALCIUM_BINDER,
    "calcium citrate": CALCIUM_BINDER,
    "calcium phosphate": CALCIUM_BINDER,
    "tricalcium phosphate": CALCIUM_BINDER,
    "dibasic calcium phosphate": CALCIUM_BINDER,
    "dicalcium phosphate": CALCIUM_BINDER,
    "calcium phosphate, dibasic": CALCIUM_BINDER,
    "calcium lactate": CALCIUM_BINDER,
    "calcium gluconate": CALCIUM_BINDER,
    "calcium glubionate": CALCIUM_BINDER,
    "calcium lactate gluconate": CALCIUM_BINDER,
    "calcium chloride": CALCIUM_BINDER,  # only ever parenteral in practice -> parenteral_calcium
    "calcium glycerophosphate": CALCIUM_BINDER,  # oral calcium supplement (Prelief, 65-340 mg)
    "calcium sulfate": CALCIUM_BINDER,  # 250 mg in a prenatal multivitamin
    "calcium stearate": CALCIUM_BINDER,  # sold as "calcium stearate 500 mg + vitamin D3" tablets
    # --- vitamin K antagonists ---
    "warfarin": VKA,
    "warfarin sodium": VKA,
    "acenocoumarol": VKA,
    "phenprocoumon": VKA,
    "phenindione": VKA,
    "anisindione": VKA,  # indandione VKA (Miradon), same class as phenindione
    # --- active vitamin D sterols, every route (IV at dialysis) except topical ---
    "calcitriol": ACTIVE_VITAMIN_D,
    "alfacalcidol": ACTIVE_VITAMIN_D,
    "paricalcitol": ACTIVE_VITAMIN_D,
    "doxercalciferol": ACTIVE_VITAMIN_D,
    "calcifediol": ACTIVE_VITAMIN_D,
    # --- nutritional vitamin D: recorded so it is never confused with an active sterol ---
    "cholecalciferol": NUTRITIONAL_VITAMIN_D,
    "vitamin d3": NUTRITIONAL_VITAMIN_D,
    "ergocalciferol": NUTRITIONAL_VITAMIN_D,
    "vitamin d2": NUTRITIONAL_VITAMIN_D,
    "vitamin d": NUTRITIONAL_VITAMIN_D,
    # --- calcium-free phosphate binders ---
    "sevelamer": NON_CALCIUM_BINDER,
    "sevelamer carbonate": NON_CALCIUM_BINDER,
    "sevelamer hydrochloride": NON_CALCIUM_BINDER,
    "lanthanum carbonate": NON_CALCIUM_BINDER,
    "sucroferric oxyhydroxide": NON_CALCIUM_BINDER,
    "ferric citrate": NON_CALCIUM_BINDER,
    # --- aluminium binders and aluminium antacids (swallowed only, see ROUTE_RULES) ---
    "aluminum hydroxide": ALUMINIUM_BINDER,
    "basic aluminum carbonate gel": ALUMINIUM_BINDER,  # Basaljel, a historical phosphate binder
    "dihydroxyaluminum aminoacetate": ALUMINIUM_BINDER,  # aluminium antacid: aluminium load
    # --- calcimimetics ---
    "cinacalcet": CALCIMIMETIC,
    "cinacalcet hydrochloride": CALCIMIMETIC,
    "etelcalcetide": CALCIMIMETIC,
    # --- direct oral anticoagulants ---
    "apixaban": DOAC,
    "rivaroxaban": DOAC,
    "edoxaban": DOAC,
    "edoxaban tosylate": DOAC,
    "dabigatran": DOAC,
    "dabigatran etexilate": DOAC,
    # --- sodium thiosulfate (injectable only, see ROUTE_RULES) ---
    "sodium thiosulfate": SODIUM_THIOSULFATE,
    "thiosulfate": SODIUM_THIOSULFATE,
    # --- iron: recorded, not monitored yet ---
    "iron sucrose": IRON,
    "sodium ferric gluconate complex": IRON,
    "ferumoxytol": IRON,
    "iron dextran": IRON,
    "iron-dextran complex": IRON,
    "ferric carboxymaltose": IRON,
    "ferric derisomaltose": IRON,
    "ferrous sulfate": IRON,
    "ferrous gluconate": IRON,
    "ferrous fumarate": IRON,
    "ferrous bisglycinate": IRON,
    "ferrous asparto glycinate": IRON,
    "ferric pyrophosphate citrate": IRON,
    "polysaccharide iron complex": IRON,
    "heme iron polypeptide": IRON,
    "iron carbonyl": IRON,
    "carbonyl iron": IRON,
    # --- magnesium salts: recorded only ---
    "magnesium oxide": MAGNESIUM,
    "magnesium hydroxide": MAGNESIUM,
    "magnesium carbonate": MAGNESIUM,
    "magnesium citrate": MAGNESIUM,
    "magnesium chloride": MAGNESIUM,
    "magnesium sulfate": MAGNESIUM,
    "magnesium trisilicate": MAGNESIUM,
    "magnesium gluconate": MAGNESIUM,
    "magnesium lactate": MAGNESIUM,
    "magnesium aspartate": MAGNESIUM,
    "magnesium glycinate": MAGNESIUM,
    "magnesium malate": MAGNESIUM,
    "magnesium orotate": MAGNESIUM,
    "magnesium amino acid chelate": MAGNESIUM,
    "magnesium, chelated": MAGNESIUM,
}

# Look-alikes that are never classed, whatever the product. Each was reviewed; the value says
# why (it is also kept as the reason in code review, not in the output).
FALSE_FRIENDS: Final[Mapping[str, str]] = {
    # Folate rescue / folate vitamins: calcium is the counter-ion of a few mg of drug.
    "leucovorin calcium": "folinic acid salt, a few mg: not a calcium load",
    "calcium folinate": "INN name of leucovorin calcium",
    "levomefolate calcium": "folate vitamin salt (contraceptives, prenatal vitamins)",
    # Statins sold as calcium salts.
    "rosuvastatin calcium": "statin salt",
    "atorvastatin calcium": "statin salt",
    "pitavastatin calcium": "statin salt",
    # Other drugs whose salt happens to be calcium.
    "docusate calcium": "stool-softener salt",
    "calcium pantothenate": "vitamin B5, not a calcium supplement",
    "calcium ascorbate": "buffered vitamin C (like pantothenate, a vitamin salt)",
    "calcium threonate": "vitamin C metabolite salt, 0.8-2 mg in iron products",
    "calcium polycarbophil": "bulk-forming laxative, not a phosphate binder",
    "fenoprofen calcium": "NSAID salt",
    "acamprosate calcium": "alcohol-dependence drug salt",
    "patiromer": "potassium binder (patiromer sorbitex calcium), not a phosphate binder",
    "patiromer sorbitex calcium": "potassium binder, not a phosphate binder",
    "montelukast": "leukotriene antagonist (sodium salt), listed because it is asked about",
    "montelukast sodium": "leukotriene antagonist",
    # Domeboro-type astringent soaks: calcium acetate there is dissolved on the skin.
    "aluminum sulfate": "topical astringent (with calcium acetate), never swallowed",
    # Not anticoagulants / not iron therapy despite the name.
    "coumarin": "1,2-benzopyrone (lymphoedema), not a vitamin K antagonist",
    "iron bile salts": "bile-salt digestive aid (Bilron), not iron therapy",
    "ferric sodium citrate": "iron supplement salt, not the binder ferric citrate",
    # Magnesium as the counter-ion of an analgesic.
    "magnesium salicylate": "salicylate analgesic (Doan's), not a magnesium product",
}

# A co-ingredient that takes a class away from the whole product (the other ingredient is the
# drug). Route rules usually catch these already; this also holds when the form is unknown.
CO_INGREDIENT_EXCLUSIONS: Final[Mapping[str, frozenset[str]]] = {
    # Domeboro: aluminum sulfate / calcium acetate topical soak is not a calcium load.
    "aluminum sulfate": frozenset({CALCIUM_BINDER, PARENTERAL_CALCIUM}),
    # Salicylic acid / sodium thiosulfate lotion (acne) is not calciphylaxis therapy.
    "salicylic acid": frozenset({SODIUM_THIOSULFATE}),
}

# ==========================================================================================
# Dose form -> route. Matched by substring, first hit wins; an unknown form of a candidate
# product stops the generator (add it here).
# ==========================================================================================
DOSE_FORM_ROUTES: Final[Sequence[tuple[str, str]]] = (
    ("irrigation", "irrigation"),
    ("dialysis", "dialysis"),
    ("hemodialysis", "dialysis"),
    ("inject", "injectable"),
    ("prefilled syringe", "injectable"),
    ("cartridge", "injectable"),
    ("intravenous", "injectable"),
    ("ophthalmic", "ophthalmic"),
    ("otic", "otic"),
    ("nasal", "nasal"),
    ("inhal", "inhalation"),
    ("rectal", "rectal"),
    ("enema", "rectal"),
    ("suppository", "rectal"),
    ("vaginal", "vaginal"),
    ("transdermal", "transdermal"),
    ("topical", "topical"),
    ("lotion", "topical"),
    ("ointment", "topical"),
    ("cream", "topical"),
    ("shampoo", "topical"),
    ("medicated pad", "topical"),
    ("sublingual", "sublingual"),
    ("buccal", "buccal"),
    ("oral", "oral"),
    ("chewable", "oral"),
    ("pill", "oral"),
    ("tablet", "oral"),
    ("capsule", "oral"),
    ("lozenge", "oral"),
    ("troche", "oral"),
    ("chewing gum", "oral"),
)
ALL_ROUTES: Final = frozenset(route for _, route in DOSE_FORM_ROUTES)
PARENTERAL_ROUTES: Final = frozenset({"injectable", "irrigation", "dialysis"})
# Taken by mouth: the calcium (or aluminium) is absorbed from the gut or the mouth.
SWALLOWED_ROUTES: Final = frozenset({"oral", "sublingual", "buccal"})

# Route rules per class: which routes keep the class. Routes come from the dose form (below);
# a product whose routes are unknown keeps its class (conservative for a safety check; in this
# extract every form-less concept has prescribables, so routes are always known).
# Classes not listed keep every route.
ROUTE_RULES: Final[Mapping[str, frozenset[str]]] = {
    # Oral calcium only; parenteral-only calcium becomes parenteral_calcium (classify_product).
    CALCIUM_BINDER: SWALLOWED_ROUTES,
    ALUMINIUM_BINDER: SWALLOWED_ROUTES,
    # The calciphylaxis drug is the IV one; a thiosulfate lotion or shampoo is not.
    SODIUM_THIOSULFATE: frozenset({"injectable"}),
    # IV calcitriol/paricalcitol/doxercalciferol at dialysis count; calcitriol ointment does not.
    ACTIVE_VITAMIN_D: ALL_ROUTES - {"topical"},
}

# Any ingredient matching this pattern must be in INGREDIENT_CLASSES or FALSE_FRIENDS, or the
# generator stops: classing is never guessed for a salt nobody has looked at.
REVIEW_PATTERN: Final = re.compile(
    r"calc|ferr|\biron\b|magnes|alumin|thiosulf|warfarin|coumar|coumon|indione|sevelamer|lanthan"
    r"|vitamin d|xaban|dabigatran|etelcalcetide|patiromer",
    re.IGNORECASE,
)


# Strength units written by RxNorm inside names: a number, then one of these, optionally per a
# denominator unit ("100 MG/ML", "0.025 MG/HR").
_UNITS: Final = (
    r"(?:MG|MEQ|UNT|ML|MCG|GM|MMOL|IR|BAU|AU|PNU|CELLS|%|Amb a 1-U)"
    r"(?:/(?:ML|MG|GM|L|ACTUAT|HR|DAY|UNT))?"
)


# ==========================================================================================
# JS object-literal tokenizer and parser (the subset medication-list.js uses, and then some).
# ==========================================================================================
class JsParseError(ValueError):
    """The source is not the object literal this generator understands."""


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_$][\w$]*)
  | (?P<punct>[{}\[\]:,;=])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES: Final[Mapping[str, str]] = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "0": "\0",
}


def _unescape(body: str) -> str:
    """Decode the escapes of a JS string literal's body (quotes already removed)."""

    def replace(match: re.Match[str]) -> str:
        hex_digits = match.group("braced") or match.group("u4") or match.group("x2")
        if hex_digits:  # \u{H...}, \uHHHH, \xHH
            return chr(int(hex_digits, 16))
        char = match.group("char")
        if char == "\n":  # line continuation
            return ""
        return _ESCAPES.get(char, char)

    return _ESCAPE.sub(replace, body)


_ESCAPE: Final = re.compile(
    r"\\(?:u\{(?P<braced>[0-9a-fA-F]+)\}|u(?P<u4>[0-9a-fA-F]{4})|x(?P<x2>[0-9a-fA-F]{2})"
    r"|(?P<char>.))",
    re.DOTALL,
)


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise JsParseError(f"unexpected character {text[pos]!r} at offset {pos}")
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("ws", "comment"):
            yield kind, match.group(0), pos
        pos = match.end()


JsValue = str | int | float | bool | None | list["JsValue"] | dict[str, "JsValue"]


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = list(_tokens(text))
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        if self.i >= len(self.tokens):
            raise JsParseError("unexpected end of input")
        return self.tokens[self.i]

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if value is not None and token[1] != value:
            raise JsParseError(f"expected {value!r}, got {token[1]!r} at offset {token[2]}")
        self.i += 1
        return token

    def value(self) -> JsValue:
        kind, text, pos = self.peek()
        if text == "{":
            return self.obj()
        if text == "[":
            return self.array()
        self.take()
        if kind == "string":
            return _unescape(text[1:-1])
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "ident" and text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        raise JsParseError(f"unexpected {text!r} at offset {pos}")

    def key(self) -> str:
        kind, text, pos = self.take()
        if kind == "string":
            return _unescape(text[1:-1])
        if kind in ("ident", "number"):
            return text
        raise JsParseError(f"bad object key {text!r} at offset {pos}")

    def obj(self) -> dict[str, JsValue]:
        self.take("{")
        out: dict[str, JsValue] = {}
        while self.peek()[1] != "}":
            key = self.key()
            self.take(":")
            if key in out:
                raise JsParseError(f"duplicate key {key!r}")
            out[key] = self.value()
            if self.peek()[1] == ",":
                self.take()
            elif self.peek()[1] != "}":
                raise JsParseError(f"expected ',' or '}}' at offset {self.peek()[2]}")
        self.take("}")
        return out

    def array(self) -> list[JsValue]:
        self.take("[")
        out: list[JsValue] = []
        while self.peek()[1] != "]":
            out.append(self.value())
            if self.peek()[1] == ",":
                self.take()
            elif self.peek()[1] != "]":
                raise JsParseError(f"expected ',' or ']' at offset {self.peek()[2]}")
        self.take("]")
        return out


def parse_js_object(text: str, variable: str = "rxnorm") -> dict[str, JsValue]:
    """Return the object literal assigned to ``variable`` (``const rxnorm = {...}``)."""
    parser = _Parser(text)
    while parser.i < len(parser.tokens) - 2:
        kind, value, _ = parser.tokens[parser.i]
        if kind == "ident" and value == variable and parser.tokens[parser.i + 1][1] == "=":
            parser.i += 2
            result = parser.obj()
            return result
        parser.i += 1
    raise JsParseError(f"no '{variable} = {{...}}' assignment found")


@dataclass(frozen=True)
class Extract:
    """The three maps of medication-list.js, typed."""

    cui_to_name: dict[str, str]
    pill_to_component_sets: dict[str, list[list[str]]]
    component_sets_to_prescribables: dict[str, list[str]]


def load_extract(text: str) -> Extract:
    """Parse medication-list.js text into typed maps, checking their shape."""
    root = parse_js_object(text)

    def section(name: str) -> dict[str, JsValue]:
        value = root.get(name)
        if not isinstance(value, dict):
            raise JsParseError(f"section {name!r} missing or not an object")
        return value

    names = {}
    for cui, name in section("cuiToName").items():
        if not isinstance(name, str) or not cui.isdigit():
            raise JsParseError(f"cuiToName entry {cui!r} is not digits -> string")
        names[cui] = name
    pills: dict[str, list[list[str]]] = {}
    for cui, sets in section("pillToComponentSets").items():
        if not isinstance(sets, list) or not all(
            isinstance(s, list) and all(isinstance(c, str) for c in s) for s in sets
        ):
            raise JsParseError(f"pillToComponentSets entry {cui!r} is not a list of lists")
        pills[cui] = [[str(c) for c in s] for s in sets if isinstance(s, list)]
    prescribables: dict[str, list[str]] = {}
    for key, cuis in section("componentSetsToPrescribables").items():
        if not isinstance(cuis, list) or not all(isinstance(c, str) for c in cuis):
            raise JsParseError(f"componentSetsToPrescribables entry {key!r} is not a list")
        prescribables[key] = [str(c) for c in cuis]
    return Extract(names, pills, prescribables)


# ==========================================================================================
# RxNorm name parsing
# ==========================================================================================
# tty_guess heuristic (no TTY is shipped in the extract, so it is read off the name):
#   GPCK / BPCK  name starts with "{" (a pack); BPCK when it ends in "[Brand]".
#   SBD          ingredient strengths + dose form + [Brand]
#   SBDC         ingredient strengths + [Brand], no dose form
#   SBDF         ingredients + dose form + [Brand], no strength
#   SBDG         "<Brand> Pill" (or "<Brand> ... Product"): a dose-form group whose components
#                all carry that brand (pillToComponentSets says so)
#   BN           "[Brand]" alone, or a bare name that is a known brand
#   SCD          ingredient strengths + dose form
#   SCDC         ingredient strength, no dose form (RxNorm writes these for one ingredient)
#   SCDF         ingredients + dose form, no strength
#   SCDG         "<ingredients> Pill" / "<ingredients> Injectable Product" ...: dose-form group
#                (Pill is RxNorm's oral-solid group; the groups' ingredients are IN names)
#   IN / MIN     ingredient name(s) only (PIN cannot be told apart from IN by the name)
_BRAND_SUFFIX: Final = re.compile(r"\s*\[([^\[\]]+)\]\s*$")
_RELEASE_PREFIX: Final = re.compile(r"^(\d+ HR)\s+")
_STRENGTH: Final = re.compile(
    rf"^(?P<ingredient>.+?)\s+(?P<strength>\d+(?:\.\d+)?\s+(?:{_UNITS}))(?=\s|$)\s*(?P<rest>.*)$"
)
_PILL: Final = "Pill"


def is_dose_form_group(dose_form: str | None) -> bool:
    """RxNorm dose-form groups: "Pill", "Oral Product", "Injectable Product", ..."""
    return dose_form is not None and (dose_form == _PILL or dose_form.endswith(" Product"))


@dataclass(frozen=True)
class ParsedName:
    """What an RxNorm name says: ingredients (lower-case), strengths, dose form, brand."""

    ingredients: tuple[str, ...]
    strengths: tuple[str | None, ...]
    dose_form: str | None
    brand: str | None
    tty_guess: str
    part_forms: tuple[str, ...] = ()  # packs only: the dose forms of the packed drugs


def parse_name(name: str) -> ParsedName:
    """Split one RxNorm name into its parts (see the tty_guess heuristic above).

    Dose-form groups ("X Pill") are returned with X as the ingredient list; ``build_entries``
    turns that into a brand (SBDG) when the group's components say X is a brand.
    """
    text = name.strip()
    if text.startswith("{"):
        return _parse_pack(text)

    brand = None
    brand_match = _BRAND_SUFFIX.search(text)
    if brand_match:
        brand = brand_match.group(1).strip()
        text = text[: brand_match.start()].strip()
    if not text:
        return ParsedName((), (), None, brand, "BN")
    text = _RELEASE_PREFIX.sub("", text)

    parts = text.split(" / ")
    ingredients = []
    strengths: list[str | None] = []
    dose_form: str | None = None
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        match = _STRENGTH.match(part)
        if match and (last or not match.group("rest")):
            ingredients.append(match.group("ingredient").strip().lower())
            strengths.append(match.group("strength"))
            if last and match.group("rest"):
                dose_form = match.group("rest").strip()
            continue
        if last:
            if part.endswith(" " + _PILL):
                part, dose_form = part[: -len(_PILL) - 1], _PILL
            else:
                part, dose_form = _split_form_without_strength(part)
        ingredients.append(part.strip().lower())
        strengths.append(None)

    has_strength = any(s is not None for s in strengths)
    if is_dose_form_group(dose_form):
        tty = "SBDG" if brand else "SCDG"
    elif has_strength and dose_form:
        tty = "SBD" if brand else "SCD"
    elif has_strength:
        tty = "SBDC" if brand else "SCDC"
    elif dose_form:
        tty = "SBDF" if brand else "SCDF"
    else:
        tty = "BN" if brand else ("MIN" if len(ingredients) > 1 else "IN")
    return ParsedName(tuple(ingredients), tuple(strengths), dose_form, brand, tty)


_KNOWN_FORM_WORDS: Final = re.compile(
    r"\s+((?:Extended Release |Delayed Release |Disintegrating |Chewable |Sublingual |Buccal )?"
    r"(?:Oral |Injectable |Topical |Ophthalmic |Otic |Nasal |Rectal |Vaginal |Irrigation )?"
    r"(?:Tablet|Capsule|Solution|Suspension|Lotion|Ointment|Cream|Injection|Gel|Powder|Product|"
    r"Granules|Pellet|Foam|Spray|Shampoo|Paste|Liquid|Syrup|Elixir|Prefilled Syringe|"
    r"Auto-Injector|Cartridge|Pen Injector|Lozenge|Troche|Chewing Gum|Enema|Suppository|"
    r"Transdermal System|Medicated Pad)"
    r"(?: for Oral Suspension| for Solution| for Suspension)?)$"
)


def _split_form_without_strength(part: str) -> tuple[str, str | None]:
    """``calcium acetate Oral Capsule`` -> (``calcium acetate``, ``Oral Capsule``)."""
    match = _KNOWN_FORM_WORDS.search(part)
    if match and match.start() > 0:
        return part[: match.start()], match.group(1)
    return part, None


_PACK_PART: Final = re.compile(r"\d+\s+\(([^()]*)\)")


def _parse_pack(text: str) -> ParsedName:
    """``{21 (A 1 MG Oral Tablet) / 7 (B 2 MG Oral Tablet) } Pack [Brand]``: union of parts."""
    brand_match = _BRAND_SUFFIX.search(text)
    brand = brand_match.group(1).strip() if brand_match else None
    inner = text[1 : text.rindex("}")] if "}" in text else text[1:]
    parts = [parse_name(m.group(1)) for m in _PACK_PART.finditer(inner)]
    if not parts:
        parts = [parse_name(inner)]
    ingredients: list[str] = []
    for part in parts:
        for ingredient in part.ingredients:
            if ingredient not in ingredients:
                ingredients.append(ingredient)
    forms = tuple(sorted({part.dose_form for part in parts if part.dose_form}))
    return ParsedName(tuple(ingredients), (None,) * len(ingredients), "Pack", brand, "BPCK" if brand else "GPCK", forms)


# ==========================================================================================
# Classification and the table
# ==========================================================================================
class UnreviewedIngredientError(ValueError):
    """An ingredient looks relevant (REVIEW_PATTERN) but is in no table: a person must decide."""


class UnknownDoseFormError(ValueError):
    """A candidate product has a dose form DOSE_FORM_ROUTES cannot place."""


def routes_for_form(dose_form: str) -> frozenset[str]:
    """Route of one RxNorm dose form ("Injectable Solution" -> injectable)."""
    lowered = dose_form.lower()
    for needle, route in DOSE_FORM_ROUTES:
        if needle in lowered:
            return frozenset({route})
    raise UnknownDoseFormError(f"dose form {dose_form!r}: add it to DOSE_FORM_ROUTES")


def routes_for_parsed(parsed: ParsedName) -> frozenset[str]:
    """Routes a name states itself (empty when it has no dose form, e.g. an SCDC)."""
    if parsed.dose_form == "Pack":
        return frozenset().union(*(routes_for_form(form) for form in parsed.part_forms))
    if parsed.dose_form:
        return routes_for_form(parsed.dose_form)
    return frozenset()


def classify_product(ingredients: Iterable[str], routes: frozenset[str]) -> frozenset[str]:
    """Classes of a product from its ingredients and routes (see the tables at the top).

    Raises UnreviewedIngredientError for an ingredient that matches REVIEW_PATTERN but is
    neither classed nor a known false friend.
    """
    ingredients = tuple(ingredients)
    classes: set[str] = set()
    unreviewed = []
    for ingredient in ingredients:
        if ingredient in FALSE_FRIENDS:
            continue
        cls = INGREDIENT_CLASSES.get(ingredient)
        if cls is None:
            if REVIEW_PATTERN.search(ingredient):
                unreviewed.append(ingredient)
            continue
        allowed = ROUTE_RULES.get(cls)
        if not routes or allowed is None or routes & allowed:
            classes.add(cls)
        elif cls == CALCIUM_BINDER and routes & PARENTERAL_ROUTES:
            classes.add(PARENTERAL_CALCIUM)
    if unreviewed:
        raise UnreviewedIngredientError(
            "ingredient(s) need a decision in INGREDIENT_CLASSES or FALSE_FRIENDS: "
            + ", ".join(sorted(set(unreviewed)))
        )
    for ingredient in ingredients:
        classes -= CO_INGREDIENT_EXCLUSIONS.get(ingredient, frozenset())
    return frozenset(classes)


def classify_name(name: str, routes: frozenset[str] | None = None) -> frozenset[str]:
    """Classes of a product known only by its RxNorm name (routes from its dose form)."""
    parsed = parse_name(name)
    return classify_product(parsed.ingredients, routes_for_parsed(parsed) if routes is None else routes)


@dataclass(frozen=True)
class Entry:
    """One row of the table, as written to the JSON."""

    name: str
    tty_guess: str
    ingredients: tuple[str, ...]
    brand: str | None
    dose_form: str | None
    classes: frozenset[str]
    routes: frozenset[str]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "tty_guess": self.tty_guess,
            "ingredients": list(self.ingredients),
            "brand": self.brand,
            "dose_form": self.dose_form,
            "classes": sorted(self.classes),
            "routes": sorted(self.routes),
        }


_REFORMULATED: Final = re.compile(r"\s+reformulated\s+[a-z]{3}\s+\d{4}$")


def build_entries(extract: Extract) -> dict[str, Entry]:
    """Parse every name, resolve groups and form-less concepts, keep the classed ones."""
    parsed = {cui: parse_name(name) for cui, name in extract.cui_to_name.items()}

    # Form-less concepts (SCDC, SBDC) take their routes from the prescribable drugs (SCD/SBD)
    # built on them: componentSetsToPrescribables maps "cui,cui,..." -> [prescribable cui].
    prescribables_of: dict[str, set[str]] = {}
    for key, prescribable in extract.component_sets_to_prescribables.items():
        for component in key.split(","):
            prescribables_of.setdefault(component.strip(), set()).update(prescribable)

    def own_routes(cui: str) -> frozenset[str]:
        p = parsed.get(cui)
        return routes_for_parsed(p) if p is not None else frozenset()

    known_brands = {p.brand.lower() for p in parsed.values() if p.brand}
    entries: dict[str, Entry] = {}
    for cui, p in parsed.items():
        ingredients, brand, tty = p.ingredients, p.brand, p.tty_guess
        components = [c for group in extract.pill_to_component_sets.get(cui, []) for c in group]
        if is_dose_form_group(p.dose_form) and components:
            component_brands = {parsed[c].brand if c in parsed else None for c in components}
            # "<X> Pill" is a branded group (SBDG) when all its components carry brand X.
            if len(component_brands) == 1 and None not in component_brands:
                (component_brand,) = component_brands
                if component_brand is not None and component_brand.lower() == " / ".join(ingredients):
                    brand, tty = component_brand, "SBDG"
                    ingredients = tuple(sorted({i for c in components for i in parsed[c].ingredients}))
        elif tty in ("IN", "MIN") and p.brand is None and " / ".join(ingredients) in known_brands:
            brand, ingredients, tty = extract.cui_to_name[cui].strip(), (), "BN"

        # Routes only matter (and unknown dose forms only stop us) for candidate products.
        routes: frozenset[str] = frozenset()
        if any(ingredient in INGREDIENT_CLASSES for ingredient in ingredients):
            routes = own_routes(cui)
            if not routes and p.dose_form is None:
                routes = frozenset().union(*(own_routes(c) for c in sorted(prescribables_of.get(cui, ()))))
        try:
            classes = classify_product(ingredients, routes)
        except UnreviewedIngredientError as error:
            raise UnreviewedIngredientError(f"RxCUI {cui} {p!r}: {error}") from None
        if classes:
            entries[cui] = Entry(extract.cui_to_name[cui], tty, ingredients, brand, p.dose_form, classes, routes)
    return entries


def build_table(source_bytes: bytes, licence_text: str | None) -> dict[str, object]:
    """The whole JSON document, as plain data (deterministic for a given input)."""
    extract = load_extract(source_bytes.decode("utf-8"))
    entries = build_entries(extract)
    ordered = sorted(entries, key=int)

    index: dict[str, list[str]] = {}
    brands: dict[str, set[str]] = {}
    per_class: dict[str, int] = {}
    per_tty: dict[str, int] = {}
    for cui in ordered:
        entry = entries[cui]
        for ingredient in entry.ingredients:
            if ingredient in INGREDIENT_CLASSES:
                index.setdefault(ingredient, []).append(cui)
        if entry.brand:
            for alias in {entry.brand.lower(), _REFORMULATED.sub("", entry.brand.lower())}:
                brands.setdefault(alias, set()).update(entry.classes)
        for cls in entry.classes:
            per_class[cls] = per_class.get(cls, 0) + 1
        per_tty[entry.tty_guess] = per_tty.get(entry.tty_guess, 0) + 1

    return {
        "provenance": provenance(source_bytes, licence_text, len(extract.cui_to_name)),
        "counts": {
            "entries": len(entries),
            "per_class": dict(sorted(per_class.items())),
            "per_tty_guess": dict(sorted(per_tty.items())),
        },
        "brands": {brand: sorted(brands[brand]) for brand in sorted(brands)},
        "ingredient_index": {ingredient: index[ingredient] for ingredient in sorted(index)},
        "entries": {cui: entries[cui].to_json() for cui in ordered},
    }


def licence_note(licence_text: str | None) -> str:
    """What the LICENSE beside the source says about RxNorm (quoted), or that it says nothing."""
    if licence_text is None:
        return "No LICENSE file was found beside medication-list.js."
    lines = [line.strip() for line in licence_text.splitlines() if line.strip()]
    title = " ".join(lines[:2]) if lines else "(empty)"
    rxnorm_lines = [
        line
        for line in lines
        if re.search(r"rxnorm|national library of medicine|\bnlm\b|\bumls\b", line, re.IGNORECASE)
    ]
    if rxnorm_lines:
        return f"LICENSE ({title}) says: " + " ".join(rxnorm_lines)
    return (
        f"The LICENSE beside medication-list.js is the {title} text of the sandbox; it carries "
        "no separate RxNorm notice. RxNorm names and RxCUIs are produced by the U.S. National "
        "Library of Medicine (NLM); check NLM's RxNorm terms before redistributing this table "
        "outside the project."
    )


def provenance(source_bytes: bytes, licence_text: str | None, concepts: int) -> dict[str, object]:
    """Where the table comes from: source hash and size, generator version, licence note."""
    return {
        "source": SOURCE_DESCRIPTION,
        "source_path": "../shared/fhir-data/sandbox-rxnorm/medication-list.js (outside the repo)",
        "source_sha256": hashlib.sha256(source_bytes).hexdigest(),
        "source_size_bytes": len(source_bytes),
        "source_concepts": concepts,
        "licence_note": licence_note(licence_text),
        "licence_sha256": (hashlib.sha256(licence_text.encode("utf-8")).hexdigest() if licence_text else None),
        "generator": "tools/generate_rxnorm_table.py",
        "generator_version": GENERATOR_VERSION,
    }


def render(table: Mapping[str, object]) -> str:
    """JSON text with one line per entry/brand/index row, so diffs stay readable."""
    return render_table(table, whole=frozenset({"counts", "provenance"}))


def generate(source: Path = DEFAULT_SOURCE) -> str:
    """Read the source (and the LICENSE beside it) and return the JSON text to commit."""
    source_bytes = source.read_bytes()
    licence_path = source.parent / "LICENSE"
    licence_text = licence_path.read_text(encoding="utf-8") if licence_path.exists() else None
    return render(build_table(source_bytes, licence_text))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(
        argv,
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        source_help="medication-list.js (default: %(default)s)",
        default_output=DEFAULT_OUTPUT,
        default_source=DEFAULT_SOURCE,
    )

    if not args.source.exists():
        print(f"source not found: {args.source}", file=sys.stderr)
        return 2
    text = generate(args.source)
    entries = json.loads(text)["counts"]["entries"]
    written = f"wrote {args.output}: {entries} entries, {len(text)} bytes"
    return check_or_write(args.output, text, "generate_rxnorm_table.py", written, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
