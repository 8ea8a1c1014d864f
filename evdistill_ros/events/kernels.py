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
- `add_voxel(x, y, t, p, height, width, bins, t0, t1, separate, out)`: E2VID bilinear-in-time
  voxel grid.
- `latest_times(x, y, t, p, height, width, last)`: per (polarity, pixel) latest timestamp,
  channel 0 = ON, 1 = OFF; `last` must be pre-filled with `NO_EVENT`.
- `evsegnet_finalize(...)`, `time_surface_finalize(...)`: per-cell post-processing.
- `screen_events(...)`: the sliding window's input filter (bounds, order, backwards jumps).
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


@njit(cache=True, nogil=True, fastmath=True)
def add_voxel(x, y, t, p, height, width, bins, t0, t1, separate, out):  # pragma: no cover
    hw, uw, uh, ub = np.uint64(height * width), np.uint64(width), np.uint64(height), np.uint64(bins)
    dt = t1 - t0
    scale = (bins - 1) / np.float64(dt) if dt > 0 else 0.0
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
        frac = np.float32(ts - np.float64(bi))
        b = np.uint64(bi)
        if separate:
            v = np.float32(1.0)
            if p[i] <= 0:
                b += ub
        else:
            v = np.float32(1.0) if p[i] > 0 else np.float32(-1.0)
        idx = b * hw + yi * uw + xi
        out[idx] += v - v * frac
        if ts < last:  # the upper neighbour exists
            out[idx + hw] += v * frac
    return skipped


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
