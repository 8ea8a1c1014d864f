"""Pieces the nodes share: parameters, the event input, the stream accumulator, image messages,
status reports (~stats and /diagnostics)."""
from __future__ import annotations

import importlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
import rospy
import yaml
from sensor_msgs.msg import CompressedImage, Image
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header, String

from .. import wire
from ..events import DEFAULT_EVENT_INPUT, EventInput, warmup
from ..events.spec import InputBounds
from ..wire import EventArrayMsg
from ..events.windows import SlidingWindow, Window, WindowStats
from ..models.files import read_card
from .event_subscriber import EventSubscriber
from .health import LEVEL_NAMES, Health, HealthLimits
from .params import declared

def param(name: str) -> Any:
    """A private parameter (~name) with its declared default (ros.params), typed like that default."""
    default = declared(name).default
    value = rospy.get_param("~" + name, default)
    if default is not None and not isinstance(default, (dict, list)) and value is not None:
        try:
            value = type(default)(value)
        except (TypeError, ValueError):
            rospy.logerr("parameter ~%s=%r is not a %s; using %r", name, value, type(default).__name__, default)
            value = default
    return value


WINDOW_SETTINGS = ("representation", "representation_params", "window_ms", "stride_ms", "window_events",
                   "stride_events")


def event_input_from_settings(base: EventInput | None, settings: Mapping[str, Any]) -> EventInput:
    """`base` (the checkpoint's event input, else the default) overridden by the window settings
    (WINDOW_SETTINGS; missing, 0 or empty ones leave `base` as it is). representation_params may
    be a mapping or its YAML / JSON text (a launch file's <param value="{bins: 5}"/>, a
    dynamic_reconfigure string). Raises ValueError on a malformed one."""
    params = settings.get("representation_params") or {}
    if isinstance(params, str):
        try:
            params = yaml.safe_load(params) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"representation_params {params!r} is not YAML: {exc}") from None
    if not isinstance(params, Mapping):
        raise ValueError(f"representation_params must be a mapping like {{bins: 5}}, not {params!r}")
    return (base or DEFAULT_EVENT_INPUT).with_overrides(
        representation=settings.get("representation") or "", params=dict(params),
        window_ms=float(settings.get("window_ms") or 0), stride_ms=float(settings.get("stride_ms") or 0),
        window_events=int(settings.get("window_events") or 0), stride_events=int(settings.get("stride_events") or 0))


def input_bounds() -> InputBounds:
    """The node's bounds on an event input (events.spec.InputBounds), from ~max_embedding_mb
    (default 1024), ~max_windows_per_s (1000) and ~min_stride_events (1000)."""
    return InputBounds(int(float(param("max_embedding_mb")) * 2**20),
                       float(param("max_windows_per_s")),
                       int(param("min_stride_events")))


def check_input(spec: EventInput) -> EventInput:
    """`spec` within the node's bounds for the largest sensor it accepts (~max_height x
    ~max_width), its representation and parameters known; ValueError in one line otherwise."""
    limits = SizeLimits.from_ros()
    return input_bounds().check(spec, limits.max_height, limits.max_width)


def event_input_from_ros(base: EventInput | None = None) -> EventInput:
    """`base` overridden by the private parameters ~representation, ~representation_params,
    ~window_ms, ~stride_ms, ~window_events, ~stride_events; settings that are malformed or beyond
    the node's bounds (check_input) are refused whole, logged, and `base` is used."""
    settings = {k: param(k) for k in WINDOW_SETTINGS}
    try:
        return check_input(event_input_from_settings(base, settings))
    except ValueError as exc:
        fallback = base or DEFAULT_EVENT_INPUT
        try:
            check_input(fallback)
        except ValueError:
            fallback = DEFAULT_EVENT_INPUT
        rospy.logerr("window parameters refused, using %s: %s", fallback.describe(), exc)
        return fallback


class WindowReconfigure:
    """dynamic_reconfigure's window settings applied to a StreamAccumulator over the checkpoint's
    input: a good update restarts the windows (logged by set_input), a bad one is put back whole
    and the client gets the settings in force, never a half-applied mix."""

    def __init__(self, accumulator: StreamAccumulator, base: Callable[[], EventInput | None]):
        self.accumulator, self.base = accumulator, base
        self.applied: dict[str, Any] = {}

    def __call__(self, update: Any) -> Any:
        settings = {k: update[k] for k in WINDOW_SETTINGS if k in update}
        # ~representation is a start-up parameter (not reconfigurable): it stays under every update
        settings.setdefault("representation", param("representation"))
        try:  # built and bounded before anything changes: a bad value is refused whole
            self.accumulator.set_input(check_input(event_input_from_settings(self.base(), settings)))
        except ValueError as exc:
            rospy.logerr("reconfigure refused: %s (kept %s)", exc, self.accumulator.spec.describe())
            for k in settings:  # the settings in force; before any update, each field's "unset" (0, "")
                if k in update:
                    update[k] = self.applied[k] if k in self.applied else type(update[k])()
            return update
        self.applied = settings
        return update


def reconfigure_server(config: str, callback: Callable[[Any, int], Any]) -> Any:
    """A dynamic_reconfigure server for the generated `evdistill_ros.cfg.<config>Config` (built
    from cfg/<config>.cfg by catkin), or None with a warning where it was not built."""
    try:
        from dynamic_reconfigure.server import Server  # on use: the core and its tests run without ROS
        module = importlib.import_module(f"evdistill_ros.cfg.{config}Config")
    except ImportError as exc:
        rospy.logwarn("dynamic_reconfigure unavailable (%s): settings stay as started", exc)
        return None
    return Server(module, callback)  # the generated module is the config type


def compressed_msg(rgb: np.ndarray, fmt: str, jpeg_quality: int, stamp: rospy.Time, frame_id: str = "") -> CompressedImage:
    """(H, W, 3) uint8 rgb8 -> sensor_msgs/CompressedImage as image_transport's compressed
    publisher writes it (format "rgb8; jpeg compressed bgr8": the original encoding, then what
    the codec holds), so `republish compressed` and rqt_image_view decode it."""
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"compressed format {fmt!r}: jpeg | png")
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    options = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, options)
    if not ok:
        raise ValueError(f"cv2 could not encode a {rgb.shape} image as {fmt}")
    return CompressedImage(header=Header(stamp=stamp, frame_id=frame_id), format=f"rgb8; {fmt} compressed bgr8",
                           data=data.tobytes())


def checkpoint_event_input(path: str) -> tuple[EventInput | None, str]:
    """(the event input stored in a checkpoint's metadata, "") or (None, why not): reads the
    metadata only, never builds the network."""
    if not path:
        return None, ""  # no checkpoint: ~representation / the default, not an error
    try:
        card = read_card(path)
    except (OSError, ValueError) as exc:
        return None, str(exc)
    if card.event_input is None:
        return None, f"checkpoint {path} is an APS-frame network (input 'aps'), not an event network"
    try:
        return check_input(card.event_input), ""
    except ValueError as exc:
        return None, f"checkpoint {path}: {exc}"


@dataclass(frozen=True)
class SizeLimits:
    """What a publisher may make a node allocate: the sensor size messages may declare."""

    max_height: int = 2048
    max_width: int = 2048

    @classmethod
    def from_ros(cls) -> "SizeLimits":
        return cls(param("max_height"), param("max_width"))

    def allows(self, size: tuple[int, int]) -> bool:
        return 0 < size[0] <= self.max_height and 0 < size[1] <= self.max_width


class CallbackErrors:
    """Exceptions raised in a subscriber callback: counted, logged at most once per kind every
    `period_s`, never fatal; a node's health turns ERROR while they happen (ros.health)."""

    def __init__(self, period_s: float = 10.0) -> None:
        self.count = 0
        self.last = ""
        self.period_s = period_s
        self._logged: dict[str, float] = {}

    def guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - one bad message must not go unseen nor kill the node
                self.record(exc, getattr(fn, "__name__", "callback"))
                return None
        return guarded

    def record(self, exc: BaseException, where: str) -> None:
        self.count += 1
        kind = type(exc).__name__
        self.last = f"{where}: {kind}: {exc}"
        now = time.monotonic()
        if now - self._logged.get(kind, float("-inf")) >= self.period_s:
            self._logged[kind] = now
            rospy.logerr("%s (%d callback error(s) so far; each kind logged at most every %g s)", self.last,
                         self.count, self.period_s)


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
        self.fallback_size = (param("height"), param("width"))
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
        self.errors = CallbackErrors()
        self.subscriber = EventSubscriber("events", self.errors.guard(self._on_events),
                                          queue_size=param("queue_size"))

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
               "publishers": self.subscriber.publishers(), "silent_s": round(self.subscriber.silent_s(), 3),
               "event_input": self.spec.to_dict(), "callback_errors": self.errors.count,
               "last_callback_error": self.errors.last or None}
        totals = self._retired.as_dict()
        if self.window is not None:
            totals = {k: v + getattr(self.window.stats, k) for k, v in totals.items()}
        out.update(totals)
        out["dropped_out_of_bounds"] += self.subscriber.dropped_out_of_bounds
        out["dropped_time_outlier"] = self.subscriber.dropped_time_outlier
        out["lag_ms"] = max(0, self.newest_t - self.last_window_end) / 1e6 if self.last_window_end else None
        return out


def every(period_s: float, fn: Callable[[], None], name: str) -> threading.Thread:
    """Call `fn` every `period_s` of wall time until shutdown, in a daemon thread.

    Not rospy.Timer: that one runs on ROS time, which stands still under use_sim_time until a
    /clock arrives, and health reports and checkpoint checks must go on while a bag is paused."""
    def loop() -> None:
        next_t = time.monotonic() + period_s
        while not rospy.is_shutdown():
            time.sleep(max(0.0, next_t - time.monotonic()))
            next_t = max(next_t + period_s, time.monotonic())  # a slow call delays, never bunches, the next
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a report that fails must not stop the next one
                rospy.logerr_throttle(30.0, f"{name} failed: {exc}")

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


def health_limits() -> HealthLimits:
    return HealthLimits(param("warn_drop_fraction"), param("warn_latency_ms"),
                        param("error_silence_s"))


class StatusPublisher:
    """Once a second: ~stats (std_msgs/String, JSON counters and rates, for scripts) and one
    diagnostic_msgs/DiagnosticStatus for this node on /diagnostics (rqt_runtime_monitor,
    `rostopic echo /diagnostics`), judged by `assess(stats, previous stats, seconds, limits)`."""

    RATE_KEYS = ("events_accepted", "windows_emitted", "published", "messages")

    def __init__(self, collect: Callable[[], dict], assess: Callable[..., Health], ok_message: str,
                 period_s: float = 1.0):
        self.collect, self.assess, self.ok_message = collect, assess, ok_message
        self.limits = health_limits()
        self.pub = rospy.Publisher("~stats", String, queue_size=2, latch=True)
        self.diagnostics = rospy.Publisher("/diagnostics", DiagnosticArray, queue_size=2)
        self.name = rospy.get_name().lstrip("/")
        self._last: tuple[float, dict] | None = None
        self.last_health: Health | None = None
        self.thread = every(period_s, self.tick, "status")

    def tick(self) -> None:
        now, stats = time.monotonic(), self.collect()
        before, dt = (self._last[1], now - self._last[0]) if self._last else (None, 0.0)
        for key in self.RATE_KEYS:
            if before and isinstance(stats.get(key), (int, float)) and key in before and dt > 0:
                stats[key + "_per_s"] = (stats[key] - before[key]) / dt
        health = self.assess(stats, before, dt, self.limits)
        self._last, self.last_health = (now, stats), health
        stats["level"] = LEVEL_NAMES[health.level]
        self.pub.publish(String(data=json.dumps(stats, default=float)))
        status = DiagnosticStatus(level=health.level, name=f"evdistill_ros: {self.name}",
                                  message=health.message(self.ok_message), hardware_id=self.name,
                                  values=[KeyValue(key=k, value=v) for k, v in health.values.items()])
        self.diagnostics.publish(DiagnosticArray(header=Header(stamp=rospy.Time.now()), status=[status]))


def image_msg(array: np.ndarray, encoding: str, stamp: rospy.Time, frame_id: str = "") -> Image:
    """numpy (H, W) uint8 'mono8' or (H, W, 3) uint8 'rgb8' -> sensor_msgs/Image (no cv_bridge copy)."""
    array = np.ascontiguousarray(array)
    msg = Image(header=Header(stamp=stamp, frame_id=frame_id), height=array.shape[0], width=array.shape[1],
                encoding=encoding, is_bigendian=0, step=array.strides[0])
    msg.data = array.tobytes()
    return msg


def ros_time(t_ns: int) -> rospy.Time:
    return rospy.Time(*divmod(int(t_ns), 1_000_000_000))
