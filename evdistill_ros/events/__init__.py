"""Events: the structure-of-arrays type, the event input spec, representations and sliding windows
(the wire codecs are in evdistill_ros.wire).

`embed`, `SlidingWindow` and the rest of the representation/window API are imported lazily
(PEP 562) so that `import evdistill_ros.events` (bag tools, `evdistill info`) does not pay for
importing numba; `from evdistill_ros.events import embed` works as usual.
"""
from __future__ import annotations

import importlib
from typing import Any

from .types import Events
from .spec import DEFAULT_EVENT_INPUT, ByCount, ByTime, EventInput

_LAZY = {
    "REPRESENTATIONS": ".representations", "embed": ".representations", "embed_and_count": ".representations",
    "representation_channels": ".representations", "warmup": ".representations",
    "SlidingWindow": ".windows", "Window": ".windows", "WindowStats": ".windows", "embeddings_at": ".windows",
}

__all__ = ["Events", "EventInput", "ByTime", "ByCount", "DEFAULT_EVENT_INPUT", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
