"""What the table generators share: the drift summary, the source default and the --check tail.

Used by ``tools/generate_rxnorm_table.py``, ``tools/generate_atc_table.py`` and
``tools/generate_ndc_table.py`` as ``from generated_table import ...`` (a generator run as
``python tools/<name>.py`` has tools/ on ``sys.path``; the tests put it there while loading one).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["check_or_write", "default_source", "drift_summary"]


def _section_lines(section: str, a: dict[Any, Any], b: dict[Any, Any], limit: int, show_values: bool) -> list[str]:
    added = sorted(set(b) - set(a))
    removed = sorted(set(a) - set(b))
    changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    lines = [f"{section}: +{len(added)} -{len(removed)} ~{len(changed)}"]
    if show_values:
        lines += [f"  + {k}: {b[k]!r}" for k in added[:limit]]
        lines += [f"  - {k}: {a[k]!r}" for k in removed[:limit]]
    else:
        lines += [f"  + {k}" for k in added[:limit]]
        lines += [f"  - {k}" for k in removed[:limit]]
    lines += [f"  ~ {k}: {a[k]!r} -> {b[k]!r}" for k in changed[:limit]]
    return lines


def drift_summary(committed: str, regenerated: str, limit: int = 10, show_values: bool = False) -> list[str]:
    """Short human summary of how the committed table differs from a fresh one.

    Dict sections are diffed by key (added, removed, changed; at most ``limit`` of each), list
    sections by item (as strings); ``show_values`` also prints the value of an added or removed
    key. Any other section that differs is named as ``<section>: differs``.
    """
    try:
        old = json.loads(committed)
    except ValueError as error:
        return [f"committed file is not valid JSON: {error}"]
    new = json.loads(regenerated)
    lines: list[str] = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section), new.get(section)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list):
            # Items have no values of their own: list them alone, whatever show_values says.
            lines += _section_lines(section, dict.fromkeys(map(str, a)), dict.fromkeys(map(str, b)), limit, False)
        elif isinstance(a, dict) and isinstance(b, dict):
            lines += _section_lines(section, a, b, limit, show_values)
        else:
            lines.append(f"{section}: differs")
    if not lines:
        lines.append("same data, different formatting")
    return lines


def default_source(env_var: str, default: Path) -> Path:
    """``$env_var`` when set and not blank, else ``default``."""
    configured = os.environ.get(env_var, "").strip()
    return Path(configured) if configured else default


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def render_table(table: Any, *, whole: frozenset[str], sort_whole: bool = False) -> str:
    """A generated table as committed JSON text, one row per line so that diffs stay readable:
    the sections named in ``whole`` (provenance, counts) are indented as they are (keys sorted
    with ``sort_whole``); a dict section has one ``key: value`` line per member, a list section
    one line per item; anything else is one line."""
    out = ["{"]
    sections = list(table.items())
    for position, (key, value) in enumerate(sections):
        comma = "," if position < len(sections) - 1 else ""
        if key in whole:
            body = json.dumps(value, ensure_ascii=False, indent=1, sort_keys=sort_whole)
            out.append(f" {_dumps(key)}: " + body.replace("\n", "\n ") + comma)
        elif isinstance(value, dict):
            out.append(f" {_dumps(key)}: {{")
            items = list(value.items())
            for i, (inner_key, inner) in enumerate(items):
                inner_comma = "," if i < len(items) - 1 else ""
                out.append(f"  {_dumps(inner_key)}: {_dumps(inner)}{inner_comma}")
            out.append(f" }}{comma}")
        elif isinstance(value, list):
            out.append(f" {_dumps(key)}: [")
            for i, inner in enumerate(value):
                inner_comma = "," if i < len(value) - 1 else ""
                out.append(f"  {_dumps(inner)}{inner_comma}")
            out.append(f" ]{comma}")
        else:
            out.append(f" {_dumps(key)}: {_dumps(value)}{comma}")
    out.append("}")
    return "\n".join(out) + "\n"


def parse_arguments(
    argv: Any, *, description: str | None, source_help: str, default_output: Path, default_source: Path | None = None
) -> argparse.Namespace:
    """A generator's command line: ``--source`` (``source_help``; ``default_source`` when given, else
    None for the generator to resolve), ``--output`` (``default_output``) and ``--check``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--source", type=Path, default=default_source, help=source_help)
    parser.add_argument(
        "--output", type=Path, default=default_output, help="JSON table to write or check (default: %(default)s)"
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if OUTPUT differs from a fresh generation"
    )
    return parser.parse_args(argv)


def check_or_write(
    output: Path, text: str, generator: str, written_message: str, *, check: bool, show_values: bool = False
) -> int:
    """The end of a generator's ``main``: compare ``text`` with ``output`` (``check``), or write it.

    ``text`` is the freshly generated table and ``generator`` the generator's file name under
    tools/, named in the drift message. With ``check``: prints "<output>: up to date" and returns
    0, or prints "<output>: DRIFT (regenerate with tools/<generator>)" and the ``drift_summary``
    (``show_values`` passed on; "file missing" when there is no file) and returns 1. Without:
    writes ``output`` (creating its folder), prints ``written_message`` and returns 0.
    """
    if check:
        committed = output.read_text(encoding="utf-8") if output.exists() else ""
        if committed == text:
            print(f"{output}: up to date")
            return 0
        print(f"{output}: DRIFT (regenerate with tools/{generator})")
        for line in drift_summary(committed, text, show_values=show_values) if committed else ["file missing"]:
            print(line)
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(written_message)
    return 0
