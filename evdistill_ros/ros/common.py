"""Pieces the nodes share: parameters, the event input, the stream accumulator, image messages, stats."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import rospy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from .. import wire
from ..events import DEFAULT_EVENT_INPUT, EventInput, warmup
from ..wire import EventArrayMsg
from ..events.windows import SlidingWindow, Window, WindowStats
from ..models.checkpoint import read_metadata
from .event_subscriber import EventSubscriber

def param(name: str, default: Any) -> Any:
    """A private parameter (~name), typed like its default."""
    value = rospy.get_param("~" + name, default)
    if default is not None and not isinstance(default, (dict, list)) and value is not None:
        try:
            value = type(default)(value)
        except (TypeError, ValueError):
            rospy.logerr("parameter ~%s=%r is not a %s; using %r", name, value, type(default).__name__, default)
            value = default
    return value


def event_input_from_ros(base: EventInput | None = None) -> EventInput:
    """`base` (the checkpoint's event input, else the default) overridden by ~representation,
    ~representation_params, ~window_ms, ~stride_ms, ~window_events, ~stride_events."""
    return (base or DEFAULT_EVENT_INPUT).with_overrides(
        representation=param("representation", ""), params=param("representation_params", {}) or {},
        window_ms=param("window_ms", 0.0), stride_ms=param("stride_ms", 0.0),
        window_events=param("window_events", 0), stride_events=param("stride_events", 0))


def checkpoint_event_input(path: str) -> tuple[EventInput | None, str]:
    """(the event input stored in a checkpoint's metadata, "") or (None, why not): reads the
    metadata only, never builds the network."""
    if not path:
        return None, ""  # no checkpoint: ~representation / the default, not an error
    try:
        meta = read_metadata(path)
    except (OSError, ValueError) as exc:
        return None, str(exc)
    rep = meta.get("representation")
    if not isinstance(rep, dict):
        return None, f"checkpoint {path} is an APS-frame network (input {rep!r}), not an event network"
    try:
        return EventInput.from_dict(rep), ""
    except ValueError as exc:
        return None, f"checkpoint {path}: {exc}"


@dataclass(frozen=True)
class SizeLimits:
    """What a publisher may make a node allocate: the sensor size messages may declare."""

    max_height: int = 2048
    max_width: int = 2048

    @classmethod
    def from_ros(cls) -> "SizeLimits":
        return cls(param("max_height", cls.max_height), param("max_width", cls.max_width))

    def allows(self, size: tuple[int, int]) -> bool:
        return 0 < size[0] <= self.max_height and 0 < size[1] <= self.max_width


class StreamAccumulator:
    """The `events` topic through a SlidingWindow: calls `on_window(window, received_monotonic)`.

    The sensor size comes from the messages (or ~height / ~width when they carry 0), bounded by
    ~max_height / ~max_width (default 2048: larger declared sizes are counted as
    `oversize_messages` and dropped, never allocated); a size change restarts the windows with a
    warning, as does `set_input` (a new checkpoint's event input). Counters stay monotonic over
    the node's life: a restart adds the old window's counters to the totals.
    `received_monotonic` is when the message that completed the window arrived: the start of
    the latency budget.
    """

    def __init__(self, spec: EventInput, on_window: Callable[[Window, float, str], None]):
        self.spec = spec
        self.on_window = on_window
        self.fallback_size = (param("height", 0), param("width", 0))
        self.limits = SizeLimits.from_ros()
        self.window: SlidingWindow | None = None
        self.size: tuple[int, int] | None = None
        self.newest_t = 0
        self.last_window_end = 0
        self.size_changes = 0
        self.input_changes = 0
        self.unknown_size = 0
        self.oversize = 0
        self._retired = WindowStats()  # counters of windows replaced by a restart
        self._lock = threading.Lock()
        warmup()  # numba kernels loaded before the first message, not while it waits
        wire.warmup()
        # ~queue_size: event messages rospy may hold while the callback is busy (oldest dropped,
        # and missing from `messages`); small values trade bursts for bounded latency
        self.subscriber = EventSubscriber("events", self._on_events, queue_size=param("queue_size", 200))

    def set_input(self, spec: EventInput) -> None:
        """Switch to another event input: the windows restart cleanly (logged)."""
        with self._lock:
            if spec == self.spec:
                return
            rospy.logwarn("event input changes from %s to %s: restarting the windows", self.spec.describe(),
                          spec.describe())
            self.spec = spec
            self.input_changes += 1
            if self.size is not None:
                self._restart(self.size)

    def _restart(self, size: tuple[int, int]) -> None:
        if self.window is not None:
            for k, v in self.window.stats.as_dict().items():
                setattr(self._retired, k, getattr(self._retired, k) + v)
        self.size = size
        self.window = self.spec.make_window(*size)
        self.newest_t = self.last_window_end = 0

    def _on_events(self, msg: EventArrayMsg) -> None:
        received = time.monotonic()
        size = (msg.height, msg.width) if msg.height and msg.width else self.fallback_size
        if not (size[0] and size[1]):
            self.unknown_size += 1
            rospy.logerr_throttle(5.0, "event messages carry no sensor size: set ~height and ~width")
            return
        if not self.limits.allows(size):
            self.oversize += 1
            rospy.logerr_throttle(5.0, f"event message declares a {size[1]}x{size[0]} sensor, beyond "
                                       f"~max_width x ~max_height = {self.limits.max_width}x{self.limits.max_height}: dropped")
            return
        with self._lock:
            if size != self.size:
                if self.size is not None:
                    self.size_changes += 1
                    rospy.logwarn("sensor size changed from %dx%d to %dx%d: restarting the windows",
                                  self.size[1], self.size[0], size[1], size[0])
                else:
                    rospy.loginfo("sensor %dx%d, %s", size[1], size[0], self.spec.describe())
                self._restart(size)
            resets = self.window.stats.resets
            windows = self.window.push(msg.events)
            if self.window.stats.resets != resets:
                rospy.logwarn("event time jumped backwards (a looping bag or a restarted driver): windows reset")
                self.newest_t = self.last_window_end = 0  # lag is measured against the new stream
            if len(msg.events):
                self.newest_t = max(self.newest_t, int(msg.events.t[-1]))
            for w in windows:
                self.last_window_end = w.t_end
                self.on_window(w, received, msg.frame_id)

    def stats(self) -> dict:
        with self._lock:  # a consistent snapshot: no message half processed
            return self._stats()

    def _stats(self) -> dict:
        out = {"messages": self.subscriber.messages, "bad_messages": self.subscriber.bad_messages,
               "wrong_type_messages": self.subscriber.wrong_type, "size_changes": self.size_changes,
               "input_changes": self.input_changes, "unknown_size_messages": self.unknown_size,
               "oversize_messages": self.oversize, "busy_s": round(self.subscriber.busy_s, 4),
               "event_input": self.spec.to_dict()}
        totals = self._retired.as_dict()
        if self.window is not None:
            totals = {k: v + getattr(self.window.stats, k) for k, v in totals.items()}
        out.update(totals)
        out["dropped_out_of_bounds"] += self.subscriber.dropped_out_of_bounds
        out["lag_ms"] = max(0, self.newest_t - self.last_window_end) / 1e6 if self.last_window_end else None
        return out


class StatsPublisher:
    """~stats: a JSON std_msgs/String once a second with counters and rates."""

    def __init__(self, collect: Callable[[], dict], period_s: float = 1.0):
        self.collect = collect
        self.pub = rospy.Publisher("~stats", String, queue_size=2, latch=True)
        self._last: tuple[float, dict] | None = None
        self.timer = rospy.Timer(rospy.Duration(period_s), self._tick)

    def _tick(self, _event: Any) -> None:
        now, stats = time.monotonic(), self.collect()
        if self._last is not None:
            dt = now - self._last[0]
            for key in ("events_accepted", "windows_emitted", "published", "messages"):
                if isinstance(stats.get(key), (int, float)) and key in self._last[1]:
                    stats[key + "_per_s"] = (stats[key] - self._last[1][key]) / dt
        self._last = (now, stats)
        self.pub.publish(String(data=json.dumps(stats, default=float)))


def image_msg(array: np.ndarray, encoding: str, stamp: rospy.Time, frame_id: str = "") -> Image:
    """numpy (H, W) uint8 'mono8' or (H, W, 3) uint8 'rgb8' -> sensor_msgs/Image (no cv_bridge copy)."""
    array = np.ascontiguousarray(array)
    msg = Image(header=Header(stamp=stamp, frame_id=frame_id), height=array.shape[0], width=array.shape[1],
                encoding=encoding, is_bigendian=0, step=array.strides[0])
    msg.data = array.tobytes()
    return msg


def ros_time(t_ns: int) -> rospy.Time:
    return rospy.Time(*divmod(int(t_ns), 1_000_000_000))
