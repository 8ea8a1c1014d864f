"""ESIM-style event generation from a sequence of rendered radiance images (numba kernel).

Each pixel keeps a reference log intensity ``ref``. Between two renders at t0 and t1 the
log intensity ``L = log(I + eps)`` is taken as linear in time; every time it crosses
``ref + Cp`` (ON) or ``ref - Cn`` (OFF) an event is emitted at the interpolated crossing
time and the reference moves by one threshold. Thresholds differ per pixel
(``N(C, sigma)``, clipped at ``C_MIN``). After an event a pixel is blind for the refractory
period: crossings inside it still move the reference (the pixel is held in reset) but emit
nothing. Background-activity noise (Poisson, random polarity) and a few hot pixels are
added per packet by `noise_events`.

Public:
    EventSimulator(height, width, rng, contrast_pos=0.25, contrast_neg=0.25, sigma=0.03,
                   refractory_ns=100_000, eps=1e-3)
        .reset(radiance)                      start from an image (no events)
        .step(radiance, t0_ns, t1_ns) -> Events   events in (t0, t1], sorted per pixel only
    noise_events(rng, t0_ns, t1_ns, height, width, rate_hz, hot_pixels) -> Events (unsorted)
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..events.types import Events

C_MIN = 0.05  # lowest per-pixel threshold: keeps the event count per step bounded


@njit(cache=True, fastmath=True)
def _esim_step(I1, eps, Lprev, ref, cp, cn, last, t0, t1, refractory, L1buf):
    """Advance all pixels from t0 to t1; returns (x, y, t, p) arrays of the emitted events."""
    H, W = I1.shape
    # pass 1: count crossings (refractory ignored: an upper bound for the buffers)
    n = 0
    for r in range(H):
        for c in range(W):
            l1 = np.log(I1[r, c] + eps)
            L1buf[r, c] = l1
            d = l1 - ref[r, c]
            if d >= cp[r, c]:
                n += int(d / cp[r, c])
            elif -d >= cn[r, c]:
                n += int(-d / cn[r, c])
    xs = np.empty(n, np.uint16)
    ys = np.empty(n, np.uint16)
    ts = np.empty(n, np.int64)
    ps = np.empty(n, np.int8)
    k = 0
    span = t1 - t0
    for r in range(H):
        for c in range(W):
            l0 = Lprev[r, c]
            l1 = L1buf[r, c]
            Lprev[r, c] = l1
            rf = ref[r, c]
            dl = l1 - l0
            if l1 - rf >= cp[r, c]:
                step = cp[r, c]
                pol = 1
                m = int((l1 - rf) / step)
            elif rf - l1 >= cn[r, c]:
                step = -cn[r, c]
                pol = 0
                m = int((rf - l1) / cn[r, c])
            else:
                continue
            lt = last[r, c]
            for _ in range(m):
                rf += step
                frac = (rf - l0) / dl if dl != 0.0 else 1.0
                frac = min(max(frac, 0.0), 1.0)
                te = t0 + np.int64(frac * span)
                if te <= t0:
                    te = t0 + 1  # events belong to (t0, t1]
                if te - lt >= refractory:
                    xs[k] = c
                    ys[k] = r
                    ts[k] = te
                    ps[k] = pol
                    k += 1
                    lt = te
            ref[r, c] = rf
            last[r, c] = lt
    return xs[:k], ys[:k], ts[:k], ps[:k]


class EventSimulator:
    """Per-pixel state of a simulated DVS (see module docstring)."""

    def __init__(self, height: int, width: int, rng: np.random.Generator, contrast_pos: float = 0.25,
                 contrast_neg: float = 0.25, sigma: float = 0.03, refractory_ns: int = 100_000, eps: float = 1e-3):
        if min(contrast_pos, contrast_neg) < C_MIN or sigma < 0 or eps <= 0:
            raise ValueError(f"contrast thresholds must be >= {C_MIN}, sigma >= 0 and eps > 0; "
                             f"got {contrast_pos}, {contrast_neg}, {sigma}, {eps}")
        self.shape = (height, width)
        self.cp = np.maximum(rng.normal(contrast_pos, sigma, self.shape), C_MIN)
        self.cn = np.maximum(rng.normal(contrast_neg, sigma, self.shape), C_MIN)
        self.refractory = int(refractory_ns)
        self.eps = float(eps)
        self.Lprev = np.zeros(self.shape)
        self._L1 = np.zeros(self.shape)  # scratch: log intensity of the new render
        self.ref = np.zeros(self.shape)
        self.last = np.full(self.shape, np.iinfo(np.int64).min // 2, np.int64)

    def reset(self, radiance: np.ndarray) -> None:
        self._check(radiance)
        self.Lprev[:] = np.log(radiance.astype(np.float64) + self.eps)
        self.ref[:] = self.Lprev

    def step(self, radiance: np.ndarray, t0_ns: int, t1_ns: int) -> Events:
        self._check(radiance)
        if t1_ns <= t0_ns:
            raise ValueError(f"event simulator: time must increase, got t0={t0_ns} t1={t1_ns}")
        x, y, t, p = _esim_step(radiance, self.eps, self.Lprev, self.ref, self.cp, self.cn, self.last,
                                np.int64(t0_ns), np.int64(t1_ns), np.int64(self.refractory), self._L1)
        return Events(x, y, t, p)

    def _check(self, radiance: np.ndarray) -> None:
        if radiance.shape != self.shape:
            raise ValueError(f"event simulator: image shape {radiance.shape} != sensor {self.shape}")


def hot_pixels(rng: np.random.Generator, height: int, width: int, fraction: float,
               rate_range: tuple[float, float] = (30.0, 300.0)) -> np.ndarray:
    """(K, 3) float array of hot pixels: x, y, rate in Hz (at least one when fraction > 0)."""
    k = int(round(fraction * height * width))
    if fraction > 0:
        k = max(k, 1)
    idx = rng.choice(height * width, size=k, replace=False) if k else np.zeros(0, np.int64)
    rates = rng.uniform(*rate_range, size=k)
    return np.stack([idx % width, idx // width, rates], axis=1).astype(np.float64).reshape(-1, 3)


def noise_events(rng: np.random.Generator, t0_ns: int, t1_ns: int, height: int, width: int,
                 rate_hz: float, hot: np.ndarray | None = None) -> Events:
    """Background activity (``rate_hz`` per pixel, Poisson) plus hot pixels in [t0, t1); unsorted."""
    dur = (t1_ns - t0_ns) * 1e-9
    n = int(rng.poisson(rate_hz * height * width * dur)) if rate_hz > 0 else 0
    x = rng.integers(0, width, n)
    y = rng.integers(0, height, n)
    t = rng.integers(t0_ns, t1_ns, n) if n else np.zeros(0, np.int64)
    p = rng.integers(0, 2, n)
    parts = [(x, y, t, p)]
    if hot is not None and len(hot):
        counts = rng.poisson(hot[:, 2] * dur)
        m = int(counts.sum())
        if m:
            hx = np.repeat(hot[:, 0], counts)
            hy = np.repeat(hot[:, 1], counts)
            ht = rng.integers(t0_ns, t1_ns, m)
            hp = (rng.random(m) < 0.7).astype(np.int64)  # hot pixels fire mostly ON
            parts.append((hx, hy, ht, hp))
    return Events(*(np.concatenate([q[i] for q in parts]) for i in range(4)))
