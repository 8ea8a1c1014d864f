#!/usr/bin/env python3
"""Throughput of the event representations and cost of sliding windows, single thread.

Part 1, representations (346x260, events uniform over the sensor, sorted Poisson timestamps,
i.e. the cache-unfriendliest spatial layout; with --scene also the events of the package's
simulated street, 2 s of normal and of fast driving, clustered on edges as a camera on a car sees
them): Mev/s of `embed` (serial numba) against, in the same run,
  numpy   a plain numpy implementation (np.bincount / np.maximum.at, as fast as numpy gets)
  tonic   tonic.functional's equivalent (to_frame_numpy n_time_bins=1, to_voxel_grid_numpy,
          to_timesurface_numpy with one slice), where one exists
  dv      dv-processing's closest C++ accumulator when it is installed: dv.TimeSurface (the latest
          time per pixel, both polarities in one map, no exponential: less work) for time_surface,
          and for the others dv.Accumulator without decay (one signed count map: less work than
          two channels of counts, moments or time bins); each a fresh accumulator per call, as
          `embed` allocates its output
Part 2, SlidingWindow (50 ms window, 10 ms stride) on 1, 3 and 12 Mev/s streams fed as 30 Hz
messages: ms of push() time per emitted window, incremental (the default: sums updated where the
representation allows) against the same push recomputing every window (incremental=False: the
same ingest, buffering and screening), and against `embed` alone on each window's slice of a
ready array (no ingest: what the kernel costs); best of --passes passes over the stream.

    NUMBA_NUM_THREADS=1 python bench/bench_events.py [--quick] [--events 1000000 10000000] [--scene]

Single thread is forced (NUMBA_NUM_THREADS / OMP / MKL = 1) before numpy is imported.
"""
from __future__ import annotations

import os

for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evdistill_ros.events import Events, SlidingWindow, embed, warmup  # noqa: E402

H, W = 260, 346
MS = 1_000_000


def make_events(n: int, rate_hz: float = 10e6, seed: int = 0) -> Events:
    rng = np.random.default_rng(seed)
    t0 = 1_600_000_000_000_000_000
    t = t0 + np.cumsum(rng.exponential(1e9 / rate_hz, n)).astype(np.int64)
    return Events(rng.integers(0, W, n), rng.integers(0, H, n), t, rng.integers(0, 2, n))


def scene_events(seconds: float = 2.0) -> list[tuple[str, Events]]:
    """The simulator's street at 346x260 (seed 0): normal driving and the compare's fast scenario."""
    # on use: only --scene needs the simulator, the bag reader and the config's fast scenario
    from evdistill_ros.distill.config import DEFAULTS
    from evdistill_ros.io.bag import read_events
    from evdistill_ros.sim.writer import simulate_sequence

    out = []
    with tempfile.TemporaryDirectory() as d:
        for label, settings in (("street", {}), ("fast street", DEFAULTS["compare"]["fast_sim"])):
            path = Path(d) / "scene.bag"
            simulate_sequence(path, seconds=seconds, seed=0, width=W, height=H, **settings)
            out.append((label, read_events(path)))
            path.unlink()
    return out


# ------------------------------------------------------------------- numpy references


def np_count(ev: Events) -> np.ndarray:
    idx = np.where(ev.p > 0, 0, H * W) + ev.y.astype(np.int64) * W + ev.x
    return np.bincount(idx, minlength=2 * H * W).reshape(2, H, W).astype(np.float32)


def np_voxel(ev: Events, bins: int = 5) -> np.ndarray:
    t = (ev.t - ev.t[0]).astype(np.float64)
    ts = (bins - 1) * t / max(t[-1], 1.0)
    b = ts.astype(np.int64)
    f = ts - b
    v = np.where(ev.p > 0, 1.0, -1.0)
    pix = ev.y.astype(np.int64) * W + ev.x
    out = np.bincount(b * H * W + pix, v * (1 - f), minlength=bins * H * W)
    m = b + 1 < bins
    out += np.bincount((b[m] + 1) * H * W + pix[m], v[m] * f[m], minlength=bins * H * W)
    return out.reshape(bins, H, W).astype(np.float32)


def np_evsegnet(ev: Events) -> np.ndarray:
    tn = (ev.t - ev.t[0]).astype(np.float64) / (int(ev.t[-1]) - int(ev.t[0]) + 1)
    idx = np.where(ev.p > 0, 0, H * W) + ev.y.astype(np.int64) * W + ev.x
    n = np.bincount(idx, minlength=2 * H * W)
    s1 = np.bincount(idx, tn, minlength=2 * H * W)
    s2 = np.bincount(idx, tn * tn, minlength=2 * H * W)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s1 / n, 0)
        std = np.sqrt(np.where(n > 1, np.maximum(s2 - s1 * mean, 0) / (n - 1), 0))
    n, mean, std = (a.reshape(2, H, W) for a in (n, mean, std))
    return np.stack([n[0], n[1], mean[0], std[0], mean[1], std[1]]).astype(np.float32)  # Ev-SegNet order


def np_time_surface(ev: Events, tau_ms: float = 50.0) -> np.ndarray:
    last = np.full(2 * H * W, np.iinfo(np.int64).min)
    idx = np.where(ev.p > 0, 0, H * W) + ev.y.astype(np.int64) * W + ev.x
    np.maximum.at(last, idx, ev.t)
    t_ref = int(ev.t[-1])
    out = np.where(last > np.iinfo(np.int64).min, np.exp(-(t_ref - last.astype(np.float64)) / (tau_ms * 1e6)), 0)
    return out.reshape(2, H, W).astype(np.float32)


def np_evdistill(ev: Events) -> np.ndarray:
    c = np_count(ev)
    out = np.zeros((3, H, W), np.float32)
    for k in range(2):
        out[k] = c[k] / max(c[k].max(), 1)
    return out


# ------------------------------------------------------------------- dv-processing equivalents


def dv_store(ev: Events):
    """The events as a dv.EventStore (µs timestamps), or None without dv-processing."""
    try:
        import dv_processing as dv
    except ImportError:
        return None
    store = dv.EventStore()
    for t, x, y, p in zip((ev.t // 1000).tolist(), ev.x.tolist(), ev.y.tolist(), (ev.p > 0).tolist()):
        store.push_back(t, x, y, p)
    return store


def dv_fn(name: str):
    import dv_processing as dv

    if name == "time_surface":
        def surface(store):
            s = dv.TimeSurface((W, H))
            s.accept(store)
            return s
        return surface

    def counts(store):
        a = dv.Accumulator((W, H), dv.Accumulator.Decay.NONE, 0.0, False, 1.0, 1e9, 0.0, -1e9, False)
        a.accept(store)
        return a.getPotentialSurface()
    return counts


# ------------------------------------------------------------------- tonic equivalents


def tonic_structured(ev: Events) -> np.ndarray:
    import tonic  # noqa: F401  (import cost outside the timing)

    s = np.empty(len(ev), dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
    s["x"], s["y"], s["t"], s["p"] = ev.x, ev.y, ev.t, (ev.p > 0)
    return s


def tonic_fns():
    import tonic.functional as F

    return {
        "count": lambda s: F.to_frame_numpy(s, (W, H, 2), n_time_bins=1),
        # to_voxel_grid_numpy rewrites p in place (0 -> -1): give it a copy, copy time included
        "voxel_grid": lambda s: F.to_voxel_grid_numpy(s.copy(), (W, H, 2), n_time_bins=5),
        "time_surface": lambda s: F.to_timesurface_numpy(s, (W, H, 2), dt=float(s["t"][-1] - s["t"][0] + 1),
                                                         tau=50e6),
    }


def clock() -> float:
    # CPU time of this (single-threaded) process: the shared 2-core dev machine is often
    # oversubscribed, and wall time would mostly measure waiting for a core.
    return time.process_time()


def best_of(fn, repeat: int, min_seconds: float = 0.3) -> float:
    # at least `repeat` runs and at least min_seconds of them (as timeit's autorange): the
    # minimum over many short runs spread in time survives the shared machine's noisy spells
    best, spent, runs = float("inf"), 0.0, 0
    while runs < repeat or spent < min_seconds:
        t0 = clock()
        fn()
        dt = clock() - t0
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return best


REPS = [("count", {}, np_count), ("evdistill_2ch", {}, np_evdistill), ("evsegnet_6ch", {}, np_evsegnet),
        ("voxel_grid", {"bins": 5}, np_voxel), ("time_surface", {"tau_ms": 50.0}, np_time_surface)]


def bench_representations(inputs: list[tuple[str, Events]], repeat: int, with_tonic: bool,
                          with_dv: bool = True) -> None:
    tonic = tonic_fns() if with_tonic else {}
    print("\n## Representations, single thread, 346x260 (Mev/s; higher is better)\n")
    print("| input | representation | events | numba (this) | numpy | tonic | dv-processing | vs numpy | vs tonic | "
          "vs dv |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, ev in inputs:
        n = len(ev)
        s = tonic_structured(ev) if with_tonic else None
        store = dv_store(ev) if with_dv else None
        for name, params, ref in REPS:
            ours = embed(ev, name, height=H, width=W, **params)
            np.testing.assert_allclose(ours, ref(ev), rtol=1e-4, atol=1e-4)  # same thing measured
            t_ours = best_of(lambda: embed(ev, name, height=H, width=W, **params), repeat)
            t_np = best_of(lambda: ref(ev), 2)  # the same 0.3 s floor: a fair minimum
            t_tonic = best_of(lambda: tonic[name](s), 2) if name in tonic else None
            t_dv = best_of(lambda: dv_fn(name)(store), repeat) if store is not None else None
            mev = lambda dt: n / dt / 1e6  # noqa: E731
            col = lambda t: f"{mev(t):.1f}" if t else "-"  # noqa: E731
            vs = lambda t: f"{t / t_ours:.1f}x" if t else "-"  # noqa: E731
            print(f"| {label} | {name} | {n / 1e6:.3g}M | {mev(t_ours):.0f} | {mev(t_np):.1f} | {col(t_tonic)} | "
                  f"{col(t_dv)} | {t_np / t_ours:.1f}x | {vs(t_tonic)} | {vs(t_dv)} |", flush=True)


def bench_windows(rates: list[float], seconds: float, passes: int) -> None:
    print(f"\n## SlidingWindow, 50 ms window / 10 ms stride, 30 Hz messages, {seconds:g} s of stream,"
          f" best of {passes} passes (ms per emitted window; lower is better)\n")
    print("| stream | representation | windows | push, incremental | push, recomputing | incremental speed-up | "
          "embed alone | real-time budget used |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for rate in rates:
        n = int(rate * seconds)
        ev = make_events(n, rate_hz=rate, seed=1)
        bounds = np.searchsorted(ev.t, np.arange(int(ev.t[0]), int(ev.t[-1]) + MS, int(1e9 / 30)))
        chunks = [ev[a:b] for a, b in zip(bounds[:-1], bounds[1:])] + [ev[bounds[-1]:]]
        for name, params in [("count", {}), ("evdistill_2ch", {}), ("evsegnet_6ch", {}), ("voxel_grid", {"bins": 5})]:
            ends: list[int] = []

            def push_stream(incremental: bool) -> None:  # a fresh window each pass: the stream as a node sees it
                sw = SlidingWindow(name, height=H, width=W, window_ns=50 * MS, stride_ns=10 * MS,
                                   incremental=incremental, **params)
                ends[:] = [w.t_end for c in chunks for w in sw.push(c)]

            extra = {"evsegnet_6ch": lambda e: {"t_start": e - 50 * MS, "t_end": e}}.get(name, lambda e: {})

            def embed_alone() -> None:
                for e in ends:
                    embed(ev.time_slice(e - 50 * MS, e), name, height=H, width=W, **extra(e), **params)

            per_window = lambda dt: dt / max(len(ends), 1)  # noqa: E731
            dt_push = per_window(best_of(lambda: push_stream(True), passes, min_seconds=0))  # also fills `ends`
            dt_full = per_window(best_of(lambda: push_stream(False), passes, min_seconds=0))
            dt_embed = per_window(best_of(embed_alone, passes, min_seconds=0))
            print(f"| {rate / 1e6:g} Mev/s | {name} | {len(ends)} | {dt_push * 1e3:.2f} | {dt_full * 1e3:.2f} | "
                  f"{dt_full / dt_push:.2f}x | {dt_embed * 1e3:.2f} | {dt_push / 0.010 * 100:.0f}% |", flush=True)

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 200k events, short streams, no tonic")
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeat", type=int, default=5,
                    help="best of at least N runs and 0.3 s for the numba timings (references: 2 runs and 0.3 s)")
    ap.add_argument("--seconds", type=float, default=1.0, help="stream length for the window benchmark")
    ap.add_argument("--passes", type=int, default=3, help="window benchmark: best of N passes over the stream")
    ap.add_argument("--no-tonic", action="store_true")
    ap.add_argument("--no-dv", action="store_true", help="leave out the dv-processing column")
    ap.add_argument("--scene", action="store_true",
                    help="also the simulated street's events, normal and fast driving (~1 min to simulate)")
    args = ap.parse_args()
    sizes, rates, seconds = args.events, [1e6, 3e6, 12e6], args.seconds
    if args.quick:
        sizes, rates, seconds = [200_000], [1e6, 12e6], 0.2
    t0 = time.perf_counter()
    warmup()
    print(f"warmup (numba compile or cache load): {time.perf_counter() - t0:.2f} s")
    inputs = [("uniform", make_events(n)) for n in sizes] + (scene_events() if args.scene else [])
    bench_representations(inputs, args.repeat, with_tonic=not (args.quick or args.no_tonic),
                          with_dv=not (args.quick or args.no_dv))
    bench_windows(rates, seconds, 1 if args.quick else args.passes)


if __name__ == "__main__":
    main()
