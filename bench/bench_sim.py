#!/usr/bin/env python
"""Simulator throughput: simulated seconds per wall second at 346x260, per stage, and the
ESIM numba kernel against a vectorised numpy reference measured in the same run.

    python bench/bench_sim.py            # 3 s of driving at 346x260 (+ a night run)
    python bench/bench_sim.py --quick    # 0.3 s, smoke use

CPU time is printed beside wall time: on a shared machine the CPU figure is the stable one.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evdistill_ros.sim import simulate_sequence  # noqa: E402
from evdistill_ros.sim import render as rd  # noqa: E402
from evdistill_ros.sim.esim import EventSimulator  # noqa: E402
from evdistill_ros.sim.scene import Street, Trajectory  # noqa: E402
from evdistill_ros.sim.writer import SimConfig, _env  # noqa: E402


def esim_numpy(I1, eps, Lprev, ref, cp, cn, last, t0, t1, refractory):
    """Reference: the same ESIM step vectorised over pixels with numpy (one pass per crossing)."""
    L1 = np.log(I1.astype(np.float64) + eps)
    up = (L1 - ref) >= cp
    down = (ref - L1) >= cn
    m = np.where(up, ((L1 - ref) / cp).astype(np.int64), np.where(down, ((ref - L1) / cn).astype(np.int64), 0))
    step = np.where(up, cp, -cn)
    dl = L1 - Lprev
    out = []
    for j in range(1, int(m.max(initial=0)) + 1):
        r, c = np.nonzero(m >= j)
        level = ref[r, c] + j * step[r, c]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(dl[r, c] != 0, (level - Lprev[r, c]) / dl[r, c], 1.0)
        te = np.maximum(t0 + (np.clip(frac, 0, 1) * (t1 - t0)).astype(np.int64), t0 + 1)
        ok = te - last[r, c] >= refractory
        last[r[ok], c[ok]] = te[ok]
        out.append((c[ok], r[ok], te[ok], up[r[ok], c[ok]]))
    ref += m * step
    Lprev[:] = L1
    return out


def kernel_bench(width: int, height: int, steps: int) -> list[tuple[str, float, float]]:
    rng = np.random.default_rng(0)
    traj = Trajectory.generate(2.0, rng, speed=10.0)
    street = Street(rng, traj)
    cam = rd.Camera.davis(width, height)
    rnd = rd.Renderer(cam)
    env = _env(SimConfig(), 0)
    imgs = []
    for k in range(steps + 1):
        t = 0.5 + k * 1e-3
        pose = traj.pose(t)
        R = rd.rotation(pose.yaw, pose.pitch)
        prims, lights = street.primitives(t, pose)
        imgs.append(rnd.render(prims, lights, env, R, pose.c, R @ pose.v, R @ pose.w)[0])
    rows = []
    for name in ("numba", "numpy"):
        sim = EventSimulator(height, width, np.random.default_rng(1))
        sim.reset(imgs[0])
        sim.step(imgs[1], 0, 1_000_000)  # compile / warm up
        n = 0
        c0 = time.process_time()
        for k in range(2, len(imgs)):
            if name == "numba":
                n += len(sim.step(imgs[k], k * 1_000_000, (k + 1) * 1_000_000))
            else:
                parts = esim_numpy(imgs[k], sim.eps, sim.Lprev, sim.ref, sim.cp, sim.cn, sim.last,
                                   k * 1_000_000, (k + 1) * 1_000_000, sim.refractory)
                n += sum(len(p[0]) for p in parts)
        cpu = time.process_time() - c0
        rows.append((name, 1e3 * cpu / (len(imgs) - 2), n / max(cpu, 1e-9) / 1e6))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument("--seconds", type=float, default=None, help="simulated seconds per run (default 3, quick 0.3)")
    ap.add_argument("--width", type=int, default=346)
    ap.add_argument("--height", type=int, default=260)
    args = ap.parse_args()
    seconds = args.seconds or (0.3 if args.quick else 3.0)

    with tempfile.TemporaryDirectory() as tmp:
        simulate_sequence(Path(tmp) / "warm.bag", seconds=0.1, seed=0, width=64, height=48)  # numba compile/cache
        print(f"pipeline at {args.width}x{args.height}, {seconds:g} s simulated (varying speed 3-14 m/s, seed 1)")
        print(f"{'scene':8s} {'sim s/wall s':>12s} {'sim s/CPU s':>12s} {'renders/s':>10s} {'Mev/s sim':>10s} "
              f"{'render':>8s} {'events':>8s} {'aps':>6s} {'write':>6s}  (ms per render, wall)")
        for night in (False, True) if not args.quick else (False,):
            c0, w0 = time.process_time(), time.perf_counter()
            s = simulate_sequence(Path(tmp) / "b.bag", seconds=seconds, seed=1, width=args.width,
                                  height=args.height, night=night)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            tm, n = s["timings_s"], max(s["renders"], 1)
            print(f"{'night' if night else 'day':8s} {seconds / wall:12.3f} {seconds / cpu:12.3f} "
                  f"{s['renders'] / seconds:10.0f} {s['events'] / seconds / 1e6:10.3f} "
                  f"{1e3 * tm['render'] / n:8.2f} {1e3 * tm['events'] / n:8.2f} "
                  f"{1e3 * tm['aps'] / n:6.2f} {1e3 * tm['write'] / n:6.2f}")
    steps = 5 if args.quick else 30
    print(f"\nESIM step at {args.width}x{args.height} (1 ms of driving at 10 m/s per step), CPU time")
    print(f"{'kernel':8s} {'ms/step':>8s} {'Mev/s':>8s}")
    rows = kernel_bench(args.width, args.height, steps)
    for name, ms, mev in rows:
        print(f"{name:8s} {ms:8.2f} {mev:8.2f}")
    print(f"numba speed-up over numpy: {rows[1][1] / rows[0][1]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
