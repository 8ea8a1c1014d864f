"""Event representations: a batch of `Events` -> float32 (C, H, W) network input.

    embed(events, name, *, height, width, **params) -> np.ndarray      # float32 (C, H, W), C-contiguous
    embed_and_count(events, name, *, height, width, **params) -> (np.ndarray, int)  # + events ignored
    representation_channels(name, **params) -> int
    REPRESENTATIONS: dict[str, Representation]                          # the registry, by name
    warmup() -> None                                                    # compile (or load cached) kernels

Pixel (x, y) goes to ``out[c, y, x]``. Events outside the sensor (x >= width or y >= height)
are ignored and counted (`embed_and_count`). Polarity: ``p > 0`` is ON (positive), both
1/0 and +1/-1 conventions work. Empty input gives zeros. Timestamps are int64 ns; windows
are half-open, ``t_start <= t < t_end``, everywhere in this package. Kernels are serial
numba (`kernels.py`), one pass over the events, no per-event Python.

Representations (channel order, normalisation):

``count`` (2): raw per-polarity event counts [positive, negative]. No normalisation.

``evdistill_2ch`` (3): the EvDistill authors' released event input. The two per-polarity
    count maps, each divided by its own maximum (a map with no events stays 0), laid out
    as an RGB image [first, second, 0] in [0, 1]. ``first="positive"`` (default) puts ON
    counts in channel 0 (the PNG's R), ``first="negative"`` puts OFF counts there. The
    released PNGs store ``255 * value`` as uint8 and the networks read them back /255;
    ``quantize=True`` reproduces that (round to nearest of ``255 * value``, then /255) so
    a live embedding matches what a network trained on the PNGs saw. The authors' export
    code is not public: rounding to nearest (not truncation) is our reading of it.

``evsegnet_6ch`` (6): Ev-SegNet's DDD17 encoding (Alonso & Murillo, CVPRW'19):
    [count_pos, count_neg, mean_t_pos, std_t_pos, mean_t_neg, std_t_neg], the channel order
    of the authors' released (200, 346, 6) .npy files as their show_events.py reads them
    (github.com/Shathe/Ev-SegNet: channel 0 -> ``_events_on``, 1 -> ``_events_off``,
    2 -> ``_on_mean``, 3 -> ``_on_std``, 4 -> ``_off_mean``, 5 -> ``_off_std``).
    Timestamps are normalised to the window, ``(t - t_start) / (t_end - t_start)`` (in
    [0, 1)); std is the sample std (n - 1), 0 for pixels with one event, and all three are 0
    at pixels without events. Counts are raw. Params ``t_start``/``t_end`` (ns, default:
    first in-bounds event, last one + 1 ns); sliding windows pass their own bounds.
    Value ranges differ from the released files: their loader (utils/Loader.py) feeds the
    .npy values to the network unchanged (train_eager.py: ``preprocess_mode=None``), and
    those values are counts and means in [-1, 1] with -1 = no event (show_events.py shows
    them as ``(v + 1) * 127``; the loader's event augmentation empties a pixel as counts -1,
    means and stds 0, and invents counts/means in [-1, 1), stds in [0, 1)) and stds in
    [0, 1] (shown as ``v * 255``). They come from the ``dvs_frame`` of the authors' modified
    DDD17 export, which is not in the repository, so the exact count and time scaling is not
    known; this representation does not imitate it, and a network trained on the released
    files needs that mapping before it can read this embedding.

``voxel_grid`` (bins, or 2*bins): E2VID voxel grid. Time is scaled to [0, bins-1] between
    the first and last in-bounds event (by position: events are time-sorted in this package;
    out-of-order times are clamped into the grid; all at one time -> bin 0), each event splits its polarity (+1/-1)
    between the two nearest bins, bilinear in time. ``bins`` (default 5).
    ``separate_polarity=True``: 2*bins channels, ON events' weights in bins 0..B-1 and OFF
    in B..2B-1, both non-negative. ``normalize=True``: E2VID's normalisation, non-zero
    cells shifted by their mean and divided by their std (zeros stay 0; where E2VID would
    divide by a zero std, e.g. a single non-zero cell, the cells are only centred).

``time_surface`` (2): per polarity [positive, negative] exponential decay of the latest
    event at each pixel, ``exp(-(t_ref - t_last) / tau)``, 0 where no event.
    ``tau_ms`` (default 50), ``t_ref`` (ns, default: latest in-bounds event time; windows
    pass their end; a t_ref before an event is an error). Values are in (0, 1] when t_ref >= every event time.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import kernels
from .types import Events

ArrayAndSkipped = tuple[np.ndarray, int]


@dataclass(frozen=True)
class Representation:
    """One registered representation.

    fn(events, height, width, **params) -> (embedding, ignored); `channels(**params)` -> C;
    `defaults` names every accepted parameter; `incremental` is the accumulator kind a
    sliding window may keep up to date instead of recomputing ("counts", "moments" or None)
    and `finish(acc, params)` turns that accumulator (`.n`, `.s1`, `.s2`, `.origin`, `.h`,
    `.w`) into the embedding; `bounds_params(t_start, t_end)` maps window bounds to
    parameters the window passes; `polarity(embedding, params) -> (on, off)` gives the
    activity maps >= 0 pictures draw (render.event_image), so nothing outside this registry
    branches on a representation's name.
    """

    name: str
    fn: Callable[..., ArrayAndSkipped]
    channels: Callable[..., int]
    defaults: dict[str, Any]
    summary: str
    incremental: str | None = None
    bounds_params: Callable[[int, int], dict[str, Any]] = field(default=lambda t0, t1: {})
    finish: Callable[[Any, dict[str, Any]], np.ndarray] | None = None
    polarity: Callable[[np.ndarray, dict[str, Any]], tuple[np.ndarray, np.ndarray]] = field(
        default=lambda e, params: _net_polarity(e))


# ---------------------------------------------------------------------------------------
# finalisers shared by one-shot embedding and incremental windows (one place per formula)


def counts_to_count(counts: np.ndarray) -> np.ndarray:
    """(2, H, W) counts of any dtype -> float32 `count` embedding."""
    return np.ascontiguousarray(counts, dtype=np.float32)


def counts_to_evdistill(counts: np.ndarray, *, first: str = "positive", quantize: bool = False) -> np.ndarray:
    """(2, H, W) counts [positive, negative] -> float32 (3, H, W) `evdistill_2ch` image."""
    if first not in ("positive", "negative"):
        raise ValueError(f"evdistill_2ch: first must be 'positive' or 'negative', not {first!r}")
    order = (0, 1) if first == "positive" else (1, 0)
    out = np.zeros((3,) + counts.shape[1:], np.float32)
    for dst, src in enumerate(order):
        c = counts[src]
        m = c.max() if c.size else 0
        if m > 0:
            v = c.astype(np.float64) / float(m)
            if quantize:
                v = np.rint(v * 255.0) / 255.0
            out[dst] = v
    return out


def moments_to_evsegnet(n: np.ndarray, s1: np.ndarray, s2: np.ndarray, *, offset: float, duration: int,
                        height: int, width: int) -> np.ndarray:
    """Per-pixel count and sums of (t - origin), (t - origin)^2 -> float32 (6, H, W) `evsegnet_6ch`."""
    if duration <= 0:
        if not n.any():  # an empty window may have empty bounds
            return np.zeros((6, height, width), np.float32)
        raise ValueError(f"evsegnet_6ch: window duration must be > 0 ns, got {duration}")
    out = np.empty(6 * height * width, np.float32)
    kernels.evsegnet_finalize(n.ravel(), s1.ravel(), s2.ravel(), float(offset), int(duration), height * width, out)
    return out.reshape(6, height, width)


def latest_to_time_surface(last: np.ndarray, *, t_ref: int, tau_ms: float) -> np.ndarray:
    """(2, H, W) latest timestamps (`kernels.NO_EVENT` = none) -> float32 `time_surface`."""
    if not tau_ms > 0:
        raise ValueError(f"time_surface: tau_ms must be > 0, got {tau_ms}")
    out = np.empty(last.size, np.float32)
    kernels.time_surface_finalize(last.ravel(), int(t_ref), float(tau_ms) * 1e6, out)
    return out.reshape(last.shape)


def _net_polarity(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed channels (voxel grids): the net polarity, split into its positive and negative parts."""
    signed = e.sum(axis=0)
    return np.maximum(signed, 0), np.maximum(-signed, 0)


def _first_two(e: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """[ON, OFF, ...] layouts (count, time_surface, evsegnet_6ch)."""
    return np.abs(e[0]), np.abs(e[1])


def _evdistill_polarity(e: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    on, off = np.abs(e[0]), np.abs(e[1])
    return (off, on) if params.get("first") == "negative" else (on, off)


def _voxel_polarity(e: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    if params.get("separate_polarity"):
        half = e.shape[0] // 2
        return np.abs(e[:half]).sum(0), np.abs(e[half:]).sum(0)
    return _net_polarity(e)


def normalize_voxel(grid: np.ndarray) -> None:
    """E2VID normalisation in place: non-zero cells -> (v - mean) / std over non-zero cells."""
    nz = grid != 0
    k = int(nz.sum())
    if k == 0:
        return
    vals = grid[nz].astype(np.float64)
    mean = vals.mean()
    std = np.sqrt(max((vals * vals).mean() - mean * mean, 0.0))
    grid[nz] = (vals - mean) / std if std > 0 else vals - mean


# ---------------------------------------------------------------------------------------
# accumulators (also used by windows.py)


def count_events(events: Events, height: int, width: int, out: np.ndarray | None = None,
                 sign: int = 1) -> ArrayAndSkipped:
    """Add (sign=+1) or remove (-1) events into (2, H, W) counts [positive, negative]."""
    if out is None:
        out = np.zeros((2, height, width), np.float32)
    skipped = kernels.add_counts(events.x, events.y, events.p, height, width, out.reshape(-1), out.dtype.type(sign))
    return out, int(skipped)


def moment_events(events: Events, height: int, width: int, origin: int, n: np.ndarray, s1: np.ndarray,
                  s2: np.ndarray, sign: int = 1) -> int:
    """Add/remove events into the per-pixel moments of (t - origin); returns events ignored."""
    return int(kernels.add_moments(events.x, events.y, events.t, events.p, height, width, int(origin),
                                   n.dtype.type(sign), n.reshape(-1), s1.reshape(-1), s2.reshape(-1)))


# ---------------------------------------------------------------------------------------
# representation functions


def _check_size(height: int, width: int) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"sensor size must be positive, got height={height} width={width}")


def _count(events: Events, height: int, width: int) -> ArrayAndSkipped:
    return count_events(events, height, width)


def _evdistill_2ch(events: Events, height: int, width: int, first: str = "positive",
                   quantize: bool = False) -> ArrayAndSkipped:
    counts = np.zeros((2, height, width), np.int32)
    _, skipped = count_events(events, height, width, counts)
    return counts_to_evdistill(counts, first=first, quantize=quantize), skipped


def time_range(events: Events, height: int, width: int) -> tuple[int, int] | None:
    """(first, last) time of the in-bounds events (by position: events are time-sorted), or None."""
    found, t0, t1 = kernels.in_bounds_time_range(events.x, events.y, events.t, height, width)
    return (int(t0), int(t1)) if found else None


def _default_bounds(events: Events, height: int, width: int, t_start: int | None,
                    t_end: int | None) -> tuple[int, int]:
    rng = time_range(events, height, width) if t_start is None or t_end is None else None
    if t_start is None:
        t_start = rng[0] if rng else 0
    if t_end is None:
        t_end = rng[1] + 1 if rng else int(t_start) + 1
    return int(t_start), int(t_end)


def _evsegnet_6ch(events: Events, height: int, width: int, t_start: int | None = None,
                  t_end: int | None = None) -> ArrayAndSkipped:
    t_start, t_end = _default_bounds(events, height, width, t_start, t_end)
    n = np.zeros((2, height, width), np.int32)
    s1 = np.zeros((2, height, width), np.float64)
    s2 = np.zeros((2, height, width), np.float64)
    skipped = moment_events(events, height, width, t_start, n, s1, s2)
    return moments_to_evsegnet(n, s1, s2, offset=0.0, duration=t_end - t_start, height=height, width=width), skipped


_scratch = threading.local()


def _voxel_accumulator(shape: tuple[int, int]) -> np.ndarray:
    # one float64 accumulator per thread, reused (it keeps the largest size asked for): with a
    # fresh 3.6 MB array per window (5 bins at 346x260) SlidingWindow.push on a 12 Mev/s
    # stream took 3.9-4.1 instead of 2.7-3.1 ms per window (bench/bench_events.py); the
    # scatter kernel ran slower on the new memory, likely pages fresh from the OS
    acc = getattr(_scratch, "voxel", None)
    if acc is None or acc.size < shape[0] * shape[1]:
        acc = _scratch.voxel = np.empty(shape[0] * shape[1], np.float64)
    return acc[: shape[0] * shape[1]].reshape(shape)


def _voxel_grid(events: Events, height: int, width: int, bins: int = 5, separate_polarity: bool = False,
                normalize: bool = False) -> ArrayAndSkipped:
    bins = int(bins)
    if bins < 1:
        raise ValueError(f"voxel_grid: bins must be >= 1, got {bins}")
    c = 2 * bins if separate_polarity else bins
    out = np.zeros((c, height, width), np.float32)
    skipped = 0
    rng = time_range(events, height, width)
    if rng is not None:
        span = rng[1] - rng[0]
        scale = float((bins - 1) / span) if span > 0 else 0.0  # E2VID: a zero span puts all in bin 0
        # weights by polarity [OFF, ON]; separate polarities: one pass per half of the grid
        passes = [(np.array([0.0, 1.0]), slice(0, bins)), (np.array([1.0, 0.0]), slice(bins, c))] \
            if separate_polarity else [(np.array([-1.0, 1.0]), slice(0, c))]
        ts_end = float(span) * scale  # the last event's scaled time, as the kernels compute it
        time_sorted = True  # until add_voxel_binned finds otherwise; then the general kernel only
        acc = _voxel_accumulator((c, height * width))
        for start in range(0, len(events), kernels.VOXEL_MAX_EVENTS):
            chunk = events[start:start + kernels.VOXEL_MAX_EVENTS]
            args = (chunk.x, chunk.y, chunk.t, chunk.p, height, width, bins, rng[0], scale)
            acc.fill(0.0)
            for weight, channels in passes:
                part = acc[channels].reshape(-1)
                n_skipped = kernels.add_voxel_binned(*args, ts_end, weight, part) if time_sorted else -1
                if n_skipped < 0:
                    time_sorted = False
                    part.fill(0.0)  # the fast kernel's partial sums
                    n_skipped = kernels.add_voxel(*args, weight, part)
                skipped += n_skipped
            kernels.voxel_finalize(acc, bins, out.reshape(c, -1))
        if separate_polarity:
            skipped //= 2  # each pass counted them
    else:
        skipped = len(events)
    if normalize:
        normalize_voxel(out)
    return out, int(skipped)


def _time_surface(events: Events, height: int, width: int, tau_ms: float = 50.0,
                  t_ref: int | None = None) -> ArrayAndSkipped:
    last = np.full((2, height, width), kernels.NO_EVENT, np.int64)
    skipped = kernels.latest_times(events.x, events.y, events.t, events.p, height, width, last.reshape(-1))
    latest = int(last.max())
    if latest == kernels.NO_EVENT:
        t_ref = 0 if t_ref is None else t_ref
    elif t_ref is None:
        t_ref = latest
    elif latest > int(t_ref):
        raise ValueError(f"time_surface: t_ref={t_ref} ns is before the latest event ({latest} ns)")
    return latest_to_time_surface(last, t_ref=int(t_ref), tau_ms=tau_ms), int(skipped)


REPRESENTATIONS: dict[str, Representation] = {
    r.name: r
    for r in (
        Representation("count", _count, lambda: 2, {}, "raw counts [positive, negative]", incremental="counts",
                       finish=lambda acc, p: counts_to_count(acc.n), polarity=_first_two),
        Representation("evdistill_2ch", _evdistill_2ch, lambda first="positive", quantize=False: 3,
                       {"first": "positive", "quantize": False},
                       "EvDistill PNG input: per-polarity counts / own max as [first, second, 0]",
                       incremental="counts", finish=lambda acc, p: counts_to_evdistill(acc.n, **p),
                       polarity=_evdistill_polarity),
        Representation("evsegnet_6ch", _evsegnet_6ch, lambda t_start=None, t_end=None: 6,
                       {"t_start": None, "t_end": None},
                       "Ev-SegNet: [n+, n-, mean t+, std t+, mean t-, std t-], t normalised to the window",
                       incremental="moments", bounds_params=lambda t0, t1: {"t_start": t0, "t_end": t1},
                       finish=lambda acc, p: moments_to_evsegnet(
                           acc.n, acc.s1, acc.s2, offset=int(p["t_start"]) - acc.origin,
                           duration=int(p["t_end"]) - int(p["t_start"]), height=acc.h, width=acc.w),
                       polarity=_first_two),
        Representation("voxel_grid", _voxel_grid,
                       lambda bins=5, separate_polarity=False, normalize=False: int(bins) * (2 if separate_polarity else 1),
                       {"bins": 5, "separate_polarity": False, "normalize": False},
                       "E2VID voxel grid, bilinear in time between first and last event", polarity=_voxel_polarity),
        Representation("time_surface", _time_surface, lambda tau_ms=50.0, t_ref=None: 2,
                       {"tau_ms": 50.0, "t_ref": None},
                       "exp(-(t_ref - t_last)/tau) per polarity [positive, negative]",
                       bounds_params=lambda t0, t1: {"t_ref": t1}, polarity=_first_two),
    )
}


def get_representation(name: str, params: dict[str, Any] | None = None) -> Representation:
    """The registry entry for `name`; checks that every key of `params` is a parameter of it."""
    try:
        rep = REPRESENTATIONS[name]
    except KeyError:
        raise ValueError(f"unknown representation {name!r}; known: {', '.join(sorted(REPRESENTATIONS))}") from None
    unknown = set(params or ()) - set(rep.defaults)
    if unknown:
        allowed = ", ".join(sorted(rep.defaults)) or "none"
        raise ValueError(f"representation {name!r} has no parameter(s) {', '.join(sorted(unknown))} (allowed: {allowed})")
    return rep


def representation_channels(name: str, **params: Any) -> int:
    """Number of channels C of `embed(..., name, **params)`."""
    return int(get_representation(name, params).channels(**params))


def embed_and_count(events: Events, name: str, *, height: int, width: int, **params: Any) -> ArrayAndSkipped:
    """`embed`, also returning how many events were ignored for being outside the sensor."""
    if not isinstance(events, Events):
        raise TypeError(f"embed expects an Events instance, got {type(events).__name__}")
    rep = get_representation(name, params)
    _check_size(height, width)
    out, skipped = rep.fn(events, int(height), int(width), **params)
    return np.ascontiguousarray(out, dtype=np.float32), skipped


def embed(events: Events, name: str, *, height: int, width: int, **params: Any) -> np.ndarray:
    """Events -> float32 (C, H, W) C-contiguous embedding `name` (see the module docstring)."""
    return embed_and_count(events, name, height=height, width=width, **params)[0]


def warmup() -> None:
    """Compile (or load from numba's on-disk cache) every kernel for the dtypes used here.

    A node calls this before subscribing: the first load takes ~0.3 s, long enough for a
    short subscriber queue to overflow."""
    ev = Events(np.array([0, 3], np.uint16), np.array([0, 9], np.uint16), np.array([0, 1000], np.int64),
                np.array([1, 0], np.int8))
    for name in REPRESENTATIONS:
        embed(ev, name, height=2, width=2)
    embed(ev, "voxel_grid", height=2, width=2, separate_polarity=True)
    unsorted = Events(np.array([0, 1, 0], np.uint16), np.array([0, 1, 1], np.uint16),
                      np.array([0, 1000, 10], np.int64), np.array([1, 0, 1], np.int8))
    embed(unsorted, "voxel_grid", height=2, width=2)  # the general voxel kernel
    count_events(ev, 2, 2, np.zeros((2, 2, 2), np.int32), sign=-1)
    n, s1, s2 = np.zeros((2, 2, 2), np.int32), np.zeros((2, 2, 2)), np.zeros((2, 2, 2))
    moment_events(ev, 2, 2, 0, n, s1, s2, sign=-1)
    kernels.in_bounds_time_range(ev.x, ev.y, ev.t, 2, 2)
    keep = np.empty(2, np.bool_)
    kernels.screen_events(ev.x, ev.y, ev.t, 2, 2, False, 0, -1, keep)
    kernels.screen_events(ev.x, ev.y, ev.t, 2, 2, True, 0, 10, keep)
    # the wire decoders' kernels: evdistill_ros.wire.warmup
