"""`evdistill train compare`: every method on the same synthetic data, with seeds, one table.

    run_compare(config, out_dir=None, progress=True, log=print, seeds=None, retrain_changed=False) -> dict
    (entries of `compare.methods`: distill.entries; tables and figures: distill.compare_report)

Data (evdistill_ros.sim, the same bags for every seed): `compare.train_sequences` normal and
`compare.night_train_sequences` night labelled training bags; held-out test bags on other
seeds, one split per scenario: "normal" (`test_sequences`), "night" (`night_sequences`: the APS
under-exposed, events fine) and "fast" (`fast_sequences`: fast ego motion under a long exposure,
`compare.fast_sim` = simulator parameters, so the APS frames are motion-blurred).

Networks, per seed: the APS teacher, then one student per entry of `compare.methods`:

    supervised | kd | evdistill            the method (evdistill: no event labels)
    +labels                                 evdistill with cross-entropy on event labels
    -recon -pixel -affinity -a2e            ablation: that loss term switched off (weight 0;
                                            -a2e removes the crafted pairs and their generator)
    @uK                                     K times as many unlabelled sequences (event + APS, no
                                            labels topic) added to the labelled training bags
    :N                                      N training steps instead of student.steps (a budget
                                            that grows with the data: "evdistill@u1:600")

e.g. "evdistill+labels", "evdistill-recon-affinity", "evdistill@u2". Seeds (`compare.seeds` or
`--seeds N`) are train.seed, train.seed + 1, ...: every network of a seed is initialised and fed
batches from that seed, and its students distil from that seed's teacher, so differences to the
supervised student are paired per seed.

Writes OUT/compare.json ({"networks": {name: {split: mean result}}, "runs": {seed: ...},
"summary": ..., "checks": ..., "settings": ...}), OUT/compare.md (mean ± std over seeds, paired
differences to the supervised student and, for an @uK:N student, to its control: the same entry
without the unlabelled data when trained too, e.g. "evdistill:600" for "evdistill@u1:600"; per-class
IoU), OUT/compare.png (mIoU per network and scenario, error bars over seeds) and, with @uK
entries, OUT/unlabelled.png (mIoU against unlabelled data, the controls beside). One seed keeps
the runs in OUT/<network>; several in OUT/seed<S>/<network>. Bags and finished runs are reused
(same seeds, same bags), so a re-run only trains what is missing; a finished run trained with
other settings (steps, weights, model, data, ...) is refused in one line, never silently reused.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import yaml

from ..atomic import atomic_write_text
from ..io.pair_cache import open_cache
from ..models.files import load_network
from ..sim import simulate_sequence
from ..io.pair_writer import extract_pairs
from .compare_report import controls, markdown, plot_compare, summarize
from .config import DEFAULTS, CompareConfig, Config, merge
from .entries import SPLITS, Entry, parse_entry
from .state import changed_keys, fingerprint
from .trainer import run_training, validate

_SEED_OFFSETS = {"train": 0, "night_train": 500, "test": 1000, "night": 2000, "fast": 2500,
                 "unlabelled": 3000, "night_unlabelled": 6000}


def _simulate(out: Path, kind: str, count: int, c: CompareConfig, log: Callable[[str], None],
              classes: str = "ddd17", labels: bool = True, **sim) -> list[str]:
    """Simulated bags labelled in `classes` (data.class_set: ddd17, sim or dsec11), or unlabelled."""
    paths = []
    for i in range(count):
        seed = int(c.seed) + _SEED_OFFSETS[kind] + i
        p = out / "data" / (f"{kind}_{seed}.bag" if classes == "ddd17" else f"{kind}_{seed}_{classes}.bag")
        if not p.is_file():
            log(f"simulating {p.name} ({c.seconds} s, {c.width}x{c.height}, night={'night' in kind}"
                + ("" if labels else ", no labels") + "".join(f", {k}={v}" for k, v in sim.items()) + ")")
            simulate_sequence(str(p), seconds=float(c.seconds), seed=seed, width=int(c.width),
                              height=int(c.height), night="night" in kind, classes=classes, labels=labels, **sim)
        paths.append(str(p))
    return paths


def _evaluate(ckpt: Path, config: Config, bags: list[str], progress: bool, log) -> dict:
    """The network's metrics on `bags`, remembered beside the checkpoint (eval.json, keyed by the
    checkpoint's size and time and the bag names): a re-run evaluates only what is new."""
    st = ckpt.stat()
    key = json.dumps([st.st_size, st.st_mtime_ns, [Path(b).name for b in bags]])
    memo_path = ckpt.parent / "eval.json"
    memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    if key in memo:
        return memo[key]
    model, card = load_network(ckpt)
    cache = open_cache(extract_pairs(config.data.pair_source(bags), config.data.cache_dir, progress=progress, log=log))
    memo[key] = validate(model, card, cache, np.arange(len(cache)))
    atomic_write_text(memo_path, json.dumps(memo, default=float))
    return memo[key]


def _seeds(config: Config, seeds: int | Sequence[int] | None) -> list[int]:
    given = config.compare.seeds if seeds is None else seeds
    if isinstance(given, int):
        if given < 1:
            raise ValueError(f"compare: seeds must be >= 1, got {given}")
        return [int(config.train.seed) + k for k in range(given)]
    out = [int(s) for s in given]
    if not out or len(set(out)) != len(out):
        raise ValueError(f"compare: seeds must be distinct, got {given!r}")
    return out


def _finished(metrics: Path) -> dict | None:
    if not metrics.is_file():
        return None
    m = json.loads(metrics.read_text())
    return m if m.get("step") == m.get("steps") else None


def _settings(config: Config, stage: str, method: str | None = None) -> dict:
    """What a run's result depends on: the trainer's resume fingerprint plus the loss settings
    (the KD class weighting for the methods that distil). Bags by name: compare names its bags by
    kind and simulator seed (data/sim.json pins the rest)."""
    config = dataclasses.replace(config, data=config.data.replace(bags=[Path(b).name for b in config.data.bags]))
    distils = method in ("kd", "evdistill")
    keys = ("temperature", "affinity_nodes", "weights") + (
        ("kd_class_weighting", "kd_class_weight_frames") if distils else ())
    losses = {k: getattr(config.student, k) for k in keys} if stage == "student" else {}
    return fingerprint(config, config.train_for(stage), config.model_for(stage), losses, config.augment_for(stage))


def _changed_settings(run_dir: Path, run_config: Config, bags: list[str], stage: str,
                      method: str | None = None) -> list[str]:
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return ["config.yaml missing"]
    # a run's record, keys added since taking their defaults (read as it is, not checked again)
    saved = Config.from_dict(merge(copy.deepcopy(DEFAULTS), yaml.safe_load(saved_path.read_text())))
    new = dataclasses.replace(run_config, data=run_config.data.replace(bags=list(bags)))
    return changed_keys(_settings(saved, stage, method), _settings(new, stage, method))


def _pin_simulation(out: Path, c: CompareConfig) -> None:
    """The simulator settings the bags in OUT/data were made with: a re-run with others is refused."""
    want = {k: getattr(c, k) for k in ("seconds", "width", "height", "seed", "fast_sim")}
    pin = out / "data" / "sim.json"
    if pin.is_file():
        have = json.loads(pin.read_text())
        diff = changed_keys(have, json.loads(json.dumps(want)))
        if diff:
            raise ValueError(f"{out / 'data'}: bags simulated with other settings ({'; '.join(diff[:3])}): "
                             "delete it or use another --out")
    else:
        pin.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(pin, json.dumps(want, indent=1))


@dataclass
class CompareData:
    """The simulated recordings of one comparison (the same for every seed)."""

    train: list[str]
    tests: dict[str, list[str]]
    unlabelled: dict[int, list[str]]


def _simulate_all(out: Path, config: Config, entries: list[Entry], log: Callable[[str], None]) -> CompareData:
    c, cs = config.compare, config.data.class_set
    train = _simulate(out, "train", int(c.train_sequences), c, log, cs)
    train += _simulate(out, "night_train", int(c.night_train_sequences or 0), c, log, cs)
    tests = {"normal": _simulate(out, "test", int(c.test_sequences), c, log, cs),
             "night": _simulate(out, "night", int(c.night_sequences), c, log, cs),
             "fast": _simulate(out, "fast", int(c.fast_sequences or 0), c, log, cs, **(c.fast_sim or {}))}
    unlabelled: dict[int, list[str]] = {}
    for k in sorted({e.unlabelled for e in entries if e.unlabelled}):
        unlabelled[k] = (_simulate(out, "unlabelled", k * int(c.train_sequences), c, log, cs, labels=False)
                         + _simulate(out, "night_unlabelled", k * int(c.night_train_sequences or 0), c, log,
                                     cs, labels=False))
    return CompareData(train, tests, unlabelled)


def _train_seed(config: Config, seed: int, where: Path, entries: list[Entry], data: CompareData, progress: bool,
                log: Callable[[str], None], retrain_changed: bool = False) -> dict[str, dict]:
    """The teacher and every entry's student of one seed, each scored on every test split."""
    seeded = dataclasses.replace(config, train=config.train.replace(seed=seed))
    seconds: dict[str, float] = {}

    def train_one(name: str, run_config: Config, bags: list[str], **kw) -> Path:
        done = _finished(where / name / "metrics.json")
        if done:
            changes = _changed_settings(where / name, run_config, bags, kw["stage"], kw.get("method"))
            if changes and not retrain_changed:
                raise ValueError(f"{where / name}: finished with other settings ({'; '.join(changes[:3])}): "
                                 "delete it or use another --out")
            if changes:  # (the demo's own scratch folder after an upgrade): trained again, said why
                log(f"{name} (seed {seed}): trained with other settings ({'; '.join(changes[:3])}): training it again")
                shutil.rmtree(where / name)
            else:
                log(f"{name} (seed {seed}): reusing {where / name / 'checkpoint.pt'}")
                seconds[name] = float(done.get("seconds", 0))
                return where / name / "checkpoint.pt"
        t0 = time.time()
        path = run_training(run_config, bags, out_dir=where / name, progress=progress, log=log, resume=True, **kw)
        seconds[name] = time.time() - t0
        return path

    ckpts = {"teacher": train_one("teacher", seeded, data.train, stage="teacher")}
    for e in entries:
        student = {"weights": e.weights(dict(seeded.student.weights)), **({"steps": e.steps} if e.steps else {})}
        ckpts[e.name] = train_one(e.name, seeded.replace(student=student), data.train + data.unlabelled.get(
            e.unlabelled, []), stage="student", method=e.method, teacher=str(ckpts["teacher"]),
            use_labels=e.use_labels)
    runs: dict[str, dict] = {}
    for name, ckpt in ckpts.items():
        runs[name] = {split: _evaluate(ckpt, config, bags, progress, log) for split, bags in data.tests.items() if bags}
        runs[name]["train_seconds"] = round(seconds.get(name, 0.0), 1)
    return runs


def run_compare(config: Config, out_dir: str | os.PathLike | None = None, progress: bool = True,
                log: Callable[[str], None] = print, seeds: int | Sequence[int] | None = None,
                retrain_changed: bool = False) -> dict:
    """`retrain_changed`: a finished run made with other settings is deleted and trained again
    (the demo's own output after an upgrade) instead of refused."""
    c = config.compare
    out = Path(out_dir or c.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cs = config.data.class_set
    if cs not in ("ddd17", "sim", "dsec11"):
        raise ValueError(f"compare: the simulator labels in ddd17, sim or dsec11, not data.class_set {cs!r}")
    entries = [parse_entry(m) for m in c.methods]
    if len({e.name for e in entries}) != len(entries):
        raise ValueError(f"compare.methods: an entry is given twice: {c.methods}")
    seed_list = _seeds(config, seeds)
    _pin_simulation(out, c)
    data = _simulate_all(out, config, entries, log)
    config = config.replace(data={"bags": data.train, "val_bags": []})
    runs = {seed: _train_seed(config, seed, out if len(seed_list) == 1 else out / f"seed{seed}", entries, data,
                              progress, log, retrain_changed) for seed in seed_list}
    result = _result(config, runs, seed_list, data)
    md = markdown(result, cs)
    atomic_write_text(out / "compare.json", json.dumps(result, indent=1, default=float))
    atomic_write_text(out / "compare.md", md)
    plots = plot_compare(result, out)
    log(md + "".join(f"\nfigure: {p}" for p in plots))
    return result


def _result(config: Config, runs: dict[int, dict[str, dict]], seed_list: list[int], data: CompareData) -> dict:
    summary = summarize(runs, controls(list(config.compare.methods), list(runs[seed_list[0]])))
    networks = {name: {**{split: s for split, s in r.items() if split in SPLITS},
                       "train_seconds": r["train_seconds"]} for name, r in summary.items()}

    def miou(name: str) -> float | None:
        return networks.get(name, {}).get("normal", {}).get("miou")

    checks = {}
    sup, evd, evl = miou("student_supervised"), miou("student_evdistill"), miou("student_evdistill_labels")
    if sup and evd is not None:
        checks["evdistill_no_labels_ge_90pct_supervised"] = {"value": evd / sup, "pass": evd >= 0.9 * sup}
    if sup and evl is not None:
        checks["evdistill_labels_beats_supervised"] = {"value": evl - sup, "pass": evl > sup}
    c = config.compare
    return {"networks": networks, "summary": summary, "runs": {str(s): r for s, r in runs.items()}, "checks": checks,
            "settings": {"config": config.path, "seeds": seed_list, "train_bags": data.train, "test_bags": data.tests,
                         "unlabelled_bags": {str(k): v for k, v in data.unlabelled.items()},
                         "methods": list(c.methods), "fast_sim": c.fast_sim,
                         "teacher_steps": config.train_for("teacher").steps,
                         "student_steps": config.train_for("student").steps}}
