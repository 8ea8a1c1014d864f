"""The event input of a network, as one typed, frozen object from config to checkpoint to node.

    EventInput(representation="evdistill_2ch", params={}, window=ByTime(50 ms), topic=None)
    DEFAULT_EVENT_INPUT                      the project's one default (EvDistill's 2-channel, 50 ms)
    InputBounds(max_embedding_bytes, max_windows_per_s, min_stride_events)
        .check(spec, height, width) -> spec  what any user-set input may cost: ValueError (one line,
                                             naming the bound) beyond it; DEFAULT_BOUNDS

A network only ever sees the input it was trained on, so everything that builds event
embeddings for a network (the training cache, `io.samples`, evaluation, the ROS nodes) holds
one `EventInput` and asks it for windows, instead of passing a representation name, a
parameter dict and window lengths around separately.

Window policies are small types, in the spirit of tonic's slicers:

    ByTime(window_ns, stride_ns=None)        the events of the last `window_ns`, every `stride_ns`
    ByCount(events, stride=None)             the last `events` events, every `stride` events

and "one window ending at each given time" (frames of a bag, labels of a dataset) is
`EventInput.windows_at(chunks, end_times_ns, height=, width=)` under either policy.

Checkpoint form (`to_dict` / `from_dict`, kept readable and backward compatible)::

    {"name": str, "params": {...}, "window_ns": int | None, "window_events": int | None,
     "stride_ns"?: int, "stride_events"?: int, "events_topic"?: str}

`from_dict` also reads the older dicts without window keys (the default window then).
`with_overrides` layers user settings (ROS parameters, command-line flags) on top; it is a
plain function of plain values so it is tested without a roscore.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Union

import numpy as np

from .types import Events

if TYPE_CHECKING:  # the window module pulls in numba; importing the spec must stay cheap
    from .windows import SlidingWindow, WindowStats


@dataclass(frozen=True)
class ByTime:
    """Windows of `window_ns` nanoseconds of event time, one every `stride_ns` (default: the window)."""

    window_ns: int
    stride_ns: int | None = None

    def __post_init__(self) -> None:
        _positive("window_ns", self.window_ns)
        if self.stride_ns is not None:
            _positive("stride_ns", self.stride_ns)

    @property
    def stride(self) -> int:
        return int(self.stride_ns if self.stride_ns is not None else self.window_ns)

    def describe(self) -> str:
        return f"{self.window_ns / 1e6:g} ms every {self.stride / 1e6:g} ms"


@dataclass(frozen=True)
class ByCount:
    """Windows of the last `events` events, one every `stride` events (default: the window)."""

    events: int
    stride_events: int | None = None

    def __post_init__(self) -> None:
        _positive("window_events", self.events)
        if self.stride_events is not None:
            _positive("stride_events", self.stride_events)

    @property
    def stride(self) -> int:
        return int(self.stride_events if self.stride_events is not None else self.events)

    def describe(self) -> str:
        return f"{self.events} events every {self.stride} events"


WindowPolicy = Union[ByTime, ByCount]


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise ValueError(f"event input: {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class EventInput:
    """Representation + its parameters + window policy (+ the events topic it was recorded on)."""

    representation: str = "evdistill_2ch"
    params: Mapping[str, Any] = field(default_factory=dict)
    window: WindowPolicy = ByTime(50_000_000)
    topic: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.representation, str) or not self.representation:
            raise ValueError(f"event input: representation must be a name, got {self.representation!r}")
        if not isinstance(self.params, Mapping):
            raise ValueError(f"event input: params must be a mapping, got {type(self.params).__name__}")
        if not isinstance(self.window, (ByTime, ByCount)):
            raise ValueError(f"event input: window must be ByTime or ByCount, got {self.window!r}")
        object.__setattr__(self, "params", dict(self.params))  # a private copy: frozen means frozen

    # ---- checkpoint / config form --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        by_time = isinstance(self.window, ByTime)
        out: dict[str, Any] = {
            "name": self.representation, "params": dict(self.params),
            "window_ns": int(self.window.window_ns) if by_time else None,
            "window_events": None if by_time else int(self.window.events),
        }
        if by_time and self.window.stride_ns is not None:
            out["stride_ns"] = int(self.window.stride_ns)
        if not by_time and self.window.stride_events is not None:
            out["stride_events"] = int(self.window.stride_events)
        if self.topic:
            out["events_topic"] = self.topic
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EventInput":
        """The checkpoint form back (also older dicts: a missing window is the default one)."""
        if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
            raise ValueError(f"event input: expected a dict with a representation 'name', got {d!r}")
        params = d.get("params") or {}
        if d.get("window_events") is not None:
            window: WindowPolicy = ByCount(int(d["window_events"]), _opt_int(d.get("stride_events")))
        elif d.get("window_ns") is not None:
            window = ByTime(int(d["window_ns"]), _opt_int(d.get("stride_ns")))
        else:
            window = DEFAULT_EVENT_INPUT.window
        return cls(d["name"], dict(params), window, d.get("events_topic") or None)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> "EventInput":
        """From a training config's `data` section (representation, representation_params,
        window_ns | window_events, events_topic)."""
        return cls.from_dict({"name": data["representation"], "params": data.get("representation_params") or {},
                              "window_ns": data.get("window_ns"), "window_events": data.get("window_events"),
                              "events_topic": data.get("events_topic")})

    def with_overrides(self, *, representation: str | None = None, params: Mapping[str, Any] | None = None,
                       window_ms: float = 0.0, stride_ms: float = 0.0, window_events: int = 0,
                       stride_events: int = 0, topic: str | None = None) -> "EventInput":
        """User settings on top of this input; 0 / None / empty leaves a setting as it is.

        A window length switches the policy (window_events wins over window_ms); a stride
        applies to the policy in force, so a count stride never lands on a time window.
        Another representation starts from empty params (the old ones may not apply).
        """
        rep = representation or self.representation
        new_params = dict(self.params) if rep == self.representation else {}
        new_params.update(params or {})
        window = self.window
        if window_events and window_events > 0:
            window = ByCount(int(window_events))
        elif window_ms and window_ms > 0:
            window = ByTime(int(round(window_ms * 1e6)))
        if isinstance(window, ByTime) and stride_ms and stride_ms > 0:
            window = ByTime(window.window_ns, int(round(stride_ms * 1e6)))
        if isinstance(window, ByCount) and stride_events and stride_events > 0:
            window = ByCount(window.events, int(stride_events))
        return EventInput(rep, new_params, window, topic or self.topic)

    def same_embedding(self, other: "EventInput") -> bool:
        """True when both give the same embedding of the same events (the topic and the stride
        do not change an embedding; the representation, its params with the registry's defaults
        filled in, and the window length do)."""
        def key(spec: "EventInput") -> tuple:
            w = spec.window
            return (spec.representation, spec.full_params(),
                    ("ns", w.window_ns) if isinstance(w, ByTime) else ("events", w.events))

        return key(self) == key(other)

    def full_params(self) -> dict[str, Any]:
        """The params with the registry's defaults filled in (the params as given for a name the
        registry does not know)."""
        from .representations import REPRESENTATIONS  # on use: numba only once embeddings are compared

        rep = REPRESENTATIONS.get(self.representation)
        return {**(rep.defaults if rep else {}), **self.params}

    # ---- what the representation registry knows ------------------------------------------
    def check(self) -> "EventInput":
        """Raise ValueError unless the registry knows the representation and every parameter."""
        from .representations import get_representation  # on use: numba only once windows are built

        get_representation(self.representation, dict(self.params))
        return self

    @property
    def channels(self) -> int:
        from .representations import representation_channels  # on use: numba only once windows are built

        return representation_channels(self.representation, **self.params)

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.representation}({params}), {self.window.describe()}"

    # ---- windows ---------------------------------------------------------------------------
    def _window_kwargs(self, stride: bool) -> dict[str, Any]:
        w = self.window
        if isinstance(w, ByTime):
            return {"window_ns": int(w.window_ns), **({"stride_ns": w.stride} if stride else {})}
        return {"window_events": int(w.events), **({"stride_events": w.stride} if stride else {})}

    def make_window(self, height: int, width: int, **options: Any) -> "SlidingWindow":
        """A SlidingWindow over a stream (options: max_events, reset_threshold_ns, ...)."""
        from .windows import SlidingWindow  # on use: numba only once windows are built

        return SlidingWindow(self.representation, height=height, width=width, **self._window_kwargs(True),
                             **options, **self.params)

    def windows_at(self, chunks: Iterable[Events], end_times_ns: np.ndarray, *, height: int, width: int,
                   stats: "WindowStats | None" = None) -> Iterator[tuple[int, np.ndarray, int]]:
        """One window ending at each of `end_times_ns`: yields (t_end, embedding, num_events)."""
        from .windows import embeddings_at  # on use: numba only once windows are built

        return embeddings_at(chunks, end_times_ns, self.representation, height=height, width=width,
                             stats=stats, **self._window_kwargs(False), **self.params)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


DEFAULT_EVENT_INPUT = EventInput()
"""The one default event input: EvDistill's released 2-channel count image over 50 ms windows."""



@dataclass(frozen=True)
class InputBounds:
    """What one event input may make a process allocate and compute, checked wherever an input is
    set (ROS parameters at start, dynamic_reconfigure, checkpoint metadata, the training config):
    a value beyond a bound is refused whole, never applied.

    max_embedding_bytes  one embedding, channels x height x width float32 (default 1 GiB: 64
                         channels of a 2048 x 2048 sensor; `bins: 100000` is refused)
    max_windows_per_s    time windows per second of event time (default 1000: a stride >= 1 ms;
                         `stride_ms: 0.001` asked a million and took the memory with them)
    min_stride_events    count windows: at most one every this many events (default 1000)
    """

    max_embedding_bytes: int = 1 << 30
    max_windows_per_s: float = 1000.0
    min_stride_events: int = 1000

    def check(self, spec: EventInput, height: int, width: int) -> EventInput:
        """`spec` when it is within the bounds for a height x width sensor (its representation and
        every parameter known to the registry), else ValueError."""
        from .representations import embed  # on use: numba only once windows are built

        try:  # built before accepted: a parameter the kernel refuses (bins: -3) fails here, not per message
            spec.check()
            channels = int(spec.channels)
            if channels < 1:
                raise ValueError(f"{channels} channels")
            probe = Events(np.array([0, 1], np.uint16), np.array([0, 1], np.uint16), np.array([0, 1000], np.int64),
                           np.array([1, 0], np.int8))
            embed(probe, spec.representation, height=2, width=2, **spec.params)
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"event input {spec.describe()}: {exc}") from None
        need = channels * int(height) * int(width) * 4
        if need > self.max_embedding_bytes:
            raise ValueError(f"event input {spec.describe()}: one embedding of {channels} x {height} x {width} float32 "
                             f"is {need / 2**20:.0f} MiB, beyond the bound of {self.max_embedding_bytes / 2**20:.0f} MiB")
        w = spec.window
        if isinstance(w, ByTime):
            min_stride = int(round(1e9 / self.max_windows_per_s))
            if w.stride < min_stride:
                raise ValueError(f"event input {spec.describe()}: a window every {w.stride / 1e6:g} ms is more than "
                                 f"{self.max_windows_per_s:g} windows per second (stride >= {min_stride / 1e6:g} ms)")
        elif w.stride < self.min_stride_events:
            raise ValueError(f"event input {spec.describe()}: a window every {w.stride} events is below the bound of "
                             f"one every {self.min_stride_events} events")
        return spec


DEFAULT_BOUNDS = InputBounds()
