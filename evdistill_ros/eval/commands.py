"""`evdistill evaluate` and `evdistill visualize` (torch and matplotlib are imported inside func).

    evdistill evaluate --data D [--aps-ckpt A] [--event-ckpt E] [--format F] [--json PATH]
                       [--batch-size N] [--device cpu|cuda] [--threads N] [--latency] [--limit N]
                       [--score-at label|input]
    evdistill visualize [--data D [--aps-ckpt A] [--event-ckpt E] [--format F] [--out DIR] [--num N]
                        [--every K] [--video PATH.mp4|.gif] [--fps F] [--limit N]] [--metrics EVAL.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from ..atomic import atomic_write_text, check_writable

FORMAT_CHOICES = ("bag", "evdistill-png", "evsegnet", "ess", "dsec", "cache")


def _positive(v: str) -> int:
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="mIoU of an APS and/or an event network on the same labelled test samples",
        description="Scores an APS-frame network on frames and an event network on events over the same "
                    "labelled samples (samples without a label or without an input a network needs are "
                    "skipped and counted). Prints a markdown table: per-class IoU, mIoU in the EvDistill "
                    "convention (absent classes dropped) and the Ev-SegNet/ESS one (absent class = 0), "
                    "pixel accuracy.")
    p.add_argument("--data", required=True, help="a recording (.bag, rosbag2, .aedat4, .raw), a test-set directory "
                                                "or a training-pair cache")
    p.add_argument("--aps-ckpt", help="APS-frame network: a checkpoint (this project's or the authors' .pth), an "
                                      "exported .onnx or a teacher card (.yaml)")
    p.add_argument("--event-ckpt", help="event network checkpoint (this project's or the authors' .pth)")
    p.add_argument("--format", choices=FORMAT_CHOICES, help="data format (default: detected from the path)")
    p.add_argument("--split", default=None, help="split of a test-set directory (default test)")
    _topics(p)
    p.add_argument("--json", metavar="PATH", help='write {"aps": {...}, "events": {...}} here')
    p.add_argument("--batch-size", type=_positive, default=None,
                   help="frames per forward pass (default 8; 1 with --latency)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--backend", default="auto",
                   help="what runs the networks: auto (default: the fastest that agrees with torch on the first "
                        "batch), torch, torch-compile, onnxruntime, openvino (models.backends)")
    p.add_argument("--threads", type=_positive, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--latency", action="store_true", help="also report per-frame latency (ms, p50/p95)")
    p.add_argument("--limit", type=_positive, help="score only the first N usable samples")
    p.add_argument("--score-at", choices=("label", "input"), default="label",
                   help="label: predictions resized to the label resolution (default); input: labels resized "
                        "(nearest) to the network input, the EvDistill authors' released protocol")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_evaluate)

    v = subparsers.add_parser(
        "visualize", help="five-panel prediction figures, a video of a sequence, plots of an evaluate JSON",
        description="With --data: EvDistill's five-panel figure (event image | event prediction | APS | APS "
                    "prediction | ground truth) of --num labelled samples to OUT/panels.png, and with --video "
                    "a video of the sequence. With --metrics: confusion matrices and a per-class IoU chart "
                    "from an `evdistill evaluate --json` file.")
    v.add_argument("--data", help="a recording (.bag, rosbag2, .aedat4, .raw), a test-set directory or a "
                                  "training-pair cache; without labels the ground-truth panel says n/a")
    v.add_argument("--aps-ckpt", help="APS-frame network: checkpoint, exported .onnx or teacher card (.yaml)")
    v.add_argument("--event-ckpt", help="event network checkpoint")
    v.add_argument("--format", choices=FORMAT_CHOICES, help="data format (default: detected)")
    v.add_argument("--split", default=None, help="split of a test-set directory (default test)")
    _topics(v)
    v.add_argument("--out", default="viz", help="output directory (default ./viz)")
    v.add_argument("--num", type=int, default=4, help="samples in the five-panel figure (default 4; 0: none)")
    v.add_argument("--every", type=_positive, default=1, help="take every K-th labelled sample for the figure")
    v.add_argument("--video", metavar="PATH", help="also write a video of the sequence (.mp4 or .gif)")
    v.add_argument("--fps", type=float, default=10.0, help="video frame rate (default 10)")
    v.add_argument("--limit", type=_positive, help="read at most N samples")
    v.add_argument("--metrics", metavar="JSON", help="plot confusion matrices and IoU bars of this evaluate JSON")
    v.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    v.add_argument("--threads", type=_positive, help="torch CPU threads (default: torch's choice)")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    v.set_defaults(func=_visualize)


def _sample_options(args: argparse.Namespace) -> dict:
    opts = {"split": args.split, "events_topic": args.events_topic, "image_topic": args.image_topic,
            "labels_topic": args.labels_topic, "classes": getattr(args, "dsec_classes", None)}
    return {k: v for k, v in opts.items() if v}


def _topics(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events-topic", default=None, help="bag: event topic (default: the network's, then the preset's)")
    p.add_argument("--image-topic", default=None, help="bag: APS frame topic (default: the preset's)")
    p.add_argument("--labels-topic", default=None, help="bag: label topic (default: the preset's)")
    p.add_argument("--dsec-classes", type=int, choices=(11, 19), default=None,
                   help="DSEC: the 11- or 19-class labels (default 11)")
    p.add_argument("--labels-class-set", default=None, metavar="SET",
                   help="class set of the labels: ddd17 | dsec11 | dsec19 | a YAML file (default: the layout's; "
                        "DSEC: dsec11 / dsec19, others ddd17)")
    p.add_argument("--class-map", default=None, metavar="SET",
                   help="score in this class set, mapping predictions and labels into it (e.g. ddd17 for a DDD17 "
                        "network on DSEC labels); without it, a network of another set than the labels is refused")


def _threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, markdown_table  # on use: the CLI parses without torch/numba

    _threads(args)
    if not args.aps_ckpt and not args.event_ckpt:
        raise ValueError("give --aps-ckpt, --event-ckpt or both")
    if args.json:
        check_writable(args.json, "--json file")  # before the work, not after it
    batch = args.batch_size or (1 if args.latency else 8)
    results = evaluate(args.data, aps_ckpt=args.aps_ckpt, event_ckpt=args.event_ckpt, format=args.format,
                       batch_size=batch, device=args.device, backend=args.backend, latency=args.latency, limit=args.limit,
                       score_at=args.score_at, progress=not args.no_progress and sys.stderr.isatty(),
                       sample_options=_sample_options(args), labels_classes=args.labels_class_set,
                       class_map_to=args.class_map, log=lambda m: print(m, file=sys.stderr))
    print(markdown_table(results))
    if args.json:
        path = atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _visualize(args: argparse.Namespace) -> int:
    if not args.data and not args.metrics:
        raise ValueError("give --data (prediction figures / video) or --metrics (plots of an evaluate JSON)")
    if args.video and not args.data:
        raise ValueError("--video needs --data")
    _threads(args)
    written = []
    if args.data:
        from .visualize import visualize_samples  # on use: the CLI parses without torch/numba

        written += visualize_samples(args.data, aps_ckpt=args.aps_ckpt, event_ckpt=args.event_ckpt,
                                     format=args.format, out=args.out, num=args.num, every=args.every,
                                     video=args.video, fps=args.fps, limit=args.limit, device=args.device,
                                     sample_options=_sample_options(args), labels_classes=args.labels_class_set,
                                     class_map_to=args.class_map,
                                     progress=not args.no_progress and sys.stderr.isatty())
    if args.metrics:
        from .figures import metrics_figures  # on use: the CLI parses without torch/numba

        written += metrics_figures(args.metrics, args.out)
    for p in written:
        print(p)
    return 0
