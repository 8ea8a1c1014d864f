"""The `evdistill` command: one subcommand per stage of the data flow.

Each subcommand lives beside the code it drives, in a module with a
``register(subparsers)`` function that adds its parser and sets ``func``; heavy imports
(torch, numba) happen inside ``func`` so ``evdistill info`` stays quick.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Sequence

from . import __version__

SUBCOMMAND_MODULES = (
    "evdistill_ros.io.commands",  # info, convert
    "evdistill_ros.sim.commands",  # simulate
    "evdistill_ros.distill.commands",  # train
    "evdistill_ros.eval.commands",  # evaluate, visualize
    "evdistill_ros.eval.deploy",  # export (ONNX, int8)
    "evdistill_ros.bench_commands",  # bench (runs bench/*.py from a source checkout)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evdistill",
        description="Event-camera semantic segmentation distilled from an APS teacher (EvDistill) - tools.",
    )
    parser.add_argument("--version", action="version", version=f"evdistill_ros {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken like Ctrl-C (the same clean-up paths run), remembered for the exit code."""

    signum = signal.SIGTERM


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = args.func(args)
    except KeyboardInterrupt as exc:  # 128 + the signal: 130 for SIGINT, 143 for SIGTERM
        signum = int(getattr(exc, "signum", None) or signal.SIGINT)
        print(f"evdistill {args.command}: {'terminated' if signum == signal.SIGTERM else 'interrupted'}",
              file=sys.stderr)
        return 128 + signum
    except Exception as exc:  # noqa: BLE001 - one line for users, traceback with --debug
        if args.debug or os.environ.get("EVDISTILL_DEBUG"):
            raise
        print(f"evdistill {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
