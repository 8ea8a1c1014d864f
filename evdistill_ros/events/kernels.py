"""numba kernels behind the event representations and sliding windows.

All kernels are serial (`njit(cache=True)`, no `parallel`), take the `Events` arrays as they
are stored (x, y uint16; t int64 ns; p int8 with p > 0 = ON) and write into flat,
C-contiguous output buffers laid out as (C, H, W): cell ``c * H * W + y * W + x``.
Events with ``x >= width`` or ``y >= height`` are skipped; each accumulating kernel returns
how many it skipped, so callers can count them. Nothing here allocates per event.

Kernels (see `representations` for what the channels mean):

- `add_counts(x, y, p, height, width, out, sign)`: out[0] += sign per ON event, out[1] per OFF.
  `out` may be int32 (exact, incremental windows) or float32 (one-shot embedding).
- `add_moments(x, y, t, p, height, width, origin, sign, n, s1, s2)`: per (polarity, pixel)
  event count and the sums of ``d = t - origin`` and ``d**2`` (float64), channel 0 = ON,
  1 = OFF.
- `add_voxel_binned(x, y, t, p, height, width, bins, t0, scale, ts_end, weight, acc)` (fast,
  time-sorted input; returns -1 when it is not) or `add_voxel(x, y, t, p, height, width, bins,
  t0, scale, weight, acc)` (any order), then `voxel_finalize(acc, bins, out)` (adds into
  out): E2VID bilinear-in-time voxel grid (float64 packed sums, at most VOXEL_MAX_EVENTS
  events per call).
- `latest_times(x, y, t, p, height, width, last)`: per (polarity, pixel) latest timestamp,
  channel 0 = ON, 1 = OFF; `last` must be pre-filled with `NO_EVENT`.
- `evsegnet_finalize(...)`, `time_surface_finalize(...)`: per-cell post-processing.
- `screen_events(...)`: the sliding window's input filter (bounds, order, backwards jumps).
- `unpack_event_records(records, height, width, x, y, t, p)`: dvs_msgs 13-byte wire records
  -> the `Events` arrays in one pass; returns how many fall inside the sensor.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

NO_EVENT = np.iinfo(np.int64).min  # sentinel of `latest_times` for "no event at this cell"


@njit(cache=True, nogil=True)
def add_counts(x, y, p, height, width, out, sign):  # pragma: no cover - compiled
    # unsigned indices: numba then skips negative-index wraparound (~30% faster scatter)
    hw, uw, uh = np.uint64(height * width), np.uint64(width), np.uint64(height)
    skipped = 0
    for i in range(x.shape[0]):
        xi = np.uint64(x[i])
        yi = np.uint64(y[i])
        if xi >= uw or yi >= uh:
            skipped += 1
            continue
        idx = yi * uw + xi
        if p[i] <= 0:
            idx += hw
        out[idx] += sign
    return skipped


@njit(cache=True, nogil=True)
def add_moments(x, y, t, p, height, width, origin, sign, n, s1, s2):  # pragma: no cover
    hw, uw, uh = np.uint64(height * width), np.uint64(width), np.uint64(height)
    skipped = 0
    for i in range(x.shape[0]):
        xi = np.uint64(x[i])
        yi = np.uint64(y[i])
        if xi >= uw or yi >= uh:
            skipped += 1
            continue
        idx = yi * uw + xi
        if p[i] <= 0:
            idx += hw
        d = np.float64(t[i] - origin)
        n[idx] += sign
        s1[idx] += sign * d
        s2[idx] += sign * d * d
    return skipped


# `add_voxel` packs both bilinear weights of an event into ONE float64 per (bin, pixel):
# acc += v * (VOXEL_PACK + frac), so acc = VOXEL_PACK * sum(v) + sum(v * frac), and the
# integer part is recovered by rounding while |sum(v * frac)| < VOXEL_PACK / 2, which holds
# for any call with at most VOXEL_MAX_EVENTS events (callers chunk longer inputs). Each
# addition rounds at |acc| * 2**-53 ~ |sum(v)| * 2**-27: finer than the float32 accumulation
# this replaced (2**-24). One scattered read-modify-write per event instead of two: the
# scatter, not the arithmetic, bounds this kernel (~1.4x faster on 10M events).
VOXEL_PACK = float(2**26)
VOXEL_MAX_EVENTS = 2**25


@njit(cache=True, nogil=True)
def add_voxel(x, y, t, p, height, width, bins, t0, scale, weight, acc):  # pragma: no cover
    # scale = (bins - 1) / (t1 - t0), or 0 for a zero span; weight[on] = the event's value by
    # polarity, a lookup rather than `1.0 if p > 0 else -1.0`, which LLVM turns into a branch
    # that random polarities mispredict half the time. Keep this loop this plain: a
    # conditional or one more lookup in it cost up to 1.4x (bench/bench_events.py).
    hw, uw, uh = np.uint64(height * width), np.uint64(width), np.uint64(height)
    last = np.float64(bins - 1)
    skipped = 0
    for i in range(x.shape[0]):
        xi = np.uint64(x[i])
        yi = np.uint64(y[i])
        if xi >= uw or yi >= uh:
            skipped += 1
            continue
        # clamp so unsorted input can never index outside the grid
        ts = min(max(np.float64(t[i] - t0) * scale, 0.0), last)
        bi = np.int64(ts)  # signed conversion: a single instruction, unlike float -> uint64
        acc[np.uint64(bi) * hw + yi * uw + xi] += weight[np.uint64(p[i] > 0)] * (VOXEL_PACK + (ts - np.float64(bi)))
    return skipped


@njit(cache=True, nogil=True)
def voxel_bin_starts(t, t0, scale, bins):  # pragma: no cover - compiled
    # starts[b] = first index with (t - t0) * scale >= b, by bisection with the kernels' own
    # arithmetic, so that on sorted input each run starts[b]:starts[b + 1] is exactly bin b
    n = t.shape[0]
    starts = np.empty(bins + 1, np.int64)
    starts[0] = 0
    lo = 0
    for b in range(1, bins):
        hi = n
        fb = np.float64(b)
        while lo < hi:
            mid = (lo + hi) >> 1
            if np.float64(t[mid] - t0) * scale >= fb:
                hi = mid
            else:
                lo = mid + 1
        starts[b] = lo
    starts[bins] = n
    return starts


@njit(cache=True, nogil=True)
def add_voxel_binned(x, y, t, p, height, width, bins, t0, scale, ts_end, weight, acc):  # pragma: no cover
    # `add_voxel` for time-sorted events, ~1.4x faster: the events of bin b are one run
    # (`voxel_bin_starts`), so the bin index is a loop constant and the clamp and the
    # float -> int conversion leave the loop. Rather than trusting the order, it checks
    # what the result depends on: every in-bounds event's fraction lies in [0, 1) of its
    # run, and in the last bin is at most that of the last event (ts_end = (t1 - t0) *
    # scale; `add_voxel` clamps later ones), which gives `add_voxel`'s sums to rounding.
    # Returns -1 when that fails (acc then holds partial sums: zero it and call
    # `add_voxel`), else the number of events skipped. Indices stay in bounds whatever
    # the input.
    hw, uw, uh = np.uint64(height * width), np.uint64(width), np.uint64(height)
    starts = voxel_bin_starts(t, t0, scale, bins)
    skipped = 0
    ordered = True
    for b in range(bins):
        s0, s1 = starts[b], starts[b + 1]
        # slices, so the loop index is unsigned-safe and numba drops wraparound checks
        xs, ys, ts, ps = x[s0:s1], y[s0:s1], t[s0:s1], p[s0:s1]
        base = np.uint64(b) * hw
        fb = np.float64(b)
        lo, hi = np.inf, -np.inf
        for i in range(xs.shape[0]):
            xi = np.uint64(xs[i])
            yi = np.uint64(ys[i])
            if xi >= uw or yi >= uh:
                skipped += 1
                continue
            frac = np.float64(ts[i] - t0) * scale - fb
            lo = min(lo, frac)
            hi = max(hi, frac)
            acc[base + yi * uw + xi] += weight[np.uint64(ps[i] > 0)] * (VOXEL_PACK + frac)
        ordered &= lo >= 0.0 and (hi < 1.0 if b < bins - 1 else hi <= ts_end - fb)
    return skipped if ordered else -1


@njit(cache=True, nogil=True)
def voxel_finalize(acc, bins, out):  # pragma: no cover - compiled
    # unpack `add_voxel`'s (groups * bins, H*W) sums and add them to the float32 grid, per
    # polarity group: bin k = sum(v) - sum(v * frac) of its own events + sum(v * frac) of bin k - 1.
    # Row loops over cells with the carried sums in a row buffer (not a per-cell walk over
    # bins), so each cell is unpacked once and LLVM vectorises the loop: ~5x faster.
    cells = out.shape[1]
    inv = 1.0 / VOXEL_PACK
    carry = np.empty(cells)
    for g0 in range(0, acc.shape[0], bins):
        carry[:] = 0.0
        for k in range(g0, g0 + bins):
            for c in range(cells):
                a = acc[k, c]
                n = np.floor(a * inv + 0.5)
                frac_sum = a - n * VOXEL_PACK
                out[k, c] += np.float32(n - frac_sum + carry[c])
                carry[c] = frac_sum


@njit(cache=True, nogil=True)
def latest_times(x, y, t, p, height, width, last):  # pragma: no cover - compiled
    hw, uw, uh = np.uint64(height * width), np.uint64(width), np.uint64(height)
    skipped = 0
    for i in range(x.shape[0]):
        xi = np.uint64(x[i])
        yi = np.uint64(y[i])
        if xi >= uw or yi >= uh:
            skipped += 1
            continue
        idx = yi * uw + xi
        if p[i] <= 0:
            idx += hw
        if t[i] > last[idx]:
            last[idx] = t[i]
    return skipped


@njit(cache=True, nogil=True)
def evsegnet_finalize(n, s1, s2, offset, duration, hw, out):  # pragma: no cover - compiled
    """out (6*hw,) = [n_on, n_off, mean_on, std_on, mean_off, std_off] (Ev-SegNet's order) from
    moments with channel 0 = ON, 1 = OFF; time in units of `duration` from the window start
    (``offset`` = window start - origin of s1/s2)."""
    inv = 1.0 / np.float64(duration)
    for c in range(2):
        mean_base = (2 + 2 * c) * hw  # ON: channels 2, 3; OFF: 4, 5
        std_base = mean_base + hw
        for k in range(hw):
            idx = c * hw + k
            cnt = n[idx]
            out[idx] = cnt
            if cnt <= 0:
                out[mean_base + k] = 0.0
                out[std_base + k] = 0.0
                continue
            mean = s1[idx] / cnt
            out[mean_base + k] = (mean - offset) * inv
            if cnt == 1:
                out[std_base + k] = 0.0
            else:
                var = (s2[idx] - s1[idx] * mean) / (cnt - 1)  # sample variance (n - 1)
                out[std_base + k] = math.sqrt(var) * inv if var > 0.0 else 0.0


@njit(cache=True, nogil=True)
def time_surface_finalize(last, t_ref, tau_ns, out):  # pragma: no cover - compiled
    inv = 1.0 / tau_ns
    for k in range(last.shape[0]):
        if last[k] == NO_EVENT:
            out[k] = 0.0
        else:
            out[k] = math.exp(-np.float64(t_ref - last[k]) * inv)


@njit(cache=True, nogil=True)
def screen_events(x, y, t, height, width, has_last, last_t, reset_ns, keep):  # pragma: no cover
    """Mark in-bounds, time-ordered events in `keep`; stop at the first backwards jump.

    Returns (kept, out_of_bounds, out_of_order, reset_index, has_last, last_t) where
    reset_index is the index of the first event more than `reset_ns` before the latest
    accepted time (-1: none; `reset_ns < 0` disables resets), up to which `keep` is valid.
    """
    kept = 0
    oob = 0
    ooo = 0
    for i in range(x.shape[0]):
        if np.int64(x[i]) >= width or np.int64(y[i]) >= height:
            keep[i] = False
            oob += 1
            continue
        ti = t[i]
        if has_last and ti < last_t:
            if reset_ns >= 0 and last_t - ti > reset_ns:
                return kept, oob, ooo, i, has_last, last_t
            keep[i] = False
            ooo += 1
            continue
        keep[i] = True
        kept += 1
        last_t = ti
        has_last = True
    return kept, oob, ooo, -1, has_last, last_t


@njit(cache=True, nogil=True)
def in_bounds_time_range(x, y, t, height, width):  # pragma: no cover - compiled
    """(found, t of the first in-bounds event, t of the last one), scanning from both ends."""
    n = x.shape[0]
    i = 0
    while i < n and (np.int64(x[i]) >= width or np.int64(y[i]) >= height):
        i += 1
    if i == n:
        return False, np.int64(0), np.int64(0)
    j = n - 1
    while np.int64(x[j]) >= width or np.int64(y[j]) >= height:
        j -= 1
    return True, t[i], t[j]


@njit(cache=True, nogil=True)
def time_span(t):  # pragma: no cover - compiled
    """max(t) - min(t) in one pass (numpy's min and max are two): the glitched-clock screen's
    first look at every event message."""
    lo = hi = t[0]
    for i in range(1, t.shape[0]):
        lo = min(lo, t[i])  # branch-free: the loop vectorises
        hi = max(hi, t[i])
    return hi - lo


@njit(cache=True, nogil=True)
def unpack_event_records(records, height, width, x, y, t, p):  # pragma: no cover - compiled
    # one pass over the packed records: numpy needs a strided pass per field plus the
    # int64 time assembly and a bounds pass, ~3x slower on 10M events (bench_codec)
    inside = 0
    for i in range(records.shape[0]):
        r = records[i]
        xi = r.x
        yi = r.y
        x[i] = xi
        y[i] = yi
        t[i] = np.int64(r.sec) * 1_000_000_000 + np.int64(r.nsec)
        p[i] = 1 if r.p else 0  # wire bool: any non-zero byte is ON
        if xi < width and yi < height:
            inside += 1
    return inside
