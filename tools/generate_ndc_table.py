#!/usr/bin/env python3
"""Generate ``cds_service/patient/data/ndc_generated.json``: NDC -> drug for the watched drug classes.

Usage::

    python tools/generate_ndc_table.py [--source DIR] [--output PATH] [--check]

Why: a US medication order may be coded only with an NDC (``http://hl7.org/fhir/sid/ndc``). Without
a table we cannot tell what drug it is, so it gets no card. This table maps the labeler+product
part of every NDC of a product that contains a watched ingredient (``WATCHED_INGREDIENTS``) to
the drug: names, substances, strength, dose form and route (the service decides what a topical
calcitriol or a sodium thiosulfate lotion means; the table only records it).

Source: the NDCs that the U.S. National Library of Medicine attaches to RxNorm concepts
(RXNSAT, SAB=RXNORM, ATN=NDC, SUPPRESS=N) in the RxNorm **Current Prescribable Content** release
of 2025-10-06, as extracted per ingredient into ``web/data/<letter>.json`` by the public
repository davidanderson3/rxnorm-ingredients at commit a8fcf13a679fa37073e8fa83e11d5e0d8cc07276
(the files were removed from the branch head later; the commit stays public). The directory
holds ``manifest.json`` and one JSON file per initial letter (``0-9.json``, ``B.json``, ...); each
file lists ingredients with their SCDC -> SCD -> SBD/GPCK/BPCK concepts and their 11-digit NDCs.
It lives outside this repository, by default in ``../shared/fhir-data/ndc/rxnorm-ingredients/``
(or ``$NDC_SOURCE``), and is never copied in: only the derived table is committed.

Known gap: ``A.json`` (ingredients starting with A, over 4 MiB) was not in the snapshot of the
repository available to us (it leaves out files of 4 MiB and more), so products reachable only
through an A-ingredient record (apixaban, single-ingredient aluminum hydroxide) are missing. ``provenance.files_missing``
names every file of the manifest that was not found, so the gap is visible in the table.

How: every concept with NDCs is read once (it appears under each of its ingredients); its
RxNorm name is parsed into substances, strengths, dose form and brand; a concept is *watched*
when a substance matches ``WATCHED_INGREDIENTS``. A calcium or magnesium salt that is neither
watched nor in ``REVIEWED_NOT_KEPT`` stops the generator: a new salt is reviewed by a person,
never guessed. The 9-digit key is the first 9 digits of the 11-digit NDC (5-digit labeler +
4-digit product). One key can carry several RxNorm concepts (private-label lines that reused a
product code for another drug, package sizes that RxNorm splits into quantified concepts): such
keys go to ``ambiguous_keys`` and
the watched packages under them to ``packages`` (exact 11-digit NDC -> product). ``other_keys``
lists keys of other products that a 10-digit NDC written without hyphens could also be read as,
so that the reader never picks a watched product when the code may be another drug.

``--check`` regenerates in memory and exits 1 with a short summary when the committed file
differs (drift), 0 when it matches. The output is deterministic: sorted keys, one row per line,
no timestamps.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from generated_table import check_or_write, parse_arguments, render_table
from generated_table import default_source as source_from_env
from generated_table import drift_summary as drift_summary  # re-exported: the tests call it

GENERATOR_VERSION: Final = "1.0.0"

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
SOURCE_ENV: Final = "NDC_SOURCE"
DEFAULT_SOURCE: Final = REPO_ROOT.parent / "shared" / "fhir-data" / "ndc" / "rxnorm-ingredients"
DEFAULT_OUTPUT: Final = REPO_ROOT / "cds_service" / "patient" / "data" / "ndc_generated.json"

SOURCE_DESCRIPTION: Final = (
    "NDCs of RxNorm concepts (NLM RXNSAT SAB=RXNORM ATN=NDC) from the RxNorm Current Prescribable "
    "Content release of 2025-10-06, as extracted per ingredient by davidanderson3/rxnorm-ingredients"
)
SOURCE_REPOSITORY: Final = "https://github.com/davidanderson3/rxnorm-ingredients"
SOURCE_COMMIT: Final = "a8fcf13a679fa37073e8fa83e11d5e0d8cc07276"
SOURCE_COMMIT_DATE: Final = "2025-11-20"
SOURCE_FILES: Final = "web/data/<letter>.json and web/manifest.json"
DATA_DATE: Final = "2025-10-06"
LICENCE_NOTE: Final = (
    "Data: NLM RxNorm Current Prescribable Content (RxNorm_full_prescribe_10062025), which NLM "
    "publishes for download without a UMLS licence; the NDCs are NLM's SAB=RXNORM normalised NDCs, "
    "themselves taken from FDA/DailyMed SPL listings (US public domain). Required attribution: This "
    "product uses publicly available data courtesy of the U.S. National Library of Medicine (NLM), "
    "National Institutes of Health, Department of Health and Human Services; NLM is not responsible "
    "for the product and does not endorse or recommend this or any other product. The extracting "
    "repository has no LICENSE file; only the facts (codes and names) are used, none of its code."
)

# ==========================================================================================
# THE list of watched ingredients. Key: the label used in counts and tests (the drug as the
# service thinks of it). Value: RxNorm substance names (lower-case, glob patterns allowed) that
# mean it. Matching is on whole substance names, so a drug whose salt happens to be calcium or
# magnesium ("leucovorin calcium", "rosuvastatin calcium", "esomeprazole magnesium") never
# matches: the drug name comes first. Calcium- or magnesium-prefixed salts that are NOT kept are
# listed, with the reason, in REVIEWED_NOT_KEPT below.
# ==========================================================================================
WATCHED_INGREDIENTS: Final[Mapping[str, tuple[str, ...]]] = {
    # calcium salts (oral binders/supplements, parenteral calcium; route decides which)
    "calcium acetate": ("calcium acetate",),
    "calcium carbonate": ("calcium carbonate",),
    "calcium citrate": ("calcium citrate",),
    "calcium lactate": ("calcium lactate",),
    "calcium gluconate": ("calcium gluconate",),
    "calcium chloride": ("calcium chloride",),
    "calcium phosphate": (
        "calcium phosphate",
        "tricalcium phosphate",
        "calcium phosphate, *",
        "dibasic calcium phosphate",
    ),
    # vitamin K antagonist and direct oral anticoagulants
    "warfarin": ("warfarin", "warfarin sodium"),
    "apixaban": ("apixaban",),  # in A.json: absent from the public copy (see module docstring)
    "rivaroxaban": ("rivaroxaban",),
    # active vitamin D (calcitriol ointment is topical: route is kept, the service decides)
    "calcitriol": ("calcitriol",),
    "paricalcitol": ("paricalcitol",),
    "doxercalciferol": ("doxercalciferol",),
    "calcifediol": ("calcifediol",),
    "alfacalcidol": ("alfacalcidol",),  # no US product in RxNorm; kept for completeness
    # nutritional vitamin D
    "cholecalciferol": ("cholecalciferol", "vitamin d3"),
    "ergocalciferol": ("ergocalciferol", "vitamin d2"),
    # calcium-free phosphate binders and aluminium
    "sevelamer": ("sevelamer", "sevelamer carbonate", "sevelamer hydrochloride"),
    "lanthanum": ("lanthanum carbonate", "lanthanum"),
    "ferric citrate": ("ferric citrate",),
    "sucroferric oxyhydroxide": ("sucroferric oxyhydroxide",),
    "aluminum hydroxide": ("aluminum hydroxide", "aluminium hydroxide"),
    # calcimimetics
    "cinacalcet": ("cinacalcet", "cinacalcet hydrochloride"),
    "etelcalcetide": ("etelcalcetide", "etelcalcetide hydrochloride"),
    # sodium thiosulfate (RxNorm also writes the base "thiosulfate", e.g. in acne lotions)
    "sodium thiosulfate": ("sodium thiosulfate", "thiosulfate"),
    # parenteral iron
    "iron sucrose": ("iron sucrose",),
    "ferumoxytol": ("ferumoxytol",),
    "ferric carboxymaltose": ("ferric carboxymaltose",),
    "sodium ferric gluconate": ("sodium ferric gluconate complex", "sodium ferric gluconate"),
    "iron dextran": ("iron dextran", "iron-dextran complex"),
    "ferric derisomaltose": ("ferric derisomaltose",),
    # magnesium, any salt (REVIEWED_NOT_KEPT removes the drugs that are only magnesium salts)
    "magnesium": ("magnesium *", "magnesium, *"),
}

# Calcium/magnesium-prefixed substances that were reviewed and are deliberately not kept. Any
# other substance starting with "calcium" or "magnesium" that no pattern above keeps stops the
# generator (UnreviewedSubstanceError).
REVIEWED_NOT_KEPT: Final[Mapping[str, str]] = {
    "calcium pantothenate": "vitamin B5 salt, a few mg: not a calcium load",
    "calcium polycarbophil": "bulk laxative, not a phosphate binder",
    "calcium ascorbate": "buffered vitamin C in iron/vitamin products",
    "calcium threonate": "vitamin C metabolite salt, 0.8-2 mg in iron products",
    "calcium oxybate": "oxybate salt mix (Xywav) for narcolepsy",
    "calcium glycerophosphate": "not on the watched list (Prelief food-acid reducer); add it there if wanted",
    "magnesium salicylate": "salicylate analgesic (Doan's): magnesium is the counter-ion",
    "magnesium oxybate": "oxybate salt mix (Xywav) for narcolepsy",
}

_REVIEW_PREFIX: Final = re.compile(r"^(calcium|magnesium)\b")

# ==========================================================================================
# RxNorm dose form -> route (uppercase, FDA style). Matched by substring, first hit wins; a
# watched product whose form matches nothing stops the generator (add the form here).
# ==========================================================================================
DOSE_FORM_ROUTES: Final[Sequence[tuple[str, str]]] = (
    ("intraperitoneal", "INTRAPERITONEAL"),
    ("irrigation", "IRRIGATION"),
    ("hemodialysis", "HEMODIALYSIS"),
    ("inject", "INJECTABLE"),
    ("prefilled syringe", "INJECTABLE"),
    ("cartridge", "INJECTABLE"),
    ("ophthalmic", "OPHTHALMIC"),
    ("otic", "OTIC"),
    ("nasal", "NASAL"),
    ("inhal", "INHALATION"),
    ("rectal", "RECTAL"),
    ("enema", "RECTAL"),
    ("vaginal", "VAGINAL"),
    ("douche", "VAGINAL"),
    ("intravesical", "INTRAVESICAL"),
    ("transdermal", "TRANSDERMAL"),
    ("mucous membrane", "MUCOSAL"),
    ("mucosal", "MUCOSAL"),
    ("mouthwash", "ORAL RINSE"),
    ("toothpaste", "DENTAL"),
    ("topical", "TOPICAL"),
    ("medicated", "TOPICAL"),
    ("shampoo", "TOPICAL"),
    ("paste", "TOPICAL"),
    ("powder spray", "TOPICAL"),
    ("oral", "ORAL"),
    ("chewable", "ORAL"),
    ("chewing gum", "ORAL"),
    ("lozenge", "ORAL"),
    ("sublingual", "SUBLINGUAL"),
    ("buccal", "BUCCAL"),
)


class SourceError(ValueError):
    """The source directory is not what this generator reads (missing or inconsistent files)."""


class UnreviewedSubstanceError(ValueError):
    """A calcium/magnesium salt is neither watched nor reviewed: a person must decide."""


class UnknownDoseFormError(ValueError):
    """A watched product has a dose form DOSE_FORM_ROUTES cannot place."""


class UnparsedNameError(ValueError):
    """A concept name that mentions a watched ingredient does not fit the RxNorm name grammar."""


# ==========================================================================================
# RxNorm names
# ==========================================================================================
@dataclass(frozen=True)
class ParsedName:
    """What an RxNorm SCD/SBD/GPCK/BPCK name says."""

    substances: tuple[str, ...]  # as written in the name (RxNorm case), in name order
    strengths: tuple[str, ...]  # one per substance, e.g. "667 MG", "0.002 MG/ML"
    dose_form: str  # e.g. "Oral Capsule", "Injectable Solution", "Pack"
    brand: str | None
    part_forms: tuple[str, ...] = ()  # packs only: the dose forms of the packed drugs

    @property
    def strength(self) -> str:
        return " / ".join(self.strengths)


# Leading quantity factor of a quantified drug: "10 ML ", "24 HR ", "0.5 ML ".
_QUANTITY_PREFIX: Final = re.compile(r"^\d+(?:\.\d+)? (?:HR|ML|MG|ACTUAT|DAY|UNT|L|G|MEQ|MCI|CM2|HOUR|MIN)\s+")
# A "strength unit" pair inside one "substance strength unit [dose form]" part. The unit starts
# with a capital, "%" or "[", so that numbers inside substance names ("polyethylene glycol 3350",
# "vitamin B 12", "dextran 70") stay in the name: the strength is the LAST such pair of a part.
_STRENGTH: Final = re.compile(r"(?<= )(\d[\d.,]*) ([A-Z%\[][A-Za-z0-9%/\[\]_'\-]*)(?= |$)")
# What may follow the last strength: a dose form, words only ("Powder for Oral Solution").
_DOSE_FORM: Final = re.compile(r"^[A-Za-z][A-Za-z\- ]*$")
_BRAND_SUFFIX: Final = re.compile(r"\s+\[([^\[\]]+)\]$")
_PACK: Final = re.compile(r"^\{(?P<body>.*)\}\s*Pack(?:\s+\[(?P<brand>[^\[\]]+)\])?$")
_PACK_QUANTITY: Final = re.compile(r"^\d[\d.]* [A-Z]+$")


def parse_name(name: str) -> ParsedName | None:
    """Parse an RxNorm clinical/branded drug or pack name; None when it does not fit."""
    text = name.strip()
    if text.startswith("{"):
        return _parse_pack(text)
    brand = None
    brand_match = _BRAND_SUFFIX.search(text)
    if brand_match:
        brand = brand_match.group(1).strip()
        text = text[: brand_match.start()]
    text = _QUANTITY_PREFIX.sub("", text.strip())
    parts = text.split(" / ")
    substances: list[str] = []
    strengths: list[str] = []
    dose_form = ""
    for index, part in enumerate(parts):
        part = part.strip()
        pairs = list(_STRENGTH.finditer(part))
        if not pairs:
            return None
        last_pair = pairs[-1]
        substance, rest = part[: last_pair.start()].strip(), part[last_pair.end() :].strip()
        last = index == len(parts) - 1
        if not substance or _STRENGTH.search(" " + substance) or bool(rest) != last:
            return None  # e.g. "Sensor 60 ACTUAT fluticasone ...": a quantity inside the name
        if last and not _DOSE_FORM.match(rest):
            return None
        substances.append(substance)
        strengths.append(f"{last_pair.group(1)} {last_pair.group(2)}")
        if last:
            dose_form = rest
    return ParsedName(tuple(substances), tuple(strengths), dose_form, brand)


def _pack_parts(body: str) -> Iterator[str]:
    """Top-level parenthesised groups of a pack body, skipping quantities such as "(355 ML)"."""
    depth, start = 0, 0
    for position, char in enumerate(body):
        if char == "(":
            if depth == 0:
                start = position + 1
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                group = body[start:position].strip()
                if not _PACK_QUANTITY.match(group):
                    yield group


def _parse_pack(text: str) -> ParsedName | None:
    match = _PACK.match(text)
    if match is None:
        return None
    parts = [parse_name(part) for part in _pack_parts(match.group("body"))]
    if not parts or any(part is None for part in parts):
        return None
    substances: list[str] = []
    strengths: list[str] = []
    for part in parts:
        assert part is not None
        for substance, strength in zip(part.substances, part.strengths, strict=True):
            if substance.lower() not in (s.lower() for s in substances):
                substances.append(substance)
                strengths.append(strength)
    forms = tuple(dict.fromkeys(part.dose_form for part in parts if part is not None))
    return ParsedName(tuple(substances), tuple(strengths), "Pack", match.group("brand"), forms)


def watched_label(substance: str) -> str | None:
    """The WATCHED_INGREDIENTS label a substance name means, or None.

    Raises UnreviewedSubstanceError for a calcium/magnesium salt nobody reviewed.
    """
    lowered = substance.strip().lower()
    if lowered in REVIEWED_NOT_KEPT:
        return None
    for label, patterns in WATCHED_INGREDIENTS.items():
        if any(fnmatch.fnmatchcase(lowered, pattern) for pattern in patterns):
            return label
    if _REVIEW_PREFIX.match(lowered):
        raise UnreviewedSubstanceError(
            f"substance {substance!r}: add it to WATCHED_INGREDIENTS or REVIEWED_NOT_KEPT after review"
        )
    return None


_WATCH_HINT: Final = re.compile(
    "|".join(
        re.escape(pattern.split("*")[0].strip(" ,"))
        for patterns in WATCHED_INGREDIENTS.values()
        for pattern in patterns
        if pattern.split("*")[0].strip(" ,")
    ),
    re.IGNORECASE,
)


def route_for_form(dose_form: str) -> str:
    lowered = dose_form.lower()
    for needle, route in DOSE_FORM_ROUTES:
        if needle in lowered:
            return route
    raise UnknownDoseFormError(f"dose form {dose_form!r}: add it to DOSE_FORM_ROUTES")


def route_for(parsed: ParsedName) -> str:
    if parsed.dose_form == "Pack":
        return ", ".join(dict.fromkeys(route_for_form(form) for form in parsed.part_forms))
    return route_for_form(parsed.dose_form)


# ==========================================================================================
# The source
# ==========================================================================================
@dataclass(frozen=True)
class Concept:
    """One RxNorm concept that carries NDCs (SCD, SBD, GPCK or BPCK)."""

    rxcui: str
    tty: str
    name: str
    brands: tuple[str, ...]
    ndcs: tuple[str, ...]  # 11 digits, sorted


@dataclass(frozen=True)
class Source:
    concepts: dict[str, Concept]
    files: dict[str, bytes]  # file name -> content, every file read
    missing: tuple[str, ...]  # files named by manifest.json but absent


def _concept_rows(record: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(tty, row) for every NDC-carrying concept under one ingredient record."""
    for scdc in record.get("SCDCs") or ():
        for scd in scdc.get("SCDs") or ():
            yield "SCD", scd
            for sbd in scd.get("SBDs") or ():
                yield "SBD", sbd
            for pack in [*(scd.get("GPCKs") or ()), *(scd.get("BPCKs") or ())]:
                yield str(pack.get("TTY", "PACK")), pack


def load_source(directory: Path) -> Source:
    """Read manifest.json and every per-letter file it names that is present."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        raise SourceError(f"{manifest_path} not found")
    files = {"manifest.json": manifest_path.read_bytes()}
    manifest = json.loads(files["manifest.json"])
    names = [Path(str(item["file"])).name for item in manifest]
    missing = []
    concepts: dict[str, Concept] = {}
    for name in names:
        path = directory / name
        if not path.exists() or path.stat().st_size == 0:
            missing.append(name)
            continue
        files[name] = path.read_bytes()
        for record in json.loads(files[name]):
            for tty, row in _concept_rows(record):
                ndcs = tuple(sorted(str(ndc) for ndc in row.get("NDCs") or ()))
                if not ndcs:
                    continue
                for ndc in ndcs:
                    if not (len(ndc) == 11 and ndc.isdigit()):
                        raise SourceError(f"{name}: RXCUI {row['RXCUI']} has NDC {ndc!r}, not 11 digits")
                concept = Concept(
                    rxcui=str(row["RXCUI"]),
                    tty=tty,
                    name=str(row["Name"]),
                    brands=tuple(str(bn["Name"]) for bn in row.get("BNs") or ()),
                    ndcs=ndcs,
                )
                seen = concepts.setdefault(concept.rxcui, concept)
                if seen != concept:
                    raise SourceError(f"RXCUI {concept.rxcui} differs between ingredient records: {seen} / {concept}")
    if len(files) == 1:
        raise SourceError(f"{directory}: no per-letter file of the manifest is present")
    return Source(concepts, files, tuple(missing))


# ==========================================================================================
# NDC readings (the same rules as cds_service/patient/ndc_table.py, used here to find the keys
# a 10-digit NDC without hyphens could also be read as)
# ==========================================================================================
def readings_of_ten_digits(digits: str) -> tuple[str, str, str]:
    """The 11-digit NDCs a 10-digit NDC without hyphens may be: 4-4-2, 5-3-2, 5-4-1."""
    return (
        "0" + digits,
        digits[:5] + "0" + digits[5:],
        digits[:9] + "0" + digits[9:],
    )


def ten_digit_forms(ndc11: str) -> Iterator[str]:
    """The 10-digit codes (without hyphens) that one reading turns into ``ndc11``."""
    if ndc11[0] == "0":  # 4-4-2
        yield ndc11[1:]
    if ndc11[5] == "0":  # 5-3-2
        yield ndc11[:5] + ndc11[6:]
    if ndc11[9] == "0":  # 5-4-1
        yield ndc11[:9] + ndc11[10:]


def alternative_keys(key: str) -> set[str]:
    """Product keys that another reading of a 10-digit code reaching ``key`` lands on."""
    others: set[str] = set()
    for package in (f"{n:02d}" for n in range(100)):
        for ten in ten_digit_forms(key + package):
            others.update(reading[:9] for reading in readings_of_ten_digits(ten))
    others.discard(key)
    return others


# ==========================================================================================
# The table
# ==========================================================================================
def drug_row(concept: Concept, parsed: ParsedName, labels: Sequence[str]) -> dict[str, object]:
    """What the table says about one watched RxNorm concept (shared by all its NDCs)."""
    brand = parsed.brand or (concept.brands[0] if concept.brands else None)
    return {
        "name": brand,
        "nonproprietary": _BRAND_SUFFIX.sub("", concept.name).strip(),
        "substances": [substance.upper() for substance in parsed.substances],
        "strength": parsed.strength,
        "dosage_form": parsed.dose_form,
        "route": route_for(parsed),
        "tty": concept.tty,
        "watched": list(labels),
    }


def hyphenated(ndc: str) -> str:
    """11-digit NDC or 9-digit key in 5-4-2 / 5-4 form: ``00054008825`` -> ``00054-0088-25``."""
    return "-".join(part for part in (ndc[:5], ndc[5:9], ndc[9:]) if part)


def build_table(source: Source) -> dict[str, object]:
    """The table: watched drugs by RxCUI, product keys and packages pointing at them."""
    keys: dict[str, set[str]] = {}
    for concept in source.concepts.values():
        for ndc in concept.ndcs:
            keys.setdefault(ndc[:9], set()).add(concept.rxcui)

    drugs: dict[str, dict[str, object]] = {}
    for concept in source.concepts.values():
        parsed = parse_name(concept.name)
        if parsed is None:
            if _WATCH_HINT.search(concept.name):
                raise UnparsedNameError(f"RXCUI {concept.rxcui} {concept.name!r} does not parse")
            continue
        labels = tuple(dict.fromkeys(label for s in parsed.substances if (label := watched_label(s))))
        if labels:  # an unknown dose form of a watched product stops here (route_for)
            drugs[concept.rxcui] = drug_row(concept, parsed, labels)

    products: dict[str, dict[str, str]] = {}
    packages: dict[str, dict[str, str]] = {}
    ambiguous: dict[str, list[str]] = {}
    per_label: dict[str, set[str]] = {label: set() for label in WATCHED_INGREDIENTS}
    for key in sorted(keys):
        cuis = keys[key]
        hits = sorted(cui for cui in cuis if cui in drugs)
        for cui in hits:
            for label in cast(list[str], drugs[cui]["watched"]):
                per_label[label].add(key)
        if not hits:
            continue
        if len(cuis) == 1:
            products[key] = {"ndc": hyphenated(key), "rxcui": hits[0]}
            continue
        ambiguous[key] = sorted(cuis, key=int)
        for cui in hits:
            for ndc in source.concepts[cui].ndcs:
                if ndc.startswith(key):
                    packages[ndc] = {"ndc": hyphenated(ndc), "rxcui": cui}

    other: set[str] = set()
    for key in set(products) | set(ambiguous):
        other.update(alt for alt in alternative_keys(key) if alt in keys and alt not in products)
    other -= set(ambiguous)

    routes = Counter(str(drugs[row["rxcui"]]["route"]) for row in products.values())
    return {
        "provenance": provenance(source, len(keys)),
        "counts": {
            "drugs": len(drugs),
            "products": len(products),
            "packages": len(packages),
            "ambiguous_keys": len(ambiguous),
            "other_keys": len(other),
            "product_keys_per_ingredient": {label: len(per_label[label]) for label in WATCHED_INGREDIENTS},
            "products_per_route": dict(sorted(routes.items())),
        },
        "drugs": {cui: drugs[cui] for cui in sorted(drugs, key=int)},
        "products": products,
        "packages": dict(sorted(packages.items())),
        "ambiguous_keys": ambiguous,
        "other_keys": sorted(other),
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def provenance(source: Source, source_keys: int) -> dict[str, object]:
    files = {name: {"sha256": _sha256(data), "size_bytes": len(data)} for name, data in sorted(source.files.items())}
    combined = "".join(f"{name}:{entry['sha256']}\n" for name, entry in files.items())
    return {
        "source": SOURCE_DESCRIPTION,
        "repository": SOURCE_REPOSITORY,
        "commit": SOURCE_COMMIT,
        "commit_date": SOURCE_COMMIT_DATE,
        "file": SOURCE_FILES,
        "source_path": "../shared/fhir-data/ndc/rxnorm-ingredients/ (outside the repo; or $NDC_SOURCE)",
        "data_date": DATA_DATE,
        "source_sha256": _sha256(combined.encode("utf-8")),
        "source_size_bytes": sum(len(data) for data in source.files.values()),
        "source_files": files,
        "files_missing": list(source.missing),
        "source_concepts_with_ndcs": len(source.concepts),
        "source_product_keys": source_keys,
        "licence_note": LICENCE_NOTE,
        "generator": "tools/generate_ndc_table.py",
        "generator_version": GENERATOR_VERSION,
        "ingredients_kept": {label: list(patterns) for label, patterns in WATCHED_INGREDIENTS.items()},
        "reviewed_not_kept": dict(REVIEWED_NOT_KEPT),
        "key": "first 9 digits of the 11-digit NDC: 5-digit labeler + 4-digit product, zero-padded",
    }


def render(table: Mapping[str, object]) -> str:
    """JSON text with one row per line (products, packages, keys), so diffs stay readable."""
    return render_table(table, whole=frozenset({"counts", "provenance"}))


def generate(source: Path) -> str:
    """Read the source directory and return the JSON text to commit."""
    return render(build_table(load_source(source)))


def default_source() -> Path:
    """``$NDC_SOURCE`` when set and not empty, else ``DEFAULT_SOURCE``."""
    return source_from_env(SOURCE_ENV, DEFAULT_SOURCE)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(
        argv,
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        source_help="directory with manifest.json and the per-letter JSON files "
        f"(default: ${SOURCE_ENV}, else {DEFAULT_SOURCE})",
        default_output=DEFAULT_OUTPUT,
    )
    source: Path = args.source if args.source is not None else default_source()

    if not source.is_dir():
        print(f"source directory not found: {source}", file=sys.stderr)
        return 2
    text = generate(source)
    counts = json.loads(text)["counts"]
    written = f"wrote {args.output}: {counts['products']} products, {counts['packages']} packages, {len(text)} bytes"
    return check_or_write(args.output, text, "generate_ndc_table.py", written, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
