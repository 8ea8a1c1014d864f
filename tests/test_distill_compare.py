"""`evdistill train compare`: entries, seeds, scenarios, unlabelled data and the statistics.

A tiny end-to-end run (short simulated bags, 2 training steps, a tiny network) checks what the
comparison is made of: every seed trains its own teacher and students, the summary's means,
standard deviations and paired differences are those of the per-seed results, an ablation
trains with its term's weight at zero, an @uK student trains on bags without labels added to the
labelled ones, and the figures are written. Learning itself is tested in test_distill_train.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from evdistill_ros.distill import config as C
from evdistill_ros.distill.compare import run_compare
from evdistill_ros.distill.compare_report import summarize
from evdistill_ros.distill.entries import Entry, parse_entry
from evdistill_ros.io.bag import topics
from evdistill_ros.models import read_metadata


def test_entries_parse_and_refuse():
    assert parse_entry("evdistill") == Entry("evdistill")
    e = parse_entry("evdistill+labels-affinity-recon@u4")
    assert (e.method, e.use_labels, e.without, e.unlabelled) == ("evdistill", True, ("recon", "affinity"), 4)
    assert e.name == "student_evdistill_labels_no_recon_no_affinity_u4x" and e.base.name.endswith("no_affinity")
    longer = parse_entry("evdistill@u1:600")
    assert (longer.unlabelled, longer.steps, longer.name) == (1, 600, "student_evdistill_u1x_600steps")
    assert longer.base == Entry("evdistill", steps=600)
    w = parse_entry("evdistill-a2e").weights({"ce": 1.0, "recon": 1.0, "a2e": 1.0, "a2e_gen": 1.0})
    assert w == {"ce": 1.0, "recon": 1.0, "a2e": 0.0, "a2e_gen": 0.0}
    for bad, why in (("magic", "cannot read"), ("kd+labels", r"\+labels is for evdistill"),
                     ("evdistill-foo", "no loss term 'foo'"), ("kd-pixel", "ablations are of evdistill"),
                     ("supervised@u2", "needs a distilled student"), ("evdistill@u0", "needs a distilled student"),
                     ("kd:0", "steps")):
        with pytest.raises(ValueError, match=why):
            parse_entry(bad)


def test_reuse_settings_hold_the_kd_weighting_for_distilled_students_only():
    """A finished supervised run is reusable whatever student.kd_class_weighting says (it has no KD);
    a distilled one is not."""
    from evdistill_ros.distill.compare import _settings
    from evdistill_ros.distill.state import changed_keys

    plain = C.load_config(None)
    weighted = C.load_config(None, [{"student": {"kd_class_weighting": "median_frequency_sqrt"}}])
    assert changed_keys(_settings(plain, "student", "supervised"), _settings(weighted, "student", "supervised")) == []
    for method in ("kd", "evdistill"):
        assert changed_keys(_settings(plain, "student", method), _settings(weighted, "student", method))


def test_summary_is_the_statistics_of_the_seeds():
    def run(miou, sup):
        return {"teacher": {"normal": {"miou": 0.5, "miou_all": 0.4, "iou": {"a": 0.5, "b": None}}, "train_seconds": 1},
                "student_supervised": {"normal": {"miou": sup, "miou_all": sup, "iou": {"a": sup, "b": None}},
                                       "train_seconds": 2},
                "student_kd": {"normal": {"miou": miou, "miou_all": miou, "iou": {"a": miou, "b": None}},
                               "train_seconds": 3}}
    s = summarize({0: run(0.30, 0.25), 1: run(0.32, 0.33), 2: run(0.40, 0.30)})
    kd = s["student_kd"]["normal"]
    assert kd["miou"] == pytest.approx(np.mean([0.30, 0.32, 0.40]))
    assert kd["miou_std"] == pytest.approx(np.std([0.30, 0.32, 0.40], ddof=1))
    diffs = [0.05, -0.01, 0.10]
    assert kd["vs_supervised"]["mean"] == pytest.approx(np.mean(diffs))
    assert kd["vs_supervised"]["std"] == pytest.approx(np.std(diffs, ddof=1))
    assert (kd["vs_supervised"]["wins"], kd["vs_supervised"]["n"]) == (2, 3)
    assert np.isnan(kd["iou"]["b"]) and "vs_supervised" not in s["student_supervised"]["normal"]
    assert s["teacher"]["normal"]["miou_std"] == 0.0 and "vs_supervised" not in s["teacher"]["normal"]


def test_unlabelled_students_are_paired_with_their_control_at_the_same_steps(tmp_path):
    """`evdistill@u2:900` against `evdistill:900` (the same student on the labelled recordings only,
    for the same steps), paired by seed; no control, no pairing."""
    from evdistill_ros.distill.compare_report import controls, markdown, plot_compare

    methods = ["supervised", "evdistill", "evdistill@u2:900", "evdistill:900", "kd@u1"]
    names = ["teacher", "student_supervised", "student_evdistill", "student_evdistill_u2x_900steps",
             "student_evdistill_900steps", "student_kd_u1x"]
    pairs = controls(methods, names)
    assert pairs == {"student_evdistill_u2x_900steps": "student_evdistill_900steps"}
    assert controls(methods, names[:-2]) == {}  # the control not trained: nothing to pair with

    def run(seed):
        m = {"student_evdistill_u2x_900steps": 0.40 + 0.01 * seed, "student_evdistill_900steps": 0.38 - 0.02 * seed}
        return {n: {"normal": {"miou": m.get(n, 0.3), "miou_all": 0.3, "iou": {"a": 0.3}}, "train_seconds": 1}
                for n in names}
    s = summarize({k: run(k) for k in range(3)}, pairs)
    d = s["student_evdistill_u2x_900steps"]["normal"]["vs_control"]
    diffs = [0.02, 0.05, 0.08]
    assert d["control"] == "student_evdistill_900steps" and (d["wins"], d["n"]) == (3, 3)
    assert d["mean"] == pytest.approx(np.mean(diffs)) and d["std"] == pytest.approx(np.std(diffs, ddof=1))
    assert "vs_control" not in s["student_kd_u1x"]["normal"] and "vs_control" not in s["student_evdistill"]["normal"]
    result = {"networks": s, "settings": {"seeds": [0, 1, 2], "methods": methods, "student_steps": 300}, "checks": {}}
    assert ("| student_evdistill_u2x_900steps | student_evdistill_900steps | +5.00 ± 3.00 (3/3) |"
            in markdown(result, "ddd17"))
    assert [p.name for p in plot_compare(result, tmp_path)] == ["compare.png", "unlabelled.png"]


def _config(tmp_path, methods):
    return C.load_config(None, [{
        "data": {"cache_dir": str(tmp_path / "cache"), "representation": "voxel_grid",
                 "representation_params": {"bins": 2}},
        "model": {"backbone": "mobilenetv2", "width_mult": 0.25, "aspp_channels": 16, "decoder_channels": 16},
        "augment": {"crop": [32, 48]},
        "train": {"steps": 2, "batch_size": 2, "num_workers": 0, "log_every": 1, "image_every": 0, "val_every": 0,
                  "ckpt_every": 2, "device": "cpu", "threads": 1, "amp": False, "seed": 5},
        "compare": {"seconds": 0.5, "train_sequences": 1, "night_train_sequences": 0, "test_sequences": 1,
                    "night_sequences": 1, "fast_sequences": 1, "width": 64, "height": 48, "methods": methods},
    }])


def test_compare_with_seeds_scenarios_ablation_and_unlabelled_data(tmp_path):
    methods = ["supervised", "evdistill-a2e-affinity", "evdistill@u1"]
    out = tmp_path / "cmp"
    r = run_compare(_config(tmp_path, methods), out_dir=out, progress=False, log=lambda s: None, seeds=2)
    assert r["settings"]["seeds"] == [5, 6]
    names = ["teacher", "student_supervised", "student_evdistill_no_affinity_no_a2e", "student_evdistill_u1x"]
    assert list(r["networks"]) == names
    for seed in (5, 6):  # each seed its own networks, distilled from its own teacher
        for name in names:
            meta = read_metadata(out / f"seed{seed}" / name / "checkpoint.pt")
            assert meta["training"]["config"]["train"]["seed"] == seed, name
        run = r["runs"][str(seed)]
        assert set(run["teacher"]) >= {"normal", "night", "fast"}
    # the summary is the statistics of the per-seed results
    for name in names:
        for split in ("normal", "night", "fast"):
            per = [r["runs"][str(s)][name][split]["miou"] for s in (5, 6)]
            got = r["networks"][name][split]
            assert got["miou"] == pytest.approx(np.mean(per)) and got["miou_std"] == pytest.approx(np.std(per, ddof=1))
    d = r["networks"]["student_evdistill_u1x"]["normal"]["vs_supervised"]
    per_seed = [r["runs"][str(s)]["student_evdistill_u1x"]["normal"]["miou"]
                - r["runs"][str(s)]["student_supervised"]["normal"]["miou"] for s in (5, 6)]
    assert d["mean"] == pytest.approx(np.mean(per_seed)) and d["n"] == 2
    # the ablation trained with its terms off; the @u1 student on labelled + unlabelled bags
    w = read_metadata(out / "seed5" / "student_evdistill_no_affinity_no_a2e" / "checkpoint.pt")["training"]["config"]
    w = w["student"]["weights"]
    assert w["affinity"] == w["a2e"] == w["a2e_gen"] == 0 and w["pixel"] > 0 and w["recon"] > 0
    unl = r["settings"]["unlabelled_bags"]["1"]
    assert len(unl) == 1 and "/davis/left/labels" not in topics(unl[0]) and "/davis/left/labels" in topics(
        r["settings"]["train_bags"][0])
    u_meta = read_metadata(out / "seed5" / "student_evdistill_u1x" / "checkpoint.pt")
    assert len(u_meta["training"]["config"]["data"]["bags"]) == 2
    # fast motion: a constant 25 m/s under a long exposure
    fast_bag = r["settings"]["test_bags"]["fast"][0]
    assert "fast_" in fast_bag and r["settings"]["fast_sim"] == {"speed": 25.0, "full_well_time": 0.08}
    md = (out / "compare.md").read_text()
    assert "mean ± std over 2 seeds" in md and "paired by seed" in md and "mIoU fast" in md
    assert (out / "compare.png").stat().st_size > 0 and (out / "unlabelled.png").stat().st_size > 0
    assert json.loads((out / "compare.json").read_text())["settings"]["methods"] == methods
    # a re-run trains nothing: every finished run is reused
    logs = []
    again = run_compare(_config(tmp_path, methods), out_dir=out, progress=False, log=logs.append, seeds=2)
    assert sum("reusing" in m for m in logs) == 8 and not any(m.startswith("simulating") for m in logs)
    # ... and their evaluations, remembered beside each checkpoint (one per scenario)
    scores = lambda runs: {s: {n: {k: v for k, v in res.items() if k != "train_seconds"} for n, res in nets.items()}
                           for s, nets in json.loads(json.dumps(runs)).items()}  # noqa: E731
    assert scores(again["runs"]) == scores(r["runs"])
    assert len(json.loads((out / "seed5" / "teacher" / "eval.json").read_text())) == 3
    # ... but never a run or a bag made with other settings
    longer = _config(tmp_path, methods).replace(student={"steps": 3})
    with pytest.raises(ValueError, match=r"student_supervised: finished with other settings \(train.steps: 2 -> 3\)"):
        run_compare(longer, out_dir=out, progress=False, log=lambda s: None, seeds=2)
    # ... unless asked to train such runs again (the demo's own folder after an upgrade): those only
    logs.clear()
    retrained = run_compare(longer, out_dir=out, progress=False, log=logs.append, seeds=2, retrain_changed=True)
    again_msgs = [m for m in logs if "training it again" in m]
    assert len(again_msgs) == 6 and "train.steps: 2 -> 3" in again_msgs[0]
    assert sum("teacher (seed" in m and "reusing" in m for m in logs) == 2
    assert json.loads((out / "seed5" / "student_supervised" / "metrics.json").read_text())["steps"] == 3
    assert set(retrained["networks"]) == set(r["networks"])
    other_sim = _config(tmp_path, methods).replace(compare={"seconds": 0.6})
    with pytest.raises(ValueError, match=r"bags simulated with other settings \(seconds: 0.5 -> 0.6\)"):
        run_compare(other_sim, out_dir=out, progress=False, log=lambda s: None, seeds=2)
