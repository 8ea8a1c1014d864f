"""Events: the structure-of-arrays type, the event input spec, representations and sliding windows
(the wire codecs are in evdistill_ros.wire).

`embed`, `SlidingWindow` and the rest of the representation/window API resolve on first use
(evdistill_ros._lazy) so that `import evdistill_ros.events` (bag tools, `evdistill info`) does
not pay for importing numba; `from evdistill_ros.events import embed` works as usual.
"""
from __future__ import annotations

from .._lazy import lazy_exports
from .types import Events
from .spec import DEFAULT_EVENT_INPUT, ByCount, ByTime, EventInput

__getattr__, _lazy_names = lazy_exports(__name__, {
    "REPRESENTATIONS": ".representations", "embed": ".representations", "embed_and_count": ".representations",
    "representation_channels": ".representations", "warmup": ".representations",
    "SlidingWindow": ".windows", "Window": ".windows", "WindowStats": ".windows", "embeddings_at": ".windows",
})
__all__ = ["Events", "EventInput", "ByTime", "ByCount", "DEFAULT_EVENT_INPUT", *_lazy_names]
