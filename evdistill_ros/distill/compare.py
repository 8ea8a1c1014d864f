"""`evdistill train compare`: every method on the same synthetic data, one mIoU table.

    run_compare(config, out_dir=None, progress=True, log=print) -> dict

Simulates (evdistill_ros.sim) `compare.train_sequences` normal and `compare.night_train_sequences`
night training bags, and held-out test bags on other seeds (`test_sequences` normal,
`night_sequences` night); trains the APS teacher and one student per entry of
`compare.methods` (supervised, kd, evdistill = no event labels, evdistill+labels) with the
config's settings; evaluates each network on the normal and the night test bags through
evdistill_ros.eval (teacher on APS frames, students on events); prints the table and writes
OUT/compare.json ({"networks": {name: {"normal": {...}, "night": {...}}}, "settings": ...})
and OUT/compare.md. The issue's bar is reported as two checks:
evdistill (no labels) >= 90% of supervised, and evdistill+labels > supervised (normal test mIoU).
Bags and runs are reused when present (same seeds give the same bags), so a re-run only
re-trains what is missing; delete OUT to start over.
"""
from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..io.pair_cache import open_cache
from ..models import load_checkpoint
from ..sim import simulate_sequence
from .cache import extract_pairs
from .trainer import run_training, validate

_SEED_OFFSETS = {"train": 0, "night_train": 500, "test": 1000, "night": 2000}


def _simulate(out: Path, kind: str, count: int, c: dict, log: Callable[[str], None], classes: str = "ddd17") -> list[str]:
    """Simulated bags labelled in `classes` (data.class_set: ddd17, sim or dsec11)."""
    paths = []
    for i in range(count):
        seed = int(c["seed"]) + _SEED_OFFSETS[kind] + i
        p = out / "data" / (f"{kind}_{seed}.bag" if classes == "ddd17" else f"{kind}_{seed}_{classes}.bag")
        if not p.is_file():
            log(f"simulating {p.name} ({c['seconds']} s, {c['width']}x{c['height']}, night={'night' in kind})")
            simulate_sequence(str(p), seconds=float(c["seconds"]), seed=seed, width=int(c["width"]),
                              height=int(c["height"]), night="night" in kind, classes=classes)
        paths.append(str(p))
    return paths


def _evaluate(ckpt: Path, cfg: dict, bags: list[str], progress: bool, log) -> dict:
    model, meta = load_checkpoint(ckpt)
    cache = open_cache(extract_pairs(bags, cfg["data"], progress=progress, log=log))
    modality = "aps" if meta.get("representation") == "aps" else "events"
    return validate(model, meta, cache, np.arange(len(cache)), modality)


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.2f}"


def _per_class_table(table: dict, class_set_name: str) -> list[str]:
    """Per-class IoU of every network (rows: the class set's classes; "-": absent from the split)."""
    out = []
    for split in ("normal", "night"):
        names = [n for n in table if isinstance(table[n].get(split), dict) and "iou" in table[n][split]]
        if not names:
            continue
        classes = list(table[names[0]][split]["iou"])
        out += [f"\nPer-class IoU (%), {split} light, class set {class_set_name}:\n",
                "| class | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        out += [f"| {c} | " + " | ".join(_fmt(table[n][split]["iou"].get(c)) for n in names) + " |" for c in classes]
    return out


def run_compare(config: dict, out_dir: str | os.PathLike | None = None, progress: bool = True,
                log: Callable[[str], None] = print) -> dict:
    cfg = copy.deepcopy(config)
    c = cfg["compare"]
    out = Path(out_dir or c["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    cs = cfg["data"]["class_set"]
    if cs not in ("ddd17", "sim", "dsec11"):
        raise ValueError(f"compare: the simulator labels in ddd17, sim or dsec11, not data.class_set {cs!r}")
    train = _simulate(out, "train", int(c["train_sequences"]), c, log, cs)
    train += _simulate(out, "night_train", int(c.get("night_train_sequences") or 0), c, log, cs)
    tests = {"normal": _simulate(out, "test", int(c["test_sequences"]), c, log, cs),
             "night": _simulate(out, "night", int(c["night_sequences"]), c, log, cs)}
    cfg["data"]["bags"], cfg["data"]["val_bags"] = train, []

    runs: dict[str, Path] = {}
    seconds: dict[str, float] = {}

    def train_one(name: str, **kw) -> Path:
        ckpt = out / name / "checkpoint.pt"
        metrics = out / name / "metrics.json"
        if metrics.is_file() and json.loads(metrics.read_text()).get("step") == json.loads(metrics.read_text()).get("steps"):
            log(f"{name}: reusing {ckpt}")
            seconds[name] = float(json.loads(metrics.read_text()).get("seconds", 0))
            return ckpt
        t0 = time.time()
        path = run_training(cfg, train, out_dir=out / name, progress=progress, log=log, resume=True, **kw)
        seconds[name] = time.time() - t0
        return path

    runs["teacher"] = train_one("teacher", stage="teacher")
    for m in c["methods"]:
        method, labels = (m.split("+")[0], m.endswith("+labels"))
        if method not in ("supervised", "kd", "evdistill"):
            raise ValueError(f"compare.methods: unknown method {m!r}")
        name = f"student_{method}" + ("_labels" if labels else "")
        runs[name] = train_one(name, stage="student", method=method, teacher=str(runs["teacher"]), use_labels=labels)

    table: dict[str, dict] = {}
    for name, ckpt in runs.items():
        table[name] = {split: _evaluate(ckpt, cfg, bags, progress, log) for split, bags in tests.items() if bags}
        table[name]["train_seconds"] = round(seconds.get(name, 0.0), 1)

    def miou(name: str, split: str = "normal") -> float | None:
        return table.get(name, {}).get(split, {}).get("miou")

    checks = {}
    sup, evd, evl = miou("student_supervised"), miou("student_evdistill"), miou("student_evdistill_labels")
    if sup and evd is not None:
        checks["evdistill_no_labels_ge_90pct_supervised"] = {"value": evd / sup, "pass": evd >= 0.9 * sup}
    if sup and evl is not None:
        checks["evdistill_labels_beats_supervised"] = {"value": evl - sup, "pass": evl > sup}
    result = {"networks": table, "checks": checks,
              "settings": {"config": cfg.get("_path"), "train_bags": train, "test_bags": tests,
                           "teacher_steps": cfg["teacher"].get("steps", cfg["train"]["steps"]),
                           "student_steps": cfg["student"].get("steps", cfg["train"]["steps"])}}
    lines = ["| network | input | mIoU normal | mIoU night | mIoU normal (absent=0) | mIoU night (absent=0) | train s |",
             "|---|---|---|---|---|---|---|"]
    for name, r in table.items():
        lines.append(f"| {name} | {'APS' if name == 'teacher' else 'events'} | {_fmt(r.get('normal', {}).get('miou'))} | "
                     f"{_fmt(r.get('night', {}).get('miou'))} | {_fmt(r.get('normal', {}).get('miou_all'))} | "
                     f"{_fmt(r.get('night', {}).get('miou_all'))} | {r['train_seconds']:.0f} |")
    for k, v in checks.items():
        lines.append(f"\n{k}: {'PASS' if v['pass'] else 'FAIL'} ({v['value']:.3f})")
    lines += _per_class_table(table, cfg["data"]["class_set"])
    md = "\n".join(lines) + "\n"
    (out / "compare.json").write_text(json.dumps(result, indent=1, default=float))
    (out / "compare.md").write_text(md)
    log(md)
    return result
