"""The package's layers: imports only point down the request's path, and there are no circles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cds_service"

# Top to bottom (docs/architecture.md). A module may import its own group or any group below it.
LAYERS: list[tuple[str, ...]] = [
    ("__main__",),
    ("cli",),
    ("http",),
    # The SMART companion page: its own blueprint (registered by http), over the engine's layers.
    ("smart",),
    ("auth", "feedback"),
    ("pipeline",),
    ("services",),
    ("engine",),
    ("fhir.resolver", "fhir.client", "fhir.templates", "fhir.breaker"),
    ("render", "governance"),
    ("checks",),
    ("knowledge",),
    ("patient",),
    # fhir/__init__ is empty: the package itself sits at the bottom with its generic readers.
    ("fhir", "fhir.reading", "protocol", "errors", "config", "net", "calllog", "metrics", "pages", "__init__"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "__init__"


def _group(module: str) -> tuple[int, str]:
    """(layer index, group) of a module name relative to the package."""
    best: tuple[int, str] | None = None
    for index, groups in enumerate(LAYERS):
        for group in groups:
            if (module == group or module.startswith(group + ".")) and (best is None or len(group) > len(best[1])):
                best = (index, group)
    assert best is not None, f"cds_service.{module} belongs to no layer: add it to LAYERS and docs/architecture.md"
    return best


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cds_service"):
            base = node.module.removeprefix("cds_service").lstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                found.add(
                    candidate
                    if (PACKAGE / (candidate.replace(".", "/") + ".py")).exists()
                    or (PACKAGE / candidate.replace(".", "/")).is_dir()
                    else base or "__init__"
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cds_service."):
                    found.add(alias.name.removeprefix("cds_service."))
    return found


MODULES = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_imports_only_point_down_the_layers():
    upward = []
    for module, imported in MODULES.items():
        layer, group = _group(module)
        for target in imported:
            target_layer, target_group = _group(target)
            sideways = target_layer == layer and target_group.split(".")[0] != group.split(".")[0]
            if target_layer < layer or sideways:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that climb a layer or cross sideways:\n" + "\n".join(sorted(upward))


def test_there_are_no_import_circles():
    graph = {m: {t for t in targets if t in MODULES} for m, targets in MODULES.items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)
