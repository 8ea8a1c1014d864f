"""The one way a package `__init__` re-exports names whose modules are costly to import.

`evdistill --help`, `evdistill info` and the bag tools pass through `evdistill_ros.events`,
`.eval` and `.distill`; importing torch costs ~1.4 s and numba ~0.2 s (python -X importtime,
this project's venv), so those packages resolve such names on first use (PEP 562):

    __getattr__, __all__ = lazy_exports(__name__, {"embed": ".representations", ...})
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """A module `__getattr__` that imports `table[name]` (relative to `package`) on first use."""
    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name], package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    return __getattr__, sorted(table)
