"""Packing an event stream into `dvs_msgs/EventArray` messages while converting datasets.

    EventPacker(writer, topic, height, width, *, period_ns=33_333_333, max_events=None,
                on_backwards="error", before_message=None)
        .add(events)   feed time-sorted chunks of any size; complete messages are written
        .flush()       write what is left (call once at the end)
        .messages, .events, .dropped   counters

Messages cover fixed event-time slots ``[k * period_ns, (k + 1) * period_ns)`` (30 Hz by
default, like the rpg_dvs_ros driver's streaming), split further into at most `max_events`
events each; with ``period_ns=None`` every message holds exactly `max_events` (the last
fewer). Each message's header stamp and bag time is its last event's time (as the DAVIS
driver does). `before_message(stamp_ns)` runs before each message is written so converters
can interleave frames in time order. Events older than the last one written are an error
(``on_backwards="error"``) or dropped and counted (``"drop"``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..events.types import Events


class EventPacker:
    def __init__(
        self,
        writer,
        topic: str,
        height: int,
        width: int,
        *,
        period_ns: int | None = 33_333_333,
        max_events: int | None = None,
        on_backwards: str = "error",
        before_message: Callable[[int], None] | None = None,
    ) -> None:
        if period_ns is None and not max_events:
            raise ValueError("EventPacker needs period_ns or max_events")
        if period_ns is not None and period_ns <= 0:
            raise ValueError(f"EventPacker: period_ns must be positive, got {period_ns}")
        if max_events is not None and max_events <= 0:
            raise ValueError(f"EventPacker: max_events must be positive, got {max_events}")
        if on_backwards not in ("error", "drop"):
            raise ValueError(f"EventPacker: on_backwards must be 'error' or 'drop', got {on_backwards!r}")
        self.writer, self.topic, self.height, self.width = writer, topic, int(height), int(width)
        self.period_ns, self.max_events = period_ns, max_events
        self.on_backwards, self.before_message = on_backwards, before_message
        self._carry = Events.empty()
        self._last_t: int | None = None
        self.messages = 0
        self.events = 0
        self.dropped = 0

    def _write(self, ev: Events) -> None:
        stamp = int(ev.t[-1])
        if self.before_message is not None:
            self.before_message(stamp)
        self.writer.write_events(self.topic, ev, self.height, self.width, stamp_ns=stamp)
        self.messages += 1
        self.events += len(ev)

    def _write_split(self, ev: Events) -> None:
        step = self.max_events or len(ev)
        for i in range(0, len(ev), step):
            self._write(ev[i : i + step])

    def add(self, events: Events) -> None:
        if not len(events):
            return
        t = events.t
        back = np.flatnonzero(t[1:] < t[:-1])
        first_ok = self._last_t is None or t[0] >= self._last_t
        if len(back) or not first_ok:
            if self.on_backwards == "error":
                where = int(back[0]) + 1 if len(back) else 0
                prev = int(t[where - 1]) if where else self._last_t
                raise ValueError(f"event time goes backwards: {int(t[where])} ns after {prev} ns (event stream must be sorted)")
            # keep the running maximum: drop every event older than one already seen
            start = self._last_t if self._last_t is not None else int(t[0])
            keep = t >= np.maximum.accumulate(np.maximum(t, start))
            self.dropped += int(len(t) - np.count_nonzero(keep))
            events = events[keep]
            if not len(events):
                return
        self._last_t = int(events.t[-1])
        ev = Events.concatenate([self._carry, events])
        if self.period_ns is None:
            n_full = (len(ev) // self.max_events) * self.max_events
            if n_full:
                self._write_split(ev[:n_full])
            self._carry = ev[n_full:]
            return
        slot = ev.t // self.period_ns
        # the last slot may still receive events: keep it as carry
        open_from = int(np.searchsorted(slot, slot[-1], side="left"))
        if open_from:
            done = ev[:open_from]
            cuts = np.flatnonzero(np.diff(slot[:open_from])) + 1
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, open_from]):
                self._write_split(done[int(a) : int(b)])
        self._carry = ev[open_from:]
        if self.max_events and len(self._carry) > self.max_events:
            n_full = (len(self._carry) // self.max_events) * self.max_events
            # a full message of the open slot can go now; the rest waits
            n_full = n_full if n_full < len(self._carry) else n_full - self.max_events
            if n_full:
                self._write_split(self._carry[:n_full])
                self._carry = self._carry[n_full:]

    def flush(self) -> None:
        if len(self._carry):
            self._write_split(self._carry)
            self._carry = Events.empty()
