"""Pieces the nodes share: parameters, window configuration, image messages, stats."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import rospy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from ..events import warmup
from ..events.codec import EventArrayMsg
from ..events.windows import SlidingWindow, Window
from .event_subscriber import EventSubscriber

DEFAULT_REPRESENTATION = {"name": "evdistill_2ch", "params": {}, "window_ns": 50_000_000}


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


@dataclass
class WindowConfig:
    """Representation and window policy of an accumulator."""

    representation: str = "evdistill_2ch"
    params: dict = field(default_factory=dict)
    window_ns: int | None = 50_000_000
    stride_ns: int | None = 50_000_000
    window_events: int | None = None
    stride_events: int | None = None

    @classmethod
    def from_ros(cls, checkpoint_rep: Any = None) -> "WindowConfig":
        """From the checkpoint's representation, overridden by ~representation, ~window_ms, ~stride_ms,
        ~window_events, ~stride_events, ~representation_params."""
        rep = checkpoint_rep if isinstance(checkpoint_rep, dict) else DEFAULT_REPRESENTATION
        cfg = cls(representation=rep["name"], params=dict(rep.get("params") or {}),
                  window_ns=rep.get("window_ns"), window_events=rep.get("window_events"))
        cfg.representation = param("representation", cfg.representation)
        cfg.params.update(param("representation_params", {}) or {})
        window_ms = param("window_ms", 0.0)
        window_events = param("window_events", 0)
        if window_events > 0:
            cfg.window_ns, cfg.window_events = None, window_events
        elif window_ms > 0:
            cfg.window_ns, cfg.window_events = int(window_ms * 1e6), None
        if cfg.window_ns is None and cfg.window_events is None:
            cfg.window_ns = DEFAULT_REPRESENTATION["window_ns"]
        if cfg.window_ns is not None:
            stride_ms = param("stride_ms", 0.0)
            cfg.stride_ns = int(stride_ms * 1e6) if stride_ms > 0 else cfg.window_ns
            cfg.stride_events = None
        else:
            stride_events = param("stride_events", 0)
            cfg.stride_events = stride_events if stride_events > 0 else cfg.window_events
            cfg.stride_ns = None
        return cfg

    def make_window(self, height: int, width: int) -> SlidingWindow:
        return SlidingWindow(self.representation, height=height, width=width, window_ns=self.window_ns,
                             stride_ns=self.stride_ns, window_events=self.window_events,
                             stride_events=self.stride_events, **self.params)


class StreamAccumulator:
    """The `events` topic through a SlidingWindow: calls `on_window(window, received_monotonic)`.

    The sensor size comes from the messages (or ~height / ~width when they carry 0); a size
    change restarts the windows with a warning. `received_monotonic` is when the message that
    completed the window arrived: the start of the latency budget.
    """

    def __init__(self, cfg: WindowConfig, on_window: Callable[[Window, float, str], None]):
        self.cfg = cfg
        self.on_window = on_window
        self.fallback_size = (param("height", 0), param("width", 0))
        self.window: SlidingWindow | None = None
        self.size: tuple[int, int] | None = None
        self.newest_t = 0
        self.last_window_end = 0
        self.size_changes = 0
        self.unknown_size = 0
        self._lock = threading.Lock()
        warmup()  # numba kernels loaded before the first message, not while it waits
        # ~queue_size: event messages rospy may hold while the callback is busy (oldest dropped,
        # and missing from `messages`); small values trade bursts for bounded latency
        self.subscriber = EventSubscriber("events", self._on_events, queue_size=param("queue_size", 200))

    def _on_events(self, msg: EventArrayMsg) -> None:
        received = time.monotonic()
        size = (msg.height, msg.width) if msg.height and msg.width else self.fallback_size
        if not (size[0] and size[1]):
            self.unknown_size += 1
            rospy.logerr_throttle(5.0, "event messages carry no sensor size: set ~height and ~width")
            return
        with self._lock:
            if size != self.size:
                if self.size is not None:
                    self.size_changes += 1
                    rospy.logwarn("sensor size changed from %dx%d to %dx%d: restarting the windows",
                                  self.size[1], self.size[0], size[1], size[0])
                else:
                    rospy.loginfo("sensor %dx%d, %s windows of %s", size[1], size[0], self.cfg.representation,
                                  f"{self.cfg.window_ns / 1e6:g} ms every {self.cfg.stride_ns / 1e6:g} ms"
                                  if self.cfg.window_ns else f"{self.cfg.window_events} events")
                self.size = size
                self.window = self.cfg.make_window(*size)
            resets = self.window.stats.resets
            windows = self.window.push(msg.events)
            if self.window.stats.resets != resets:
                rospy.logwarn("event time jumped backwards (a looping bag or a restarted driver): windows reset")
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
               "unknown_size_messages": self.unknown_size, "busy_s": round(self.subscriber.busy_s, 4)}
        if self.window is not None:
            out.update(self.window.stats.as_dict())
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
