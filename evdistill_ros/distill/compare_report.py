"""The tables and figures of `evdistill train compare`: seeds summarised, markdown, plots.

    summarize(runs, control_of=None) -> dict    mean / std / paired differences over seeds (to the
                                                supervised student; an @uK student also to its control)
    controls(methods, names) -> dict            @uK student -> the same student without the unlabelled data
    markdown(result, class_set_name) -> str     compare.md
    plot_compare(result, out) -> list[Path]     compare.png and, with @uK entries, unlabelled.png
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .entries import SPLITS, Entry, parse_entry


def _stats(values: list[float]) -> tuple[float, float | None]:
    a = np.asarray(values, np.float64)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else None)


def _mean_present(values: list[float | None]) -> float:
    """Mean over the seeds where the class was present (None: absent); NaN if absent in all."""
    present = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(present)) if present else float("nan")


def _paired(per: list[dict], ref: list[dict]) -> dict:
    diff = [r["miou"] - q["miou"] for r, q in zip(per, ref)]
    d_mean, d_std = _stats(diff)
    return {"mean": d_mean, "std": d_std, "wins": int(sum(d > 0 for d in diff)), "n": len(diff)}


def controls(methods: list[str], names: list[str]) -> dict[str, str]:
    """Each @uK student -> its control: the same entry on the labelled recordings only, for the same
    steps (`evdistill@u2:900` -> `evdistill:900`), when that was trained too."""
    out = {}
    for m in methods:
        e = parse_entry(m)
        if e.unlabelled and e.name in names and e.base.name in names:
            out[e.name] = e.base.name
    return out


def summarize(runs: dict[int, dict[str, dict]], control_of: dict[str, str] | None = None) -> dict:
    """Per network and split: the mean result (miou, miou_all, per-class iou), its std over seeds,
    the per-seed values and the per-seed difference to the supervised student (paired), and for
    the networks in `control_of` (student -> its control, `controls()`) the paired difference to it."""
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
                entry["vs_supervised"] = _paired(per, ref)
            control = (control_of or {}).get(name)
            ref = [runs[s].get(control, {}).get(split) for s in seeds] if control else []
            if ref and all(ref):
                entry["vs_control"] = {"control": control, **_paired(per, ref)}
            out[name][split] = entry
    return out


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.2f}"


def _pm(mean, std) -> str:
    return _fmt(mean) if std is None else f"{_fmt(mean)} ± {100 * std:.2f}"


def _paired_cell(d: dict | None) -> str:
    """A paired difference as a table cell: mean ± std in points (seeds ahead of all)."""
    return "-" if d is None else f"{100 * d['mean']:+.2f} ± {100 * (d['std'] or 0):.2f} ({d['wins']}/{d['n']})"


def _paired_table(nets: dict, splits: list[str], key: str, title: str) -> list[str]:
    """Markdown lines of the networks' paired differences `key` ("vs_supervised", or "vs_control"
    with a column naming each network's control); none when no network has them."""
    names = [name for name, r in nets.items() if any(key in r.get(s, {}) for s in splits)]
    if not names:
        return []
    control = key == "vs_control"
    lines = [f"\n{title}\n", "| network | " + ("control | " if control else "") + " | ".join(splits) + " |",
             "|---|" + ("---|" if control else "") + "---|" * len(splits)]
    for name in names:
        cells = [nets[name].get(s, {}).get(key) for s in splits]
        first = next((c["control"] for c in cells if c), "") if control else None
        lines.append(f"| {name} | " + (f"{first} | " if control else "") + " | ".join(map(_paired_cell, cells)) + " |")
    return lines


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
    if n > 1:
        lines += _paired_table(nets, splits, "vs_supervised", "Difference to the supervised student, paired by seed "
                               "(mIoU points, mean ± std; wins = seeds where the network beats it):")
        lines += _paired_table(nets, splits, "vs_control", "Unlabelled data against its control (the same student on "
                               "the labelled recordings only, for the same steps), paired by seed (mIoU points, mean "
                               "± std; wins = seeds where the unlabelled data helps):")
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
    curves, steps_of = _unlabelled_curves(result)
    if curves:
        paths.append(_plot_unlabelled(plt, nets, splits, n_seeds, curves, steps_of, out / "unlabelled.png"))
    return paths


def _unlabelled_curves(result: dict) -> tuple[dict[str, dict[str, list]], dict[str, int]]:
    """Per family (the entry without unlabelled data, at the default steps): its @uK students and
    their controls (the same steps without the unlabelled data) where trained, as (K, name) points;
    and the steps of each point that has a budget of its own."""
    nets = result["networks"]
    curves: dict[str, dict[str, list]] = {}
    steps_of: dict[str, int] = {}
    for m in result["settings"]["methods"]:
        e = parse_entry(m)
        if e.unlabelled and e.name in nets:
            family = Entry(e.method, e.use_labels, e.without).name
            curve = curves.setdefault(family, {"data": [], "control": []})
            curve["data"].append((e.unlabelled, e.name))
            if e.steps and e.base.name in nets:
                curve["control"].append((e.unlabelled, e.base.name))
            if e.steps:
                steps_of[e.name] = steps_of[e.base.name] = e.steps
                steps_of[family] = result["settings"].get("student_steps")
    return curves, steps_of


def _plot_unlabelled(plt, nets: dict, splits: list[str], n_seeds: int, curves: dict, steps_of: dict,
                     path: Path) -> Path:
    """unlabelled.png: one panel per scenario, mIoU against unlabelled data (controls beside, each
    point labelled with its steps), the supervised students and the teacher as lines."""
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 3.8), squeeze=False)
    for ax, split in zip(axes[0], splits):
        for family, curve in curves.items():
            origin = [(0, family)] if family in nets else []
            short = family.replace("student_", "")
            lines = [("data", f"{short}, labelled + unlabelled", "o-")]
            if curve["control"]:
                lines.append(("control", f"{short}, labelled only, the same steps (control)", "s--"))
            for (key, label, style), shift in zip(lines, (-0.03, 0.03) if len(lines) > 1 else (0.0,)):
                pts = [(k, n, nets[n][split]) for k, n in sorted(origin + curve[key]) if split in nets[n]]
                ax.errorbar([k + shift for k, _, _ in pts], [100 * r["miou"] for _, _, r in pts],
                            yerr=[100 * (r["miou_std"] or 0) for _, _, r in pts], fmt=style, capsize=3, label=label)
                for k, n, r in pts if key == "data" else []:
                    if n in steps_of:
                        ax.annotate(f"{steps_of[n]} steps", (k + shift, 100 * r["miou"]), fontsize=6,
                                    textcoords="offset points", xytext=(4, 6))
        ax.set_xticks(sorted({0, *(k for c in curves.values() for k, _ in c["data"])}))
        refs = list(zip([n for n in nets if n.startswith("student_supervised")], ("--", "-.")))
        for ref, style in refs + [("teacher", ":")]:
            if split in nets.get(ref, {}):
                ax.axhline(100 * nets[ref][split]["miou"], ls=style, color="grey" if ref != "teacher" else "black",
                           label=ref.replace("student_", "") + " (labelled only)")
        ax.set_xlabel("unlabelled sequences (x the labelled ones)")
        ax.set_ylabel(f"mIoU (%), {split}")
        ax.set_title(split)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle("what unlabelled recordings buy" + (f" (mean ± std, {n_seeds} seeds)" if n_seeds > 1 else " (one run)"))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
