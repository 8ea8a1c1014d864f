"""`evdistill train`: teacher, student and compare subcommands.

    evdistill train teacher --config CFG [--bags B ...] [--out DIR] [--resume] [--set KEY=VALUE ...]
    evdistill train student --config CFG --method supervised|kd|evdistill [--teacher CKPT | CARD.yaml]
                            [--use-labels | --no-labels] [--bags B ...] [--out DIR] [--resume] [--set ...]
    evdistill train compare --config CFG [--out DIR] [--seeds N | S1,S2,...] [--set ...]

`--set train.lr=0.01` overrides any config key (value parsed as YAML). Under torchrun each
rank runs the same command (see evdistill_ros.distill.ddp).
"""
from __future__ import annotations

import argparse


def _seeds_arg(text: str) -> int | list[int]:
    """`--seeds 3` (train.seed, +1, +2) or `--seeds 0,4,7` (those seeds)."""
    try:
        return [int(s) for s in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or a comma-separated list of seeds, got {text!r}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML preset (config/demo.yaml, config/ddd17.yaml, config/mvsec.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set student.steps=100 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def _stage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bags", nargs="+",
                   help="training recordings: ROS1 / rosbag2 bags, DV .aedat4 (replace data.bags)")
    p.add_argument("--val-bags", nargs="+", help="validation bags (replace data.val_bags)")
    p.add_argument("--out", help="run directory (default train.out_dir/<run name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    p.add_argument("--wait", action="store_true",
                   help="when another run holds OUT, wait for it to finish (default: refuse, naming its PID)")


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the APS teacher or a distilled event student",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", metavar="STAGE", required=True)
    t = sub.add_parser("teacher", help="DeepLabv3+ on APS frames with labels")
    _common(t)
    _stage_args(t)
    s = sub.add_parser("student", help="event network: supervised, kd or evdistill")
    _common(s)
    _stage_args(s)
    s.add_argument("--method", choices=("supervised", "kd", "evdistill"), help="default: student.method")
    s.add_argument("--teacher", help="teacher (kd, evdistill): a checkpoint of this package, or a teacher card "
                                      "(.yaml naming an ONNX / TorchScript / Hugging Face network trained elsewhere; "
                                      "its classes are mapped onto data.class_set)")
    lab = s.add_mutually_exclusive_group()
    lab.add_argument("--use-labels", dest="use_labels", action="store_true", default=None,
                     help="evdistill: add cross-entropy on event labels")
    lab.add_argument("--no-labels", dest="use_labels", action="store_false", help="evdistill: no labels")
    c = sub.add_parser("compare", help="teacher + supervised / kd / evdistill students on synthetic data, one mIoU table")
    _common(c)
    c.add_argument("--out", help="output directory (default compare.out_dir)")
    c.add_argument("--seeds", type=_seeds_arg, default=None, metavar="N | S1,S2,...",
                   help="train every network with N seeds (train.seed, +1, ...), or with the seeds listed, and "
                        "report mean ± std and paired differences to the supervised student (default compare.seeds)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .config import load_config, parse_override  # on use: the CLI parses without torch/numba

    overrides = [parse_override(o) for o in args.overrides]
    if args.stage != "compare" and args.val_bags:
        overrides.append({"data": {"val_bags": list(args.val_bags)}})
    cfg = load_config(args.config, overrides)
    if args.stage == "compare":
        from .compare import run_compare  # on use: the CLI parses without torch/numba

        run_compare(cfg, out_dir=args.out, progress=not args.no_progress, seeds=args.seeds)
        return 0
    from .trainer import run_training  # on use: the CLI parses without torch/numba

    kwargs = {}
    if args.stage == "student":
        kwargs = {"method": args.method, "teacher": args.teacher, "use_labels": args.use_labels}
    path = run_training(cfg, args.bags, args.stage, out_dir=args.out, resume=args.resume,
                        progress=not args.no_progress, wait=args.wait, **kwargs)
    print(path)
    return 0
