#!/usr/bin/env python3
"""Generate ``cds_service/patient/data/atc_generated.json`` from the WHO ATC/DDD index.

Usage::

    python tools/generate_atc_table.py [--source PATH] [--output PATH] [--check]

The source is ``WHO ATC-DDD 2026-04-25.csv``, a scrape of the WHO Collaborating Centre for Drug
Statistics Methodology's ATC/DDD index (https://atcddd.fhi.no/atc_ddd_index/) published in the
GitHub repository fabkury/atcd. It lives outside this repository: ``--source``, else the
environment variable ``ATC_SOURCE``, else ``../shared/fhir-data/atc/WHO ATC-DDD 2026-04-25.csv``.
It is never copied in: only the derived table (the codes and names under ``PREFIXES``, with the
provenance of the source) is committed.

Why a generated table: drug families are defined by the ATC hierarchy (every code under B01AA is
a vitamin K antagonist, fluindione B01AA12 included), so the whole subtree is taken from the
source instead of being typed by hand.

How: the CSV (columns ``atc_code,atc_name,ddd,uom,adm_r,note``; one row per DDD, so a code can
repeat) is read with the standard ``csv`` module; every code that starts with one of
``PREFIXES`` is kept (the prefix's own group code included) with its name exactly as WHO
writes it. Two rows of one code with different names stop the generator,
and so does a declared prefix that is no longer a code in the source.

The source must be the very file read at ``SOURCE_COMMIT``: its git blob id is checked, so the
recorded provenance cannot silently describe another file. To move to a newer snapshot, update
``SOURCE_COMMIT``, ``SOURCE_FILE`` and ``SOURCE_GIT_BLOB`` together (``git rev-parse
<commit>:"<file>"`` in a clone of fabkury/atcd), re-read its licence, then regenerate.

``--check`` regenerates in memory and exits 1 with a short summary when the committed file
differs (drift), 0 when it matches. The output is deterministic: sorted keys, one code per
line, no timestamps.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from generated_table import check_or_write, parse_arguments, render_table
from generated_table import default_source as source_from_env
from generated_table import drift_summary as table_drift_summary

GENERATOR_VERSION: Final = "1.0.0"

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
SOURCE_ENV: Final = "ATC_SOURCE"
SOURCE_REPOSITORY: Final = "fabkury/atcd"
SOURCE_COMMIT: Final = "1e92aec7c52c7e324080416294bb8e68cf686685"
SOURCE_FILE: Final = "WHO ATC-DDD 2026-04-25.csv"
# git blob id of SOURCE_FILE at SOURCE_COMMIT (git rev-parse <commit>:"<file>").
SOURCE_GIT_BLOB: Final = "3ee5e9ae08c4e76cdb2cad068b87cee9c9a12117"
DEFAULT_SOURCE: Final = REPO_ROOT.parent / "shared" / "fhir-data" / "atc" / SOURCE_FILE
DEFAULT_OUTPUT: Final = REPO_ROOT / "cds_service" / "patient" / "data" / "atc_generated.json"
SOURCE_DESCRIPTION: Final = (
    "WHO ATC/DDD index (WHO Collaborating Centre for Drug Statistics Methodology, "
    "https://atcddd.fhi.no/atc_ddd_index/) as published in github fabkury/atcd, " + SOURCE_FILE
)

# What fabkury/atcd says about licensing, read at SOURCE_COMMIT (README.md "About the license of
# the ATC-DDD data" and "License", and the LICENSE file). Quoted, not paraphrased into a promise:
# the WHOCC's own copyright disclaimer page is NOT stored in that repository and was not read.
LICENCE_NOTE: Final = (
    "The ATC codes and names are material of the WHO Collaborating Centre for Drug Statistics "
    "Methodology (WHOCC), Oslo, copied unchanged. WHOCC terms (https://atcddd.fhi.no/copyright_disclaimer/, "
    "as quoted in github jotsetung/atc and summarised by the CRAN AMR package documentation): use of "
    "all or parts of the material requires reference to the WHOCC; copying and distribution for "
    "commercial purposes is not allowed; changing or manipulating the material is not allowed. This "
    "table is that reference: a small unchanged extract used to recognise drug families, not a "
    "redistribution of the index; a commercial distributor of this software must clear it with the "
    "WHOCC. The scraper repository fabkury/atcd is CC BY-NC-SA 4.0 for its author's own work (its "
    "README: the ATC data themselves are WHOCC's)."
)

# ==========================================================================================
# THE selection. Every ATC code that starts with one of these prefixes is kept, the prefix's own
# code included (4th-level groups and their 5th-level substances; B03A is a 3rd-level group and
# brings B03AA..B03AE). Why each is here:
# ==========================================================================================
PREFIXES: Final[tuple[str, ...]] = (
    "B01AA",  # vitamin K antagonists (warfarin ... fluindione)
    "B01AE",  # direct thrombin inhibitors (dabigatran): VKA substitutes
    "B01AF",  # direct factor Xa inhibitors (apixaban, rivaroxaban): VKA substitutes
    "A11CC",  # vitamin D and analogues: active sterols (alfacalcidol, calcitriol) and nutritional D
    "A11CB",  # vitamin A and D in combination
    "H05BX",  # other anti-parathyroid agents: calcimimetics and paricalcitol, doxercalciferol
    "H05BA",  # calcitonin: a look-alike ("calci-") that is not calcium or vitamin D
    "V03AE",  # hyperkalaemia/hyperphosphataemia drugs: phosphate binders AND potassium binders
    "V03AB",  # antidotes: only V03AB06 thiosulfate matters, the group is kept for context
    "A12AA",  # calcium salts (calcium load)
    "A12AX",  # calcium combined with vitamin D and/or other drugs
    "A12CC",  # magnesium salts
    "B03A",  # iron preparations: oral (B03AA, B03AB), parenteral (B03AC), combinations
    "A02AA",  # magnesium antacids
    "A02AB",  # aluminium antacids (aluminium hydroxide is also an old phosphate binder)
    "A02AC",  # calcium antacids (calcium carbonate)
    "A02AD",  # aluminium/calcium/magnesium antacid combinations
    "D05AX",  # topical vitamin D analogues (calcipotriol, calcitriol, tacalcitol): not systemic
)

EXPECTED_HEADER: Final = ("atc_code", "atc_name", "ddd", "uom", "adm_r", "note")

# Levels 1 to 5: A, A12, A12A, A12AA, A12AA04.
ATC_CODE: Final = re.compile(r"[A-Z](?:\d{2}(?:[A-Z](?:[A-Z](?:\d{2})?)?)?)?")


class SourceFormatError(ValueError):
    """The CSV is not shaped like the atcd scrape (header, code shape, duplicate names)."""


class SourceMismatchError(ValueError):
    """The source is not the file read at SOURCE_COMMIT (its git blob id differs)."""


def git_blob_id(data: bytes) -> str:
    """The id git gives these bytes as a blob (sha1 of ``blob <size>\\0<data>``)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def read_rows(text: str) -> list[tuple[str, str]]:
    """(code, name) of every data row, stripped; checks the header and the shape of each code."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or tuple(column.strip() for column in header) != EXPECTED_HEADER:
        raise SourceFormatError(f"unexpected header {header!r}; expected {','.join(EXPECTED_HEADER)}")
    rows = []
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(EXPECTED_HEADER):
            raise SourceFormatError(f"line {number}: {len(row)} columns, expected {len(EXPECTED_HEADER)}: {row!r}")
        code, name = row[0].strip(), row[1].strip()
        if not ATC_CODE.fullmatch(code):
            raise SourceFormatError(f"line {number}: {code!r} is not an ATC code")
        if not name or name == "NA":
            raise SourceFormatError(f"line {number}: {code} has no name")
        rows.append((code, name))
    return rows


def select_codes(rows: Iterable[tuple[str, str]], prefixes: Sequence[str] = PREFIXES) -> dict[str, str]:
    """Code -> name (as WHO writes it) for every code under ``prefixes``, sorted by code.

    A code repeated on several rows (one per DDD) must carry the same name each time; every
    prefix must itself be a code of the source (a group WHO removed is a review, not a guess).
    """
    names: dict[str, str] = {}
    for code, name in rows:
        if not code.startswith(tuple(prefixes)):
            continue
        if names.setdefault(code, name) != name:
            raise SourceFormatError(f"{code} has two names: {names[code]!r} and {name!r}")
    missing = sorted(prefix for prefix in prefixes if prefix not in names)
    if missing:
        raise SourceFormatError(f"declared prefixes absent from the source: {', '.join(missing)}")
    return dict(sorted(names.items()))


def provenance(source_bytes: bytes) -> dict[str, object]:
    """Where the table comes from: repository, commit, file, hashes, licence, selection."""
    return {
        "source": SOURCE_DESCRIPTION,
        "repository": SOURCE_REPOSITORY,
        "commit": SOURCE_COMMIT,
        "file": SOURCE_FILE,
        "source_git_blob": git_blob_id(source_bytes),
        "source_sha256": hashlib.sha256(source_bytes).hexdigest(),
        "source_size_bytes": len(source_bytes),
        "licence_note": LICENCE_NOTE,
        "generator": "tools/generate_atc_table.py",
        "generator_version": GENERATOR_VERSION,
        "prefixes": list(PREFIXES),
    }


def build_table(source_bytes: bytes) -> dict[str, object]:
    """The whole JSON document, as plain data (deterministic for a given input)."""
    blob = git_blob_id(source_bytes)
    if blob != SOURCE_GIT_BLOB:
        raise SourceMismatchError(
            f"source is git blob {blob}, not {SOURCE_GIT_BLOB} ({SOURCE_FILE} at {SOURCE_REPOSITORY}@"
            f"{SOURCE_COMMIT}); update SOURCE_COMMIT, SOURCE_FILE and SOURCE_GIT_BLOB if the source moved"
        )
    codes = select_codes(read_rows(source_bytes.decode("utf-8-sig")))
    return {"provenance": provenance(source_bytes), "codes": codes}


def render(table: Mapping[str, object]) -> str:
    """JSON text with one line per code, so diffs stay readable."""
    return render_table(table, whole=frozenset({"provenance"}), sort_whole=True)


def generate(source: Path) -> str:
    """Read the source CSV and return the JSON text to commit."""
    return render(build_table(source.read_bytes()))


def drift_summary(committed: str, regenerated: str, limit: int = 10) -> list[str]:
    """Short human summary of how the committed table differs from a fresh one (with values)."""
    return table_drift_summary(committed, regenerated, limit, show_values=True)


def default_source() -> Path:
    """``$ATC_SOURCE`` when set and not empty, else ``DEFAULT_SOURCE``."""
    return source_from_env(SOURCE_ENV, DEFAULT_SOURCE)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(
        argv,
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        source_help=f"the atcd CSV (default: ${SOURCE_ENV}, else {DEFAULT_SOURCE})",
        default_output=DEFAULT_OUTPUT,
    )
    source: Path = args.source if args.source is not None else default_source()

    if not source.exists():
        print(f"source not found: {source}", file=sys.stderr)
        return 2
    try:
        text = generate(source)
    except (SourceFormatError, SourceMismatchError) as error:
        print(f"{source}: {error}", file=sys.stderr)
        return 2
    written = f"wrote {args.output}: {len(json.loads(text)['codes'])} codes, {len(text)} bytes"
    return check_or_write(args.output, text, "generate_atc_table.py", written, check=args.check, show_values=True)


if __name__ == "__main__":
    sys.exit(main())
