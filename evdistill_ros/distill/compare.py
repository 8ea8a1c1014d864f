"""`evdistill train compare`: every method on the same synthetic data, with seeds, one table.

    parse_entry("evdistill-pixel") -> Entry       one student of `compare.methods`
    run_compare(config, out_dir=None, progress=True, log=print, seeds=None) -> dict
    summarize(runs) -> dict                       mean / std / paired differences over seeds

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
differences, per-class IoU), OUT/compare.png (mIoU per network and scenario, error bars over
seeds) and, with @uK entries, OUT/unlabelled.png (mIoU against unlabelled data). One seed keeps
the runs in OUT/<network>; several in OUT/seed<S>/<network>. Bags and finished runs are reused
(same seeds, same bags), so a re-run only trains what is missing; a finished run trained with
other settings (steps, weights, model, data, ...) is refused in one line, never silently reused.
"""
from __future__ import annotations

import copy
import json
import os
import re
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
from .cache import extract_pairs
from .config import DEFAULTS, augment_config, merge, model_config, stage_config
from .state import changed_keys, fingerprint, plain
from .trainer import run_training, validate

SPLITS = ("normal", "night", "fast")
# training and test data never share a simulator seed
_SEED_OFFSETS = {"train": 0, "night_train": 500, "test": 1000, "night": 2000, "fast": 2500,
                 "unlabelled": 3000, "night_unlabelled": 6000}
# ablation name -> the loss weights it zeroes (the A2E generator only serves the crafted pairs)
ABLATIONS = {"recon": ("recon",), "pixel": ("pixel",), "affinity": ("affinity",), "a2e": ("a2e", "a2e_gen")}
_ENTRY = re.compile(r"^(supervised|kd|evdistill)(\+labels)?((?:-[a-z0-9]+)*)(?:@u(\d+))?(?::(\d+))?$")


@dataclass(frozen=True)
class Entry:
    """One student of the comparison."""
    method: str
    use_labels: bool = False
    without: tuple[str, ...] = ()
    unlabelled: int = 0  # multiples of the labelled training sequences added without labels
    steps: int | None = None  # training steps (None: student.steps)

    @property
    def name(self) -> str:
        return (f"student_{self.method}" + ("_labels" if self.use_labels else "")
                + "".join(f"_no_{t}" for t in self.without) + (f"_u{self.unlabelled}x" if self.unlabelled else "")
                + (f"_{self.steps}steps" if self.steps else ""))

    @property
    def base(self) -> "Entry":
        """The same student without the unlabelled data (the curve's point at 0)."""
        return Entry(self.method, self.use_labels, self.without, 0, self.steps)

    def weights(self, weights: dict) -> dict:
        w = dict(weights)
        for term in self.without:
            for key in ABLATIONS[term]:
                w[key] = 0.0
        return w


def parse_entry(text: str) -> Entry:
    """"evdistill+labels-recon@u2" -> Entry; ValueError naming the grammar otherwise."""
    m = _ENTRY.match(str(text).strip())
    if not m:
        raise ValueError(f"compare.methods: cannot read {text!r} (METHOD[+labels][-TERM...][@uK], METHOD one of "
                         f"supervised, kd, evdistill; TERM one of {', '.join(ABLATIONS)})")
    method, labels, terms, k, steps = (m.group(1), bool(m.group(2)), tuple(t for t in m.group(3).split("-") if t),
                                       m.group(4), m.group(5))
    if labels and method != "evdistill":
        raise ValueError(f"compare.methods: {text!r}: +labels is for evdistill ({method} uses labels or not by itself)")
    bad = [t for t in terms if t not in ABLATIONS]
    if bad:
        raise ValueError(f"compare.methods: {text!r}: no loss term {bad[0]!r} (ablations: {', '.join(ABLATIONS)})")
    if terms and method != "evdistill":
        raise ValueError(f"compare.methods: {text!r}: ablations are of evdistill's terms")
    if k is not None and (method == "supervised" or int(k) < 1):
        raise ValueError(f"compare.methods: {text!r}: unlabelled data (@uK, K >= 1) needs a distilled student")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"compare.methods: {text!r}: steps (:N) must be >= 1")
    return Entry(method, labels, tuple(sorted(set(terms), key=list(ABLATIONS).index)), int(k or 0),
                 int(steps) if steps else None)


def _simulate(out: Path, kind: str, count: int, c: dict, log: Callable[[str], None], classes: str = "ddd17",
              labels: bool = True, **sim) -> list[str]:
    """Simulated bags labelled in `classes` (data.class_set: ddd17, sim or dsec11), or unlabelled."""
    paths = []
    for i in range(count):
        seed = int(c["seed"]) + _SEED_OFFSETS[kind] + i
        p = out / "data" / (f"{kind}_{seed}.bag" if classes == "ddd17" else f"{kind}_{seed}_{classes}.bag")
        if not p.is_file():
            log(f"simulating {p.name} ({c['seconds']} s, {c['width']}x{c['height']}, night={'night' in kind}"
                + ("" if labels else ", no labels") + "".join(f", {k}={v}" for k, v in sim.items()) + ")")
            simulate_sequence(str(p), seconds=float(c["seconds"]), seed=seed, width=int(c["width"]),
                              height=int(c["height"]), night="night" in kind, classes=classes, labels=labels, **sim)
        paths.append(str(p))
    return paths


def _evaluate(ckpt: Path, cfg: dict, bags: list[str], progress: bool, log) -> dict:
    """The network's metrics on `bags`, remembered beside the checkpoint (eval.json, keyed by the
    checkpoint's size and time and the bag names): a re-run evaluates only what is new."""
    st = ckpt.stat()
    key = json.dumps([st.st_size, st.st_mtime_ns, [Path(b).name for b in bags]])
    memo_path = ckpt.parent / "eval.json"
    memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    if key in memo:
        return memo[key]
    model, card = load_network(ckpt)
    cache = open_cache(extract_pairs(bags, cfg["data"], progress=progress, log=log))
    memo[key] = validate(model, card, cache, np.arange(len(cache)))
    atomic_write_text(memo_path, json.dumps(memo, default=float))
    return memo[key]


def _seeds(config: dict, seeds: int | Sequence[int] | None) -> list[int]:
    given = config["compare"].get("seeds", 1) if seeds is None else seeds
    if isinstance(given, int):
        if given < 1:
            raise ValueError(f"compare: seeds must be >= 1, got {given}")
        return [int(config["train"]["seed"]) + k for k in range(given)]
    out = [int(s) for s in given]
    if not out or len(set(out)) != len(out):
        raise ValueError(f"compare: seeds must be distinct, got {given!r}")
    return out


def _finished(metrics: Path) -> dict | None:
    if not metrics.is_file():
        return None
    m = json.loads(metrics.read_text())
    return m if m.get("step") == m.get("steps") else None


def _settings(cfg: dict, stage: str, method: str | None = None) -> dict:
    """What a run's result depends on: the trainer's resume fingerprint plus the loss settings
    (the KD class weighting for the methods that distil). Bags by name: compare names its bags by
    kind and simulator seed (data/sim.json pins the rest)."""
    cfg = copy.deepcopy(cfg)
    cfg["data"]["bags"] = [Path(b).name for b in cfg["data"]["bags"]]
    keys = ("temperature", "affinity_nodes", "weights") + (("kd_class_weighting",) if method in ("kd", "evdistill") else ())
    losses = {k: cfg["student"].get(k) for k in keys} if stage == "student" else {}
    return fingerprint(cfg, stage_config(cfg, stage), model_config(cfg, stage), losses, augment_config(cfg, stage))


def _changed_settings(run_dir: Path, run_cfg: dict, bags: list[str], stage: str, method: str | None = None) -> list[str]:
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return ["config.yaml missing"]
    saved = merge(copy.deepcopy(DEFAULTS), yaml.safe_load(saved_path.read_text()))  # keys added since: defaults
    new = plain(run_cfg)
    new["data"]["bags"] = list(bags)
    return changed_keys(_settings(saved, stage, method), _settings(new, stage, method))


def _pin_simulation(out: Path, c: dict) -> None:
    """The simulator settings the bags in OUT/data were made with: a re-run with others is refused."""
    want = {k: c.get(k) for k in ("seconds", "width", "height", "seed", "fast_sim")}
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


def run_compare(config: dict, out_dir: str | os.PathLike | None = None, progress: bool = True,
                log: Callable[[str], None] = print, seeds: int | Sequence[int] | None = None) -> dict:
    cfg = copy.deepcopy(config)
    c = cfg["compare"]
    out = Path(out_dir or c["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    cs = cfg["data"]["class_set"]
    if cs not in ("ddd17", "sim", "dsec11"):
        raise ValueError(f"compare: the simulator labels in ddd17, sim or dsec11, not data.class_set {cs!r}")
    entries = [parse_entry(m) for m in c["methods"]]
    if len({e.name for e in entries}) != len(entries):
        raise ValueError(f"compare.methods: an entry is given twice: {c['methods']}")
    seed_list = _seeds(cfg, seeds)
    _pin_simulation(out, c)

    train = _simulate(out, "train", int(c["train_sequences"]), c, log, cs)
    train += _simulate(out, "night_train", int(c.get("night_train_sequences") or 0), c, log, cs)
    tests = {"normal": _simulate(out, "test", int(c["test_sequences"]), c, log, cs),
             "night": _simulate(out, "night", int(c["night_sequences"]), c, log, cs),
             "fast": _simulate(out, "fast", int(c.get("fast_sequences") or 0), c, log, cs, **(c.get("fast_sim") or {}))}
    unlabelled: dict[int, list[str]] = {}
    for k in sorted({e.unlabelled for e in entries if e.unlabelled}):
        unlabelled[k] = (_simulate(out, "unlabelled", k * int(c["train_sequences"]), c, log, cs, labels=False)
                         + _simulate(out, "night_unlabelled", k * int(c.get("night_train_sequences") or 0), c, log,
                                     cs, labels=False))
    cfg["data"]["bags"], cfg["data"]["val_bags"] = train, []

    runs: dict[int, dict[str, dict]] = {}
    for seed in seed_list:
        where = out if len(seed_list) == 1 else out / f"seed{seed}"
        scfg = copy.deepcopy(cfg)
        scfg["train"]["seed"] = seed
        seconds: dict[str, float] = {}

        def train_one(name: str, run_cfg: dict, bags: list[str], **kw) -> Path:
            done = _finished(where / name / "metrics.json")
            if done:
                changes = _changed_settings(where / name, run_cfg, bags, kw["stage"], kw.get("method"))
                if changes:
                    raise ValueError(f"{where / name}: finished with other settings ({'; '.join(changes[:3])}): "
                                     "delete it or use another --out")
                log(f"{name} (seed {seed}): reusing {where / name / 'checkpoint.pt'}")
                seconds[name] = float(done.get("seconds", 0))
                return where / name / "checkpoint.pt"
            t0 = time.time()
            path = run_training(run_cfg, bags, out_dir=where / name, progress=progress, log=log, resume=True, **kw)
            seconds[name] = time.time() - t0
            return path

        ckpts = {"teacher": train_one("teacher", scfg, train, stage="teacher")}
        for e in entries:
            ecfg = copy.deepcopy(scfg)
            ecfg["student"]["weights"] = e.weights(ecfg["student"]["weights"])
            if e.steps:
                ecfg["student"]["steps"] = e.steps
            ckpts[e.name] = train_one(e.name, ecfg, train + unlabelled.get(e.unlabelled, []), stage="student",
                                      method=e.method, teacher=str(ckpts["teacher"]), use_labels=e.use_labels)
        runs[seed] = {}
        for name, ckpt in ckpts.items():
            runs[seed][name] = {split: _evaluate(ckpt, cfg, bags, progress, log) for split, bags in tests.items() if bags}
            runs[seed][name]["train_seconds"] = round(seconds.get(name, 0.0), 1)

    summary = summarize(runs)
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
    result = {"networks": networks, "summary": summary, "runs": {str(s): r for s, r in runs.items()}, "checks": checks,
              "settings": {"config": cfg.get("_path"), "seeds": seed_list, "train_bags": train, "test_bags": tests,
                           "unlabelled_bags": {str(k): v for k, v in unlabelled.items()},
                           "methods": list(c["methods"]), "fast_sim": c.get("fast_sim"),
                           "teacher_steps": cfg["teacher"].get("steps", cfg["train"]["steps"]),
                           "student_steps": cfg["student"].get("steps", cfg["train"]["steps"])}}
    md = markdown(result, cfg["data"]["class_set"])
    atomic_write_text(out / "compare.json", json.dumps(result, indent=1, default=float))
    atomic_write_text(out / "compare.md", md)
    plots = plot_compare(result, out)
    log(md + "".join(f"\nfigure: {p}" for p in plots))
    return result


def _stats(values: list[float]) -> tuple[float, float | None]:
    a = np.asarray(values, np.float64)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else None)


def _mean_present(values: list[float | None]) -> float:
    """Mean over the seeds where the class was present (None: absent); NaN if absent in all."""
    present = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(present)) if present else float("nan")


def summarize(runs: dict[int, dict[str, dict]]) -> dict:
    """Per network and split: the mean result (miou, miou_all, per-class iou), its std over seeds,
    the per-seed values and the per-seed difference to the supervised student (paired)."""
    seeds = list(runs)
    names = list(runs[seeds[0]])
    out: dict[str, dict] = {}
    for name in names:
        out[name] = {"train_seconds": float(np.mean([runs[s][name]["train_seconds"] for s in seeds]))}
        for split in SPLITS:
            per = [runs[s][name].get(split) for s in seeds]
            if not per or any(r is None for r in per):
                continue
            mean, std = _stats([r["miou"] for r in per])
            all_mean, all_std = _stats([r["miou_all"] for r in per])
            iou = {c: _mean_present([r["iou"][c] for r in per]) for c in per[0]["iou"]}
            entry = {"miou": mean, "miou_std": std, "miou_all": all_mean, "miou_all_std": all_std, "iou": iou,
                     "seeds": {str(s): r["miou"] for s, r in zip(seeds, per)}, "frames": per[0].get("frames")}
            ref = [runs[s].get("student_supervised", {}).get(split) for s in seeds]
            if name.startswith("student_") and name != "student_supervised" and all(ref):
                diff = [r["miou"] - q["miou"] for r, q in zip(per, ref)]
                d_mean, d_std = _stats(diff)
                entry["vs_supervised"] = {"mean": d_mean, "std": d_std, "wins": int(sum(d > 0 for d in diff)),
                                          "n": len(diff)}
            out[name][split] = entry
    return out


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.2f}"


def _pm(mean, std) -> str:
    return _fmt(mean) if std is None else f"{_fmt(mean)} ± {100 * std:.2f}"


def markdown(result: dict, class_set_name: str) -> str:
    nets, n = result["networks"], len(result["settings"]["seeds"])
    splits = [s for s in SPLITS if any(s in r for r in nets.values())]
    seeds_note = (f"mean ± std over {n} seeds ({', '.join(map(str, result['settings']['seeds']))})" if n > 1
                  else f"one run (seed {result['settings']['seeds'][0]}): differences of a point or two are noise")
    lines = [f"mIoU (%), {seeds_note}; scenarios: {', '.join(splits)}.\n",
             "| network | input | " + " | ".join(f"mIoU {s}" for s in splits) + " | "
             + " | ".join(f"mIoU {s} (absent=0)" for s in splits[:2]) + " | train s |",
             "|---|---|" + "---|" * (len(splits) + len(splits[:2])) + "---|"]
    for name, r in nets.items():
        lines.append(f"| {name} | {'APS' if name == 'teacher' else 'events'} | "
                     + " | ".join(_pm(r.get(s, {}).get("miou"), r.get(s, {}).get("miou_std")) for s in splits) + " | "
                     + " | ".join(_pm(r.get(s, {}).get("miou_all"), r.get(s, {}).get("miou_all_std"))
                                  for s in splits[:2]) + f" | {r['train_seconds']:.0f} |")
    diffs = [name for name, r in nets.items() if any("vs_supervised" in r.get(s, {}) for s in splits)]
    if n > 1 and diffs:
        lines += ["\nDifference to the supervised student, paired by seed (mIoU points, mean ± std; wins = seeds "
                  "where the network beats it):\n",
                  "| network | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
        for name in diffs:
            cells = []
            for s in splits:
                d = nets[name].get(s, {}).get("vs_supervised")
                cells.append("-" if d is None else f"{100 * d['mean']:+.2f} ± {100 * (d['std'] or 0):.2f} "
                                                   f"({d['wins']}/{d['n']})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for k, v in result["checks"].items():
        lines.append(f"\n{k}: {'PASS' if v['pass'] else 'FAIL'} ({v['value']:.3f})")
    for split in splits:
        names = [name for name in nets if "iou" in nets[name].get(split, {})]
        classes = list(nets[names[0]][split]["iou"])
        lines += [f"\nPer-class IoU (%), {split}" + (" (mean over seeds)" if n > 1 else "")
                  + f", class set {class_set_name}:\n",
                  "| class | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        lines += [f"| {c} | " + " | ".join(_fmt(nets[name][split]["iou"].get(c)) for name in names) + " |"
                  for c in classes]
    return "\n".join(lines) + "\n"


def plot_compare(result: dict, out: Path) -> list[Path]:
    """compare.png (mIoU per network and scenario, std over seeds as error bars) and, when
    @uK students were trained, unlabelled.png (mIoU against unlabelled data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = result["networks"]
    splits = [s for s in SPLITS if any(s in r for r in nets.values())]
    names = list(nets)
    n_seeds = len(result["settings"]["seeds"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) * len(splits) / 2 + 2), 4.0))
    width = 0.8 / len(splits)
    for k, split in enumerate(splits):
        y = [100 * (nets[n].get(split, {}).get("miou") or np.nan) for n in names]
        e = [100 * (nets[n].get(split, {}).get("miou_std") or 0.0) for n in names]
        ax.bar(np.arange(len(names)) + (k - (len(splits) - 1) / 2) * width, y, width, yerr=e if n_seeds > 1 else None,
               capsize=2, label=split)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([n.replace("student_", "") for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"test mIoU per scenario ({'mean ± std over %d seeds' % n_seeds if n_seeds > 1 else 'one run'})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths = [out / "compare.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    curves: dict[str, list] = {}  # base entry name -> [(multiple, name)]
    for m in result["settings"]["methods"]:
        e = parse_entry(m)
        if e.unlabelled and e.name in nets:
            curves.setdefault(e.base.name, []).append((e.unlabelled, e.name))
    if curves:
        fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 3.8), squeeze=False)
        for ax, split in zip(axes[0], splits):
            for base, pts in curves.items():
                pts = sorted(pts + ([(0, base)] if base in nets else []))
                pts = [(k, nets[n][split]) for k, n in pts if split in nets[n]]
                ax.errorbar([k for k, _ in pts], [100 * r["miou"] for _, r in pts],
                            yerr=[100 * (r["miou_std"] or 0) for _, r in pts], marker="o", capsize=3,
                            label=base.replace("student_", "") + " (labelled + unlabelled)")
            ax.set_xticks(sorted({0, *(k for pts in curves.values() for k, _ in pts)}))
            for ref, style in (("student_supervised", "--"), ("teacher", ":")):
                if split in nets.get(ref, {}):
                    ax.axhline(100 * nets[ref][split]["miou"], ls=style, color="grey" if ref != "teacher" else "black",
                               label=ref.replace("student_", "") + " (labelled only)")
            ax.set_xlabel("unlabelled sequences (x the labelled ones)")
            ax.set_ylabel(f"mIoU (%), {split}")
            ax.set_title(split)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle("what unlabelled recordings buy" + (f" (mean ± std, {n_seeds} seeds)" if n_seeds > 1 else " (one run)"))
        fig.tight_layout()
        paths.append(out / "unlabelled.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
