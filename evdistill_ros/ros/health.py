"""A node's health from its counters: OK / WARN / ERROR and key-values for /diagnostics.

No rospy here (unit-tested directly); common.StatusPublisher turns a `Health` into a
diagnostic_msgs/DiagnosticStatus. Rules work on what happened in the last period (deltas of
the monotonic counters), so one bad minute an hour ago does not keep a node in WARN.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}

# counters of the accumulator, by cause
EVENT_DROPS = ("dropped_out_of_order", "dropped_out_of_bounds", "dropped_overflow", "dropped_time_outlier")
MESSAGE_DROPS = ("bad_messages", "wrong_type_messages", "unknown_size_messages", "oversize_messages")
# counters of the segmentation node: windows that got no labels, by cause
WINDOW_DROPS = ("stale_dropped", "rejected", "rejected_input", "rejected_nonfinite")


@dataclass(frozen=True)
class HealthLimits:
    """Thresholds (ROS parameters of the same names): above them a node reports WARN / ERROR."""

    warn_drop_fraction: float = 0.05  # events, messages or windows lost in the last period
    warn_latency_ms: float = 500.0  # accumulator: lag behind the newest event; segmentation: latency p95
    error_silence_s: float = 5.0  # a connected input that sent nothing for this long


@dataclass
class Health:
    level: int = OK
    problems: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)

    def raise_to(self, level: int, problem: str) -> None:
        self.level = max(self.level, level)
        self.problems.append(problem)

    def message(self, ok_message: str) -> str:
        return "; ".join(self.problems) if self.problems else ok_message

    def merge(self, other: "Health", prefix: str) -> None:
        """Fold another part's health in (one status per node): worst level, all problems."""
        self.level = max(self.level, other.level)
        self.problems += other.problems
        self.values.update({prefix + k: v for k, v in other.values.items()})


def delta(now: dict, before: dict | None, keys: tuple[str, ...] | str) -> int:
    """Sum of `keys` gained since `before` (all of them when there is no `before`)."""
    keys = (keys,) if isinstance(keys, str) else keys
    total = sum(int(now.get(k) or 0) for k in keys)
    return total - (sum(int(before.get(k) or 0) for k in keys) if before else 0)


def _fraction(lost: int, kept: int) -> float:
    return lost / (lost + kept) if lost + kept > 0 else 0.0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _silence(health: Health, stats: dict, limits: HealthLimits, what: str) -> None:
    """ERROR when a connected input has been silent for `error_silence_s`."""
    silent_s, publishers = stats.get("silent_s"), int(stats.get("publishers") or 0)
    if publishers and silent_s is not None and silent_s > limits.error_silence_s:
        health.raise_to(ERROR, f"no {what} for {silent_s:.0f} s from {publishers} publisher(s)")


def accumulator_health(stats: dict, before: dict | None, dt_s: float, limits: HealthLimits) -> Health:
    """Events -> windows: drops by cause, skipped windows, lag behind the newest event, silence."""
    h = Health()
    events_in, dropped = delta(stats, before, "events_in"), delta(stats, before, EVENT_DROPS)
    messages, bad = delta(stats, before, "messages"), delta(stats, before, MESSAGE_DROPS)
    emitted, skipped = delta(stats, before, "windows_emitted"), delta(stats, before, "windows_skipped")
    rate = 1.0 / dt_s if dt_s > 0 else 0.0
    h.values.update({"event rate (ev/s)": _fmt(events_in * rate), "windows emitted/s": _fmt(emitted * rate),
                     "lag behind newest event (ms)": _fmt(stats.get("lag_ms")),
                     "event input": _fmt((stats.get("event_input") or {}).get("representation"))})
    for key in ("windows_emitted", "windows_skipped", "messages", "events_in", "resets", "size_changes",
                "input_changes", "publishers") + EVENT_DROPS + MESSAGE_DROPS:
        h.values[key] = _fmt(stats.get(key))
    if _fraction(dropped, events_in - dropped) > limits.warn_drop_fraction:
        h.raise_to(WARN, f"{dropped} of {events_in} events dropped in {dt_s:.1f} s ({_causes(stats, before, EVENT_DROPS)})")
    if _fraction(bad, messages) > limits.warn_drop_fraction:
        h.raise_to(WARN, f"{bad} event messages dropped in {dt_s:.1f} s ({_causes(stats, before, MESSAGE_DROPS)})")
    if _fraction(skipped, emitted) > limits.warn_drop_fraction:
        h.raise_to(WARN, f"{skipped} windows skipped in {dt_s:.1f} s (the input outran the stride)")
    outliers = delta(stats, before, "dropped_time_outlier")
    if outliers:  # however few: a clock that glitches is worth a look at the driver
        h.raise_to(WARN, f"{outliers} event(s) with a glitched timestamp dropped in {dt_s:.1f} s")
    lag = stats.get("lag_ms")
    if lag is not None and lag > limits.warn_latency_ms:
        h.raise_to(WARN, f"{lag:.0f} ms behind the newest event (limit {limits.warn_latency_ms:g})")
    if stats.get("checkpoint_error"):
        h.raise_to(ERROR, f"checkpoint: {stats['checkpoint_error']}")
    _callback_errors(h, stats, before)
    _silence(h, stats, limits, "events")
    return h


def _callback_errors(h: Health, stats: dict, before: dict | None) -> None:
    """Exceptions in a callback since the last report: ERROR (an input the node cannot handle)."""
    h.values["callback_errors"] = _fmt(stats.get("callback_errors"))
    n = delta(stats, before, "callback_errors")
    if n:
        h.raise_to(ERROR, f"{n} message(s) failed in a callback (last: {stats.get('last_callback_error')})")


def segmentation_health(stats: dict, before: dict | None, dt_s: float, limits: HealthLimits) -> Health:
    """Windows -> labels: a loaded checkpoint, windows dropped by cause, latency."""
    h = Health()
    windows_in, published = delta(stats, before, "windows_in"), delta(stats, before, "published")
    lost = delta(stats, before, WINDOW_DROPS)
    rate = 1.0 / dt_s if dt_s > 0 else 0.0
    latency, inference = stats.get("latency_ms") or {}, stats.get("inference_ms") or {}
    h.values.update({"windows in/s": _fmt(windows_in * rate), "labels/s": _fmt(published * rate),
                     "inference p50 (ms)": _fmt(inference.get("p50")), "inference p95 (ms)": _fmt(inference.get("p95")),
                     "latency p50 (ms)": _fmt(latency.get("p50")), "latency p95 (ms)": _fmt(latency.get("p95")),
                     "age p50 (ms)": _fmt((stats.get("age_ms") or {}).get("p50")),
                     "checkpoint": "loaded" if not stats.get("student_error") else "not loaded",
                     "backend": _fmt(stats.get("backend")), "device": _fmt(stats.get("device"))})
    if stats.get("backend_timings"):  # auto: every backend it timed (ms) or refused (argmax agreement)
        h.values["backend timings"] = json.dumps(stats["backend_timings"], sort_keys=True)
    for key in ("windows_in", "published", "overlays", "frames_in", "bad_frames", "publishers") + WINDOW_DROPS:
        h.values[key] = _fmt(stats.get(key))
    if "teacher_error" in stats:
        h.values["teacher"] = "off" if stats.get("teacher_enabled") is False else (
            "loaded" if not stats.get("teacher_error") else "not loaded")
        h.values["teacher_published"] = _fmt(stats.get("teacher_published"))
    if stats.get("student_error"):
        h.raise_to(ERROR, f"no student network: {stats['student_error']}")
    elif not published and delta(stats, before, ("rejected", "rejected_input", "rejected_nonfinite")):
        # stale windows alone only mean a slow network (WARN below); rejected ones get no labels ever
        h.raise_to(ERROR, f"no labels in {dt_s:.1f} s: windows rejected ({_causes(stats, before, WINDOW_DROPS)})")
    elif _fraction(lost, published) > limits.warn_drop_fraction:
        h.raise_to(WARN, f"{lost} of {lost + published} windows dropped in {dt_s:.1f} s "
                         f"({_causes(stats, before, WINDOW_DROPS)})")
    if stats.get("teacher_error") and stats.get("teacher_enabled", True):
        h.raise_to(WARN, f"no teacher network: {stats['teacher_error']}")
    _callback_errors(h, stats, before)
    p95 = latency.get("p95")
    if p95 is not None and p95 > limits.warn_latency_ms:
        h.raise_to(WARN, f"latency p95 {p95:.0f} ms (limit {limits.warn_latency_ms:g})")
    # no silence rule on the embedding topic: an accumulator without events sends nothing, and
    # reports that itself (in process, its health is merged into this one)
    return h


def _causes(stats: dict, before: dict | None, keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k} {n}" for k in keys if (n := delta(stats, before, k)))
