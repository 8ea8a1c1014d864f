"""Sliding windows over an event stream that arrives in arbitrary chunks.

    sw = SlidingWindow("voxel_grid", height=260, width=346, window_ns=50_000_000, stride_ns=10_000_000, bins=5)
    for msg in messages:
        for w in sw.push(msg.events):        # list[Window], oldest first
            publish(w.embedding, w.t_end)    # float32 (C, H, W)
    sw.stats.as_dict()                       # counters, see `WindowStats`

    for t_end, emb, n in embeddings_at(chunks, frame_times_ns, "count", height=260, width=346, window_ns=50_000_000):
        ...                                   # one window ending at each APS frame time

Bounds: a window holds the events with ``t_start <= t < t_end`` (half-open, as everywhere
in this package). Windows are driven by event time only, so feeding the same stream in any
chunking gives the same windows and embeddings (bit-identical for every representation but
`evsegnet_6ch`, whose float64 moment sums may round differently when a window is
recomputed instead of updated: equal to ~1e-12 relative).

Window policies (exactly one):

- by time, ``window_ns`` and ``stride_ns`` (default = window_ns): window ends lie on the
  absolute grid ``k * stride_ns`` (ns since the epoch of the timestamps). The first window
  is the first full one, ending at ``floor(t0 / stride) * stride + ceil(window / stride) * stride``
  (t0 = first event). A window ending at ``e`` is emitted as soon as an event with
  ``t >= e`` arrives (or `advance(e)` is called), i.e. when it can no longer change.
- by count, ``window_events`` and ``stride_events`` (default = window_events): after every
  ``stride_events`` accepted events, once ``window_events`` have arrived, a window of the last
  ``window_events`` events; ``t_start`` = its first event time, ``t_end`` = last + 1 ns.

Input handling (counted in `WindowStats`):

- events outside the sensor are dropped (``dropped_out_of_bounds``);
- an event earlier than the latest accepted one is dropped (``dropped_out_of_order``),
  unless it is more than ``reset_threshold_ns`` earlier (default 1 s; None disables): that
  is a looping bag or a restarted driver, so the window state is cleared and restarted
  from that event (``resets``; the next window has ``reset=True``; ``on_reset(old_t, new_t)``
  is called if given). Windows not yet emitted before a reset are dropped.
- a gap in time gives empty windows (zeros), at most ``max_empty_windows`` in a row
  (default 100; None: no cap); further empty windows are skipped up to the next event
  (``windows_skipped``).
- memory is bounded: the buffer holds at most ``max_events`` events (default 5M, ~70 MB);
  a window with more events keeps its newest ``max_events`` (``dropped_overflow``; the
  window has ``truncated=True``).

Representations with per-pixel sums (count, evdistill_2ch: int32 counts; evsegnet_6ch: count,
sum t, sum t^2 in float64) are updated incrementally, adding entering and subtracting
leaving events, when that touches fewer events than recomputing the window; voxel_grid and
time_surface are recomputed from the buffer for each window.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from . import kernels
from .representations import Representation, count_events, get_representation, moment_events
from .types import Events, P_DTYPE, T_DTYPE, X_DTYPE, Y_DTYPE

DEFAULT_MAX_EVENTS = 5_000_000
_REBASE_NS = 1 << 28  # keep t - origin below ~0.27 s so float64 squares stay precise


@dataclass(frozen=True)
class Window:
    """One emitted window: events with ``t_start <= t < t_end`` (ns) and their embedding."""

    t_start: int
    t_end: int
    num_events: int
    embedding: np.ndarray  # float32 (C, H, W), owned by the caller
    index: int  # running number of windows emitted by this SlidingWindow
    reset: bool = False  # first window after a backwards jump reset the stream
    truncated: bool = False  # more than max_events events: only the newest were kept


@dataclass
class WindowStats:
    """Counters of a `SlidingWindow` (or of one `embeddings_at` run)."""

    events_in: int = 0
    events_accepted: int = 0
    dropped_out_of_order: int = 0
    dropped_out_of_bounds: int = 0
    dropped_overflow: int = 0
    resets: int = 0
    windows_emitted: int = 0
    windows_skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Screen:
    """Input filter: bounds, time order, backwards jumps (stateful across chunks)."""

    def __init__(self, height: int, width: int, reset_threshold_ns: int | None, stats: WindowStats):
        self.height, self.width = height, width
        self.reset_ns = -1 if reset_threshold_ns is None else int(reset_threshold_ns)
        self.stats = stats
        self.has_last = False
        self.last_t = 0

    def split(self, events: Events) -> list[tuple[bool, Events]]:
        """[(reset_before, accepted events), ...]: one segment, plus one per backwards jump."""
        self.stats.events_in += len(events)
        out: list[tuple[bool, Events]] = []
        reset = False
        while True:
            keep = np.empty(len(events), np.bool_)
            kept, oob, ooo, r, self.has_last, self.last_t = kernels.screen_events(
                events.x, events.y, events.t, self.height, self.width, self.has_last, self.last_t, self.reset_ns, keep)
            self.stats.dropped_out_of_bounds += int(oob)
            self.stats.dropped_out_of_order += int(ooo)
            self.stats.events_accepted += int(kept)
            head = events if r < 0 else events[:r]
            if kept:
                out.append((reset, head[keep[: len(head)]] if kept < len(head) else head))
            elif reset:
                out.append((reset, Events.empty()))
            if r < 0:
                return out
            self.stats.resets += 1
            self.has_last, reset = False, True
            events = events[r:]


class _WindowBuffer:
    """The current window's events in a bounded array, plus a lazily synced accumulator.

    Events carry sequence numbers; the window is [lo, hi). The accumulator (counts or
    moments) holds the sum over [acc_lo, acc_hi) and is brought to [lo, hi) at `embed` by
    adding/subtracting the difference or recomputing, whichever touches fewer events.
    """

    def __init__(self, rep: Representation, params: dict[str, Any], height: int, width: int, max_events: int,
                 stats: WindowStats, incremental: bool = True):
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        self.rep, self.params, self.h, self.w = rep, params, height, width
        self.max_events, self.stats = int(max_events), stats
        self.capacity = 2 * self.max_events  # arrays grow up to this (13 B per event)
        self._alloc(min(self.capacity, 1 << 16))
        self.base = self.lo = self.hi = 0
        self.truncated = False
        self.kind = rep.incremental if incremental and not _fixed_bounds_conflict(rep, params) else None
        shape = (2, height, width)
        if self.kind == "counts":
            self.n = np.zeros(shape, np.int32)
        elif self.kind == "moments":
            self.n = np.zeros(shape, np.int32)
            self.s1 = np.zeros(shape, np.float64)
            self.s2 = np.zeros(shape, np.float64)
            self.origin = 0
        self.acc_valid = False
        self.acc_lo = self.acc_hi = 0

    def __len__(self) -> int:
        return self.hi - self.lo

    def _alloc(self, n: int) -> None:
        self.x, self.y = np.empty(n, X_DTYPE), np.empty(n, Y_DTYPE)
        self.t, self.p = np.empty(n, T_DTYPE), np.empty(n, P_DTYPE)

    def _slice(self, a: int, b: int) -> Events:
        i, j = a - self.base, b - self.base
        return Events(self.x[i:j], self.y[i:j], self.t[i:j], self.p[i:j])

    def clear(self) -> None:
        self.lo = self.hi
        self.acc_valid = False
        self.truncated = False

    def expire_before(self, t_lo: int) -> None:
        i = int(np.searchsorted(self.t[self.lo - self.base:self.hi - self.base], t_lo, side="left"))
        self.lo += i

    def append_keep_last(self, ev: Events, n: int) -> None:
        """Count policy: append, keeping only the newest `n` events (n <= max_events)."""
        if len(ev) > n:
            ev = ev[len(ev) - n:]
        self.lo = max(self.lo, self.hi + len(ev) - n)
        self.append(ev)

    def append(self, ev: Events) -> None:
        m = len(ev)
        if m == 0:
            return
        if m > self.max_events:  # only the newest max_events can be in the window
            self._drop(m - self.max_events + (self.hi - self.lo))
            ev = ev[m - self.max_events:]
            m = self.max_events
            self.lo = self.hi  # everything older goes too
        if self.hi - self.base + m > len(self.t):
            cap = self.capacity
            keep_from = self.lo
            if self.acc_valid and self.hi - min(self.acc_lo, self.lo) + m <= cap:
                keep_from = min(self.acc_lo, self.lo)
            else:
                self.acc_valid = False
            k, s = self.hi - keep_from, keep_from - self.base
            old = (self.x, self.y, self.t, self.p)
            if 2 * (k + m) > len(self.t) and len(self.t) < cap:
                # grow (x4 the live size: compaction copies stay rare) instead of touching
                # the whole cap up front: a 1 Mev/s stream never needs the 5M-event buffer
                self._alloc(min(cap, max(4 * (k + m), 2 * len(self.t))))
            for a, b in zip((self.x, self.y, self.t, self.p), old):
                a[:k] = b[s:s + k]
            self.base = keep_from
        i = self.hi - self.base
        self.x[i:i + m], self.y[i:i + m], self.t[i:i + m], self.p[i:i + m] = ev.x, ev.y, ev.t, ev.p
        self.hi += m
        over = self.hi - self.lo - self.max_events
        if over > 0:
            self._drop(over)
            self.lo += over

    def _drop(self, n: int) -> None:
        self.stats.dropped_overflow += n
        self.truncated = True

    def first_t(self) -> int:
        return int(self.t[self.lo - self.base])

    def last_t(self) -> int:
        return int(self.t[self.hi - 1 - self.base])

    def _sync(self) -> None:
        lo, hi = self.lo, self.hi
        inc_cost = (abs(lo - self.acc_lo) + abs(hi - self.acc_hi)) if self.acc_valid and self.acc_lo >= self.base else None
        if self.kind == "moments" and hi > lo and self.last_t() - self.origin >= _REBASE_NS:
            inc_cost = None  # rebase the origin: recompute
        rec_cost = (hi - lo) + (self.h * self.w) // 4  # zeroing the maps costs something too
        if inc_cost is not None and inc_cost <= rec_cost:
            self._accumulate(self.acc_lo, min(lo, self.acc_hi), -1)
            self._accumulate(max(self.acc_hi, lo), hi, +1)
        else:
            for a in self._maps():
                a.fill(0)
            if self.kind == "moments":
                self.origin = self.first_t() if hi > lo else 0
            self._accumulate(lo, hi, +1)
        self.acc_lo, self.acc_hi, self.acc_valid = lo, hi, True

    def _maps(self) -> tuple[np.ndarray, ...]:
        return (self.n,) if self.kind == "counts" else (self.n, self.s1, self.s2)

    def _accumulate(self, a: int, b: int, sign: int) -> None:
        if b <= a:
            return
        ev = self._slice(a, b)
        if self.kind == "counts":
            count_events(ev, self.h, self.w, self.n, sign)
        else:
            moment_events(ev, self.h, self.w, self.origin, self.n, self.s1, self.s2, sign)

    def embed(self, t_start: int, t_end: int) -> np.ndarray:
        params = {**self.rep.bounds_params(t_start, t_end), **self.params}
        if self.kind is None:
            out, _ = self.rep.fn(self._slice(self.lo, self.hi), self.h, self.w, **params)
            return out
        self._sync()
        return self.rep.finish(self, params)


def _fixed_bounds_conflict(rep: Representation, params: dict[str, Any]) -> bool:
    """A user-fixed t_start/t_end makes no sense for moving windows: recompute and let fn see it."""
    return any(params.get(k) is not None for k in rep.bounds_params(0, 1))


def _grid_floor(t: int, stride: int) -> int:
    return (t // stride) * stride


class SlidingWindow:
    """Windows of a chunked event stream, embedded with one representation (module docstring).

    SlidingWindow(representation, *, height, width, window_ns=None, stride_ns=None,
                  window_events=None, stride_events=None, max_events=5_000_000,
                  reset_threshold_ns=1_000_000_000, max_empty_windows=100,
                  on_reset=None, incremental=True, **params)
    push(events) -> list[Window]; advance(t_ns) -> list[Window]; reset(); stats; channels.

    incremental=False recomputes every window from its events even where the representation's
    sums could be updated (bench/bench_events.py measures both through the same push path).
    """

    def __init__(self, representation: str, *, height: int, width: int, window_ns: int | None = None,
                 stride_ns: int | None = None, window_events: int | None = None, stride_events: int | None = None,
                 max_events: int = DEFAULT_MAX_EVENTS, reset_threshold_ns: int | None = 1_000_000_000,
                 max_empty_windows: int | None = 100, on_reset: Callable[[int, int], None] | None = None,
                 incremental: bool = True, **params: Any):
        self.rep = get_representation(representation, params)
        if int(height) <= 0 or int(width) <= 0:
            raise ValueError(f"sensor size must be positive, got height={height} width={width}")
        self.height, self.width = int(height), int(width)
        self.params = params
        self.channels = int(self.rep.channels(**params))
        if (window_ns is None) == (window_events is None):
            raise ValueError("SlidingWindow: give exactly one of window_ns (by time) or window_events (by count)")
        self.by_time = window_ns is not None
        if self.by_time:
            if stride_events is not None:
                raise ValueError("SlidingWindow: stride_events goes with window_events, not window_ns")
            self.window, self.stride = int(window_ns), int(stride_ns if stride_ns is not None else window_ns)
        else:
            if stride_ns is not None:
                raise ValueError("SlidingWindow: stride_ns goes with window_ns, not window_events")
            self.window, self.stride = int(window_events), int(stride_events if stride_events is not None else window_events)
            if self.window > max_events:
                raise ValueError(f"SlidingWindow: window_events={self.window} exceeds max_events={max_events}")
        if self.window <= 0 or self.stride <= 0:
            raise ValueError(f"SlidingWindow: window and stride must be > 0, got {self.window} and {self.stride}")
        if max_empty_windows is not None and max_empty_windows < 0:
            raise ValueError(f"SlidingWindow: max_empty_windows must be >= 0 or None, got {max_empty_windows}")
        self.max_empty_windows = max_empty_windows
        self.on_reset = on_reset
        self.stats = WindowStats()
        self._screen = _Screen(self.height, self.width, reset_threshold_ns, self.stats)
        self._buf = _WindowBuffer(self.rep, params, self.height, self.width, max_events, self.stats, incremental)
        self._restart()
        self._index = 0
        self._reset_flag = False

    def _restart(self) -> None:
        self._buf.clear()
        self._next_end: int | None = None  # time policy: end of the next window
        self._seen = 0  # count policy: accepted events since (re)start
        self._empty_run = 0

    def reset(self) -> None:
        """Forget the stream (buffer, pending windows, time order); keep the stats."""
        self._restart()
        self._screen.has_last = False

    # -- input ------------------------------------------------------------------------

    def push(self, events: Events) -> list[Window]:
        """Feed the next chunk; returns the windows it completed, oldest first."""
        out: list[Window] = []
        old_t = self._screen.last_t
        for reset, seg in self._screen.split(events):
            if reset:
                if self.on_reset is not None:
                    self.on_reset(int(old_t), int(seg.t[0]) if len(seg) else int(old_t))
                self._restart()
                self._reset_flag = True
            if len(seg):
                (self._push_time if self.by_time else self._push_count)(seg, out)
                old_t = int(seg.t[-1])
        return out

    def advance(self, t_ns: int) -> list[Window]:
        """Declare that no event before `t_ns` will come (e.g. an empty message's stamp);
        emits the time windows ending at or before it. Later events before t_ns are dropped."""
        if not self.by_time:
            return []
        out: list[Window] = []
        if self._next_end is not None:
            self._emit_due(Events.empty(), int(t_ns), out)
        if not self._screen.has_last or self._screen.last_t < t_ns:
            self._screen.has_last, self._screen.last_t = True, int(t_ns)
        return out

    # -- time policy ------------------------------------------------------------------

    def _push_time(self, ev: Events, out: list[Window]) -> None:
        if self._next_end is None:
            g0 = _grid_floor(int(ev.t[0]), self.stride)
            self._next_end = g0 + -(-self.window // self.stride) * self.stride
        i = self._emit_due(ev, int(ev.t[-1]), out)
        # pending events: all before the next window's end
        buf = self._buf
        buf.expire_before(self._next_end - self.window)
        k = max(i, int(np.searchsorted(ev.t, self._next_end - self.window, side="left")))
        buf.append(ev[k:])

    def _emit_due(self, ev: Events, horizon: int, out: list[Window]) -> int:
        """Emit every window ending at or before `horizon`; returns how many of `ev` were consumed."""
        buf, t = self._buf, ev.t
        i = 0
        while self._next_end <= horizon:
            e = self._next_end
            lo_t = e - self.window
            j = int(np.searchsorted(t, e, side="left"))
            buf.expire_before(lo_t)
            k = max(i, int(np.searchsorted(t, lo_t, side="left")))
            buf.append(ev[k:j])
            i = j
            empty = len(buf) == 0
            if empty and self.max_empty_windows is not None and self._empty_run >= self.max_empty_windows:
                # skip the rest of the gap: every window ending at or before the next event is empty
                t_next = int(t[i]) if i < len(t) else horizon
                skip_to = _grid_floor(t_next, self.stride) + self.stride
                self.stats.windows_skipped += (skip_to - e) // self.stride
                self._next_end = skip_to
                continue
            self._empty_run = self._empty_run + 1 if empty else 0
            out.append(self._make_window(lo_t, e))
            self._next_end = e + self.stride
        return i

    # -- count policy -----------------------------------------------------------------

    def _push_count(self, ev: Events, out: list[Window]) -> None:
        buf, n = self._buf, self.window
        i = 0
        m = len(ev)
        while True:
            # the next window closes after `due` accepted events
            due = n if self._seen < n else self._seen + self.stride - (self._seen - n) % self.stride
            j = i + (due - self._seen)
            if j > m:
                break
            buf.append_keep_last(ev[i:j], n)
            self._seen, i = due, j
            out.append(self._make_window(buf.first_t(), buf.last_t() + 1))
        buf.append_keep_last(ev[i:], n)
        self._seen += m - i

    # -- output -----------------------------------------------------------------------

    def _make_window(self, t_start: int, t_end: int) -> Window:
        buf = self._buf
        emb = buf.embed(t_start, t_end)
        w = Window(int(t_start), int(t_end), len(buf), emb, self._index, self._reset_flag, buf.truncated)
        self._index += 1
        self._reset_flag = False
        buf.truncated = False
        self.stats.windows_emitted += 1
        return w


def embeddings_at(chunks: Iterable[Events], end_times_ns: np.ndarray, name: str, *, height: int, width: int,
                  window_ns: int | None = None, window_events: int | None = None,
                  max_events: int = DEFAULT_MAX_EVENTS, stats: WindowStats | None = None,
                  **params: Any) -> Iterator[tuple[int, np.ndarray, int]]:
    """One window ending at each of `end_times_ns` (non-decreasing), streaming over `chunks`.

    Yields ``(t_end, embedding, num_events)`` in order. The window is the events with
    ``t_end - window_ns <= t < t_end`` (`window_ns`), or the last `window_events` events with
    ``t < t_end``. Chunks are read lazily, memory stays bounded by one chunk plus
    `max_events`. Out-of-bounds and out-of-order events are dropped and counted in `stats`
    (pass a `WindowStats` to read them); a backwards jump never resets here.
    """
    rep = get_representation(name, params)
    if (window_ns is None) == (window_events is None):
        raise ValueError("embeddings_at: give exactly one of window_ns or window_events")
    width_ = int(window_ns if window_ns is not None else window_events)
    if width_ <= 0:
        raise ValueError(f"embeddings_at: window must be > 0, got {width_}")
    if window_events is not None and window_events > max_events:
        raise ValueError(f"embeddings_at: window_events={window_events} exceeds max_events={max_events}")
    ends = np.asarray(end_times_ns, dtype=np.int64).ravel()
    if len(ends) > 1 and np.any(np.diff(ends) < 0):
        raise ValueError("embeddings_at: end_times_ns must be non-decreasing")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"sensor size must be positive, got height={height} width={width}")
    height, width = int(height), int(width)
    stats = stats if stats is not None else WindowStats()
    screen = _Screen(height, width, None, stats)
    buf = _WindowBuffer(rep, params, height, width, max_events, stats)
    it = iter(chunks)
    pending = Events.empty()
    exhausted = False
    for e in ends:
        e = int(e)
        lo_t = e - width_ if window_ns is not None else None
        if lo_t is not None:
            buf.expire_before(lo_t)
        while True:
            j = int(np.searchsorted(pending.t, e, side="left"))
            if lo_t is not None:
                k = int(np.searchsorted(pending.t[:j], lo_t, side="left"))
                buf.append(pending[k:j])
            else:
                buf.append_keep_last(pending[:j], width_)
            pending = pending[j:]
            if len(pending) or exhausted:
                break
            try:
                chunk = next(it)
            except StopIteration:
                exhausted = True
                break
            if not isinstance(chunk, Events):
                raise TypeError(f"embeddings_at: chunks must be Events, got {type(chunk).__name__}")
            segs = screen.split(chunk)
            pending = segs[0][1] if segs else Events.empty()
        t_start = lo_t if lo_t is not None else (buf.first_t() if len(buf) else e)
        emb = buf.embed(t_start, e)
        stats.windows_emitted += 1
        yield e, emb, len(buf)
