"""Training throughput: pair cache vs re-reading the bag, and step time per distillation method.

    python bench/bench_train.py [--quick] [--width 160 --height 120 --seconds 2]

Prints two tables:
  1. frames/s of one epoch of training pairs read from the memory-mapped cache (what the trainer
     does) vs decoded again from the bag with embeddings_at (the reference: no cache);
  2. seconds per optimiser step (CPU, demo model, batch 8) for the teacher and each student method.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few steps (smoke run)")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    if args.quick:
        args.width, args.height, args.seconds, args.steps = 80, 60, 0.5, 2

    import torch

    from evdistill_ros.io.pair_writer import extract_pairs
    from evdistill_ros.io.pair_cache import open_cache
    from evdistill_ros.distill.config import load_config
    from evdistill_ros.distill.trainer import run_training
    from evdistill_ros.events import embeddings_at
    from evdistill_ros.io.bag import iter_events, iter_images
    from evdistill_ros.sim import simulate_sequence

    tmp = Path(tempfile.mkdtemp(prefix="bench_train."))
    bag = str(tmp / "seq.bag")
    simulate_sequence(bag, seconds=args.seconds, seed=0, width=args.width, height=args.height)
    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "config" / "demo.yaml", [{
        "data": {"cache_dir": str(tmp / "cache")},
        "augment": {"crop": [min(80, args.height), min(112, args.width)]},
        "teacher": {"steps": args.steps}, "student": {"steps": args.steps},
        "train": {"steps": args.steps, "log_every": 1, "image_every": 0, "ckpt_every": 10**6, "warmup_steps": 1,
                  "device": "cpu", "out_dir": str(tmp / "runs")}}])
    d = cfg.data

    t0 = time.perf_counter()
    cache = open_cache(extract_pairs(d.pair_source([bag]), d.cache_dir, progress=False, log=lambda s: None))
    t_extract = time.perf_counter() - t0
    n = len(cache)
    t0 = time.perf_counter()
    acc = 0.0
    for j in range(n):
        acc += float(np.asarray(cache.events[j]).sum()) + float(np.asarray(cache.aps[j]).sum())
    t_cache = time.perf_counter() - t0
    t0 = time.perf_counter()
    ends = np.array([m.stamp_ns for m in iter_images(bag, d.image_topic)], dtype=np.int64)
    for _ in embeddings_at(iter_events(bag, d.events_topic), ends, d.representation, height=args.height,
                           width=args.width, window_ns=d.window_ns, **d.representation_params):
        pass
    t_bag = time.perf_counter() - t0

    print(f"\n{n} pairs, {args.width}x{args.height}, {d.representation} {d.representation_params}, torch threads {torch.get_num_threads()}")
    print("| pairs per epoch from | frames/s | speed-up |")
    print("|---|---|---|")
    print(f"| bag (embeddings_at, reference) | {n / t_bag:.0f} | 1.0x |")
    print(f"| memory-mapped cache | {n / t_cache:.0f} | {t_bag / t_cache:.1f}x |")
    print(f"(one-time extraction: {t_extract:.2f} s)")

    rows = []
    teacher = run_training(cfg, [bag], "teacher", progress=False, log=lambda s: None)
    rows.append(("teacher (APS, ce)", _step_time(teacher)))
    for method, labels in (("supervised", False), ("kd", False), ("evdistill", False), ("evdistill", True)):
        ck = run_training(cfg, [bag], "student", method=method, teacher=str(teacher), use_labels=labels,
                          progress=False, log=lambda s: None)
        rows.append((f"student {method}{' + labels' if labels else ''}", _step_time(ck)))
    print(f"\n| run (batch {cfg.train.batch_size}, crop {cfg.augment.crop}) | s/step |")
    print("|---|---|")
    for name, s in rows:
        print(f"| {name} | {s:.3f} |")
    return 0


def _step_time(ckpt: Path) -> float:
    import json

    m = json.loads((ckpt.parent / "metrics.json").read_text())
    return m["seconds"] / max(1, m["step"])


if __name__ == "__main__":
    sys.exit(main())
