"""`evdistill simulate`: synthetic DAVIS driving bags (events, APS, labels) plus a manifest."""
from __future__ import annotations

import argparse
import json


def _simulate(args: argparse.Namespace) -> int:
    from .writer import simulate_dataset  # on use: the CLI parses without torch/numba

    overrides = {}
    if args.speed is not None:
        overrides["speed"] = args.speed
    if args.max_pixel_motion is not None:
        overrides["max_pixel_motion"] = args.max_pixel_motion
    if args.no_labels:
        overrides["labels"] = False
    manifest = simulate_dataset(
        args.out, sequences=args.sequences, seconds=args.seconds, seed=args.seed, night=args.night,
        workers=args.workers, progress=not args.no_progress, preview=args.preview, prefix=args.prefix,
        width=args.width, height=args.height, fps=args.fps, classes=args.classes, **overrides,
    )
    total_ev = sum(b["events"] for b in manifest["bags"])
    frames = sum(b["frames"] for b in manifest["bags"])
    print(f"{args.out}: {manifest['sequences']} bag(s), {frames} frames, {total_ev} events, "
          f"{manifest['wall_s']:.1f} s wall; class frequency {json.dumps(manifest['class_frequency'])}")
    if manifest.get("preview"):
        print(f"preview: {args.out}/{manifest['preview']}")
    return 0


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write synthetic DAVIS driving bags (events, APS frames, labels) and manifest.json",
        description="Simulate a camera driving through a procedural street: one ROS1 bag per sequence with "
                    "/davis/left/events (dvs_msgs/EventArray), /davis/left/image_raw (mono8 APS), "
                    "/davis/left/labels (mono8 class ids, 255 = ignore) and /davis/left/camera_info.",
    )
    p.add_argument("--out", required=True, help="output directory (bags + manifest.json)")
    p.add_argument("--sequences", type=_positive_int, default=1, help="number of bags (default 1)")
    p.add_argument("--seconds", type=_positive_float, default=10.0, help="simulated seconds per bag (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bags (default 0)")
    p.add_argument("--night", action="store_true", help="night scenes: dark, clipped APS; events keep the structure")
    p.add_argument("--width", type=int, default=346, help="sensor width (default 346, DAVIS346)")
    p.add_argument("--height", type=int, default=260, help="sensor height (default 260)")
    p.add_argument("--fps", type=_positive_float, default=20.0, help="APS frame rate (default 20)")
    p.add_argument("--classes", choices=("ddd17", "sim", "dsec11"), default="ddd17",
                   help="class set of the labels: ddd17 (6, default), sim (12: road, sidewalk, building, wall, "
                        "vegetation, terrain, pole, traffic sign, traffic light, car, person, sky) or dsec11")
    p.add_argument("--no-labels", action="store_true",
                   help="leave out the labels topic (unlabelled recordings, for label-free distillation)")
    p.add_argument("--speed", type=float, default=None, help="constant ego speed in m/s (default: varying 3-14 with stops)")
    p.add_argument("--max-pixel-motion", type=_positive_float, default=None,
                   help="largest image motion between renders in pixels (default 1)")
    p.add_argument("--workers", type=_positive_int, default=1, help="parallel processes, one bag each (default 1)")
    p.add_argument("--prefix", default="seq", help="bag name prefix (default seq -> seq_000.bag)")
    p.add_argument("--preview", action="store_true", help="write preview.png (APS | events | labels) of the first bag")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_simulate)
