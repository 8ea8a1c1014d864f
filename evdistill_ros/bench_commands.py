"""`evdistill bench [NAME ...] [--quick]`: run the benchmarks in bench/ (source checkouts only)."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def _bench(args: argparse.Namespace) -> int:
    if not BENCH_DIR.is_dir():
        raise FileNotFoundError(f"{BENCH_DIR} not found: benchmarks live in a source checkout of evdistill_ros")
    available = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    names = args.names or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; available: {available}")
    for name in names:
        print(f"== bench/bench_{name}.py", flush=True)
        cmd = [sys.executable, str(BENCH_DIR / f"bench_{name}.py")] + (["--quick"] if args.quick else [])
        if subprocess.run(cmd).returncode != 0:
            raise RuntimeError(f"bench_{name}.py failed")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run benchmarks (codec, events, models, sim, eval, datasets, ...) and print figures")
    p.add_argument("names", nargs="*", help="which benchmarks (default: all), e.g. codec events models")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.set_defaults(func=_bench)
