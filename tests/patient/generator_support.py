"""Loading a table generator of tools/ as a module, for its tests (tools/ is not a package)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType


@contextmanager
def load_generator(path: Path, name: str) -> Iterator[ModuleType]:
    """The generator at ``path``, loaded as module ``name`` and registered in ``sys.modules``
    until the block ends (dataclasses look their module up while the file executes).

    The generator's folder is on ``sys.path`` while the file executes, as when it is run as
    ``python tools/<generator>.py``, so its ``from generated_table import ...`` works.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        try:
            spec.loader.exec_module(module)
        finally:
            if added:
                sys.path.remove(folder)
        yield module
    finally:
        sys.modules.pop(name, None)
