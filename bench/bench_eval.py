"""Benchmark: confusion-matrix accumulation (eval.metrics) against the usual alternatives.

Per DDD17-sized frame (346x200 labels, 6 classes, ~10 % ignored) it times
    ConfusionMatrix.update   np.bincount over label * K + pred (this package)
    np.add.at                unbuffered scatter-add into the (K, K) matrix
    per-class masks          K x K boolean masks, the loop many segmentation repos use
    PIL nearest (authors')   the label resize of the authors' protocol, PIL vs resize_labels_nearest
and checks that every method gives the same matrix. Prints a markdown table.

    python bench/bench_eval.py [--quick] [--frames N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from evdistill_ros.eval.evaluate import resize_labels_nearest
from evdistill_ros.eval.metrics import ConfusionMatrix


def with_add_at(preds, labels, k=6):
    m = np.zeros((k, k), np.int64)
    for p, g in zip(preds, labels):
        keep = g != 255
        np.add.at(m, (g[keep].astype(np.intp), p[keep].astype(np.intp)), 1)
    return m


def with_masks(preds, labels, k=6):
    m = np.zeros((k, k), np.int64)
    for p, g in zip(preds, labels):
        for i in range(k):
            gi = g == i
            for j in range(k):
                m[i, j] += int(np.count_nonzero(gi & (p == j)))
    return m


def with_bincount(preds, labels, k=6):
    cm = ConfusionMatrix(k)
    for p, g in zip(preds, labels):
        cm.update(p, g)
    return cm.matrix


def timed(fn, *args, repeat=3):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few frames, one repeat (smoke test)")
    ap.add_argument("--frames", type=int, default=None)
    args = ap.parse_args()
    n = args.frames or (4 if args.quick else 50)
    repeat = 1 if args.quick else 3
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 6, (200, 346)).astype(np.uint8) for _ in range(n)]
    for g in labels:
        g[rng.random(g.shape) < 0.1] = 255
    preds = [np.where(rng.random(g.shape) < 0.7, np.minimum(g, 5), rng.integers(0, 6, g.shape)).astype(np.uint8)
             for g in labels]

    rows = []
    t_ref, m_ref = timed(with_masks, preds, labels, repeat=repeat)
    for name, fn in (("ConfusionMatrix.update (np.bincount)", with_bincount), ("np.add.at", with_add_at),
                     ("per-class masks (reference)", with_masks)):
        t, m = (t_ref, m_ref) if fn is with_masks else timed(fn, preds, labels, repeat=repeat)
        if not np.array_equal(m, m_ref):
            raise SystemExit(f"{name}: matrix differs from the reference")
        rows.append((name, 1e3 * t / n, t_ref / t))

    from PIL import Image

    t_pil, a = timed(lambda: [np.asarray(Image.fromarray(g).resize((512, 256), Image.NEAREST)) for g in labels],
                     repeat=repeat)
    t_np, b = timed(lambda: [resize_labels_nearest(g, (256, 512)) for g in labels], repeat=repeat)
    if not all(np.array_equal(x, y) for x, y in zip(a, b)):
        raise SystemExit("resize_labels_nearest differs from PIL")

    print(f"confusion matrix of {n} frames 346x200, 6 classes (best of {repeat}); identical matrices\n")
    print("| method | ms/frame | speed-up vs masks |\n|---|---:|---:|")
    for name, ms, x in rows:
        print(f"| {name} | {ms:.2f} | {x:.1f}x |")
    print(f"\nlabel resize 346x200 -> 512x256 (authors' protocol): PIL {1e3 * t_pil / n:.3f} ms/frame, "
          f"resize_labels_nearest {1e3 * t_np / n:.3f} ms/frame, identical output")


if __name__ == "__main__":
    main()
