"""`evdistill evaluate` end to end with tiny networks, against an independent re-implementation.

Data: tiny EvDistill-PNG test sets and a tiny labelled bag written here; networks: DeepLabv3+
ResNet-18 with 16-channel heads at a 32x64 input (this project's checkpoints) and an authors'-
layout plain state_dict (ResNet-18 depth: the same loading path as their ResNet-101, cheaper).
The reference predicts with plain torch ops (resize, forward, resize, argmax) and counts the
confusion matrix with np.add.at.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from evdistill_ros.classes import IGNORE_INDEX
from evdistill_ros.eval.evaluate import evaluate, evaluate_model, markdown_table, resize_labels_nearest
from evdistill_ros.events import Events, embed
from evdistill_ros.io.bag import read_events
from evdistill_ros.io.bag_writer import BagWriter
from evdistill_ros.io.evdistill_png import write_evdistill_sample
from evdistill_ros.io.png import write_png
from evdistill_ros.io.samples import Sample, iter_samples
from evdistill_ros.models import build_model, load_checkpoint, save_checkpoint
from evdistill_ros.models.files import load_network
from evdistill_ros.models.predictor import Predictor

H, W = 40, 60
IN = {"height": 32, "width": 64}
EV_REP = {"name": "evdistill_2ch", "params": {}, "window_ns": 50_000_000}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny networks: one thread is faster than two fighting other processes for this 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(in_channels: int, seed: int, **kw):
    torch.manual_seed(seed)
    m = build_model(backbone="resnet18", in_channels=in_channels, aspp_channels=16, decoder_channels=16, **kw)
    # non-trivial BatchNorm statistics so eval-mode outputs are not degenerate
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def labels_for(rng, absent=(4,)):
    lab = rng.integers(0, 6, (H, W)).astype(np.uint8)
    for a in absent:
        lab[lab == a] = 0
    lab[:4] = IGNORE_INDEX
    return lab


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    png = root / "png"
    for i in range(4):
        write_evdistill_sample(png, "test", f"{i:04d}", rng.poisson(0.6, (2, H, W)),
                               rng.integers(0, 256, (H, W), dtype=np.uint8), labels_for(rng))
    aps = save_checkpoint(root / "aps.pt", tiny(1, 1), {"representation": "aps", "input_size": IN,
                                                         "preprocessing": {"resize": "bilinear"}})
    ev = save_checkpoint(root / "ev.pt", tiny(3, 2), {"representation": EV_REP, "input_size": IN,
                                                      "preprocessing": {"resize": "bilinear"}})
    # tiny labelled bag, "sim" topics: frames every 20 ms, events in 5 ms messages, frame 3 unlabelled
    bag = root / "seq.bag"
    t0 = 1_000_000_000
    n = 6000
    ev_all = Events(rng.integers(0, W, n), rng.integers(0, H, n), np.sort(rng.integers(t0, t0 + 160_000_000, n)),
                    rng.integers(0, 2, n).astype(np.int8))
    stamps = [t0 + 60_000_000 + 20_000_000 * k for k in range(5)]
    with BagWriter(bag) as w:
        edges = np.arange(t0, t0 + 165_000_000, 5_000_000)
        for a, b in zip(edges[:-1], edges[1:]):
            sel = (ev_all.t >= a) & (ev_all.t < b)
            if sel.any():
                w.write_events("/davis/left/events", Events(ev_all.x[sel], ev_all.y[sel], ev_all.t[sel], ev_all.p[sel]),
                               H, W)
        for k, s in enumerate(stamps):
            w.write_image("/davis/left/image_raw", s, rng.integers(0, 256, (H, W), dtype=np.uint8), "mono8")
            if k != 3:
                w.write_image("/davis/left/labels", s, labels_for(rng), "mono8")
    return {"root": root, "png": png, "aps": aps, "ev": ev, "bag": bag, "stamps": stamps}


# ---- independent reference -----------------------------------------------------------------------

def ref_confusion(preds, labels, k=6):
    m = np.zeros((k, k), np.int64)
    for p, g in zip(preds, labels):
        keep = g != IGNORE_INDEX
        np.add.at(m, (g[keep].astype(np.int64), p[keep].astype(np.int64)), 1)
    return m


def ref_predict(model, x_chw, in_hw, out_hw, mode="bilinear"):
    t = torch.from_numpy(np.asarray(x_chw, np.float32))[None]
    t = F.interpolate(t, size=in_hw, mode=mode, align_corners=False)
    if mode == "bicubic":
        t = t.clamp(0, 1)
    with torch.no_grad():
        logits = model(t)
    if out_hw != in_hw:
        logits = F.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].numpy()


def ref_scores(m):
    m = m.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.diag(m) / (m.sum(0) + m.sum(1) - np.diag(m))
    return np.nanmean(iou), np.nan_to_num(iou).mean()


# ---- tests ----------------------------------------------------------------------------------------

def test_png_both_networks_match_reference(data):
    res = evaluate(data["png"], aps_ckpt=data["aps"], event_ckpt=data["ev"], batch_size=3, progress=False)
    aps_net, _ = load_checkpoint(data["aps"])
    ev_net, _ = load_checkpoint(data["ev"])
    samples = list(iter_samples(data["png"], "evdistill-png"))
    labels = [s.label for s in samples]
    hw = (IN["height"], IN["width"])
    ref_aps = ref_confusion([ref_predict(aps_net, s.aps[None] / 255.0, hw, (H, W)) for s in samples], labels)
    ref_ev = ref_confusion([ref_predict(ev_net, s.events, hw, (H, W)) for s in samples], labels)
    assert res["aps"]["confusion"] == ref_aps.tolist()
    assert res["events"]["confusion"] == ref_ev.tolist()
    for key, m in (("aps", ref_aps), ("events", ref_ev)):
        miou, miou_all = ref_scores(m)
        assert res[key]["miou"] == pytest.approx(miou) and res[key]["miou_all"] == pytest.approx(miou_all)
        assert res[key]["frames"] == 4 and res[key]["pixels"] == int((np.array(labels) != 255).sum())
        # class 4 is never labelled: absent (None) unless the network predicts it somewhere (then IoU 0)
        assert res[key]["iou"]["human"] == (None if m[:, 4].sum() == 0 else 0.0)
    table = markdown_table(res)
    assert "| human |" in table and f"{100 * res['events']['miou']:.2f}" in table


def test_batch_size_and_limit(data):
    a = evaluate(data["png"], event_ckpt=data["ev"], batch_size=1, progress=False)
    b = evaluate(data["png"], event_ckpt=data["ev"], batch_size=4, progress=False)
    assert a["events"]["confusion"] == b["events"]["confusion"] and "aps" not in a
    c = evaluate(data["png"], event_ckpt=data["ev"], limit=2, progress=False)
    assert c["events"]["frames"] == 2 and c["events"]["pixels"] < a["events"]["pixels"]


def test_authors_checkpoints_and_protocol(data, tmp_path):
    """Plain state_dicts as the authors release them ("module." prefix); their test protocol:
    PNG halves bicubic to 512x256 in [0, 1], labels nearest to 512x256, argmax there, nanmean."""
    nets = {}
    for name, seed in (("apsnet_best.pth", 3), ("eventdual_2ch_iter_28000_event_0.58_best.pth", 4)):
        nets[name] = _authors_like(seed).eval()
        torch.save({f"module.{k}": v for k, v in nets[name].state_dict().items()}, tmp_path / name)
    # the APS file name does not say "aps": --aps-ckpt decides what it is
    res = evaluate(data["png"], aps_ckpt=tmp_path / "apsnet_best.pth",
                   event_ckpt=tmp_path / "eventdual_2ch_iter_28000_event_0.58_best.pth",
                   score_at="input", limit=1, progress=False)  # 512x256 forwards are slow here: one sample
    samples = list(iter_samples(data["png"], "evdistill-png"))[:1]
    lab512 = [np.asarray(Image.fromarray(s.label).resize((512, 256), Image.NEAREST)) for s in samples]
    aps_rgb = [np.repeat(s.aps[None], 3, 0) / 255.0 for s in samples]
    ref_aps = ref_confusion([ref_predict(nets["apsnet_best.pth"], x, (256, 512), (256, 512), "bicubic")
                             for x in aps_rgb], lab512)
    ref_ev = ref_confusion([ref_predict(nets["eventdual_2ch_iter_28000_event_0.58_best.pth"], s.events, (256, 512),
                                        (256, 512), "bicubic") for s in samples], lab512)
    assert res["aps"]["confusion"] == ref_aps.tolist()
    assert res["events"]["confusion"] == ref_ev.tolist()
    assert res["events"]["miou"] == pytest.approx(ref_scores(ref_ev)[0])
    assert res["events"]["pixels"] == sum(int((lab != 255).sum()) for lab in lab512)


def _authors_like(seed):
    torch.manual_seed(seed)
    m = build_model(backbone="resnet18", in_channels=3)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
    return m


def test_label_resize_is_pil_nearest():
    rng = np.random.default_rng(1)
    cases = [((40, 60), (256, 512)), ((200, 346), (256, 512)), ((256, 512), (200, 346)), ((7, 5), (3, 11))]
    cases += [(tuple(rng.integers(1, 600, 2)), tuple(rng.integers(1, 600, 2))) for _ in range(30)]
    for shape, out in cases:
        lab = rng.integers(0, 256, shape).astype(np.uint8)
        want = np.asarray(Image.fromarray(lab).resize((int(out[1]), int(out[0])), Image.NEAREST))
        np.testing.assert_array_equal(resize_labels_nearest(lab, out), want, err_msg=f"{shape} -> {out}")


def test_bag_embeds_with_checkpoint_window_and_skips_unlabelled(data):
    res = evaluate(data["bag"], aps_ckpt=data["aps"], event_ckpt=data["ev"], batch_size=2, progress=False)
    assert res["events"]["frames"] == 4 and res["events"]["skipped"]["no_label"] == 1
    # reference: events of [t - 50 ms, t) embedded here, then the same network and scoring
    ev_all = read_events(data["bag"], "/davis/left/events")
    ev_net, meta = load_checkpoint(data["ev"])
    bag_samples = [s for s in iter_samples(data["bag"], "bag") if s.label is not None]
    preds, labels = [], []
    for s in bag_samples:
        sel = (ev_all.t >= s.t_ns - 50_000_000) & (ev_all.t < s.t_ns)
        emb = embed(Events(ev_all.x[sel], ev_all.y[sel], ev_all.t[sel], ev_all.p[sel]), "evdistill_2ch", height=H, width=W)
        preds.append(ref_predict(ev_net, emb, (IN["height"], IN["width"]), (H, W)))
        labels.append(s.label)
    assert res["events"]["confusion"] == ref_confusion(preds, labels).tolist()


def test_trainer_validation_equals_evaluate(data, tmp_path):
    """The trainer's validation (training-pair cache) and `evdistill evaluate` (bag) agree exactly."""
    from evdistill_ros.io.pair_writer import extract_pairs
    from evdistill_ros.distill.trainer import validate
    from evdistill_ros.events.spec import ByTime, EventInput
    from evdistill_ros.io.pair_cache import PairSource, open_cache

    source = PairSource((str(data["bag"]),), EventInput("evdistill_2ch", {}, ByTime(50_000_000)),
                        "/davis/left/events", "/davis/left/image_raw", "/davis/left/labels")
    cache_dir = extract_pairs(source, tmp_path, progress=False, log=lambda m: None)
    cache = open_cache(cache_dir)
    for modality, ck in (("events", data["ev"]), ("aps", data["aps"])):
        model, card = load_network(ck)
        val = validate(model, card, cache, np.arange(len(cache)), batch_size=3)
        ev = evaluate(data["bag"], **{("event_ckpt" if modality == "events" else "aps_ckpt"): ck}, progress=False)
        cached = evaluate(cache_dir, **{("event_ckpt" if modality == "events" else "aps_ckpt"): ck}, progress=False)
        assert val["confusion"] == ev[modality]["confusion"] == cached[modality]["confusion"]
        assert val["miou"] == ev[modality]["miou"] and val["frames"] == 4


def test_evaluate_model_skips_and_repeats(data):
    net = Predictor(data["ev"], "cpu")
    samples = list(iter_samples(data["png"], "evdistill-png"))
    samples.append(Sample("nolabel", None, samples[0].events, None, None))
    r1 = evaluate_model(net, samples, "events", batch_size=2)
    r2 = evaluate_model(net, iter(samples), "events", batch_size=5)
    assert r1["confusion"] == r2["confusion"] and r1["skipped"] == 1 and r1["frames"] == 4
    r3 = evaluate_model(Predictor(data["aps"], "cpu"), samples, "aps")
    assert r3["frames"] == 4 and r3["skipped"] == 1  # the unlabelled sample has no APS either


# ---- errors -------------------------------------------------------------------------------------

def test_clear_errors(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="data not found"):
        evaluate(tmp_path / "missing", event_ckpt=data["ev"], progress=False)
    with pytest.raises(ValueError, match="--aps-ckpt, --event-ckpt or both"):
        evaluate(data["png"], progress=False)
    with pytest.raises(ValueError, match="is an APS-frame network"):
        evaluate(data["png"], event_ckpt=data["aps"], progress=False)
    with pytest.raises(ValueError, match="is an event network"):
        evaluate(data["png"], aps_ckpt=data["ev"], progress=False)
    # unmatched image / label names
    bad = tmp_path / "unmatched"
    shutil.copytree(data["png"], bad)
    (bad / "labels" / "test" / "0002.png").unlink()
    with pytest.raises(ValueError, match="0002"):
        evaluate(bad, event_ckpt=data["ev"], progress=False)
    # wrong label values
    wrong = tmp_path / "wrong"
    shutil.copytree(data["png"], wrong)
    write_png(wrong / "labels" / "test" / "0001.png", np.full((H, W), 7, np.uint8))
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        evaluate(wrong, event_ckpt=data["ev"], progress=False)


def test_checkpoint_that_does_not_fit(data, tmp_path):
    six = save_checkpoint(tmp_path / "six.pt", tiny(6, 5), {"representation": {"name": "evsegnet_6ch", "params": {},
                                                                               "window_ns": 50_000_000}})
    with pytest.raises(ValueError, match="reads 'evsegnet_6ch'.*holds 'evdistill_2ch'"):
        evaluate(data["png"], event_ckpt=six, progress=False)
    two = save_checkpoint(tmp_path / "two.pt", tiny(2, 5), {"representation": EV_REP})
    with pytest.raises(ValueError, match="does not fit the data.*3 channel"):
        evaluate(data["png"], event_ckpt=two, progress=False)
    seven = save_checkpoint(tmp_path / "seven.pt", _seven_classes(), {"representation": EV_REP})
    with pytest.raises(ValueError, match="predicts 7 classes"):
        evaluate(data["png"], event_ckpt=seven, progress=False)


def _seven_classes():
    torch.manual_seed(0)
    return build_model(backbone="resnet18", in_channels=3, num_classes=7, aspp_channels=16, decoder_channels=16).eval()


def test_cli_table_json_and_errors(data, tmp_path, capsys):
    from evdistill_ros.cli import main

    out = tmp_path / "r.json"
    rc = main(["evaluate", "--data", str(data["png"]), "--aps-ckpt", str(data["aps"]), "--event-ckpt", str(data["ev"]),
               "--json", str(out), "--latency", "--limit", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| class |") and "latency p50 / p95" in printed
    res = json.loads(out.read_text())
    assert set(res) == {"aps", "events"}
    for block in res.values():
        assert {"miou", "miou_all", "iou", "accuracy", "confusion"} <= set(block)
        assert block["frames"] == 3 and block["latency_ms"]["frames"] == 2  # first batch is warm-up
    rc = main(["evaluate", "--data", str(tmp_path / "nope"), "--event-ckpt", str(data["ev"])])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.count("\n") == 0 and "data not found" in err


def _write_small_bag(path, frame_shape, events_times=None, labels=False, seed=0):
    """Four 50 ms steps of 40x30 events and frames; `frame_shape(k)` the k-th frame's shape,
    `events_times(k, ts)` may disorder the k-th window's sorted times."""
    from evdistill_ros.events import Events
    from evdistill_ros.io.bag_writer import BagWriter

    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000_000_000_000
    with BagWriter(path) as w:
        for k in range(4):
            t = t0 + (k + 1) * 50_000_000
            ts = np.sort(rng.integers(t - 50_000_000, t, 200))
            if events_times is not None:
                ts = events_times(k, ts)
            w.write_events("/davis/left/events", Events(rng.integers(0, 40, 200), rng.integers(0, 30, 200), ts,
                                                        rng.integers(0, 2, 200)), 30, 40, stamp_ns=t)
            w.write_image("/davis/left/image_raw", t, rng.integers(0, 256, frame_shape(k), dtype=np.uint8), "mono8")
            if labels:
                w.write_image("/davis/left/labels", t, rng.integers(0, 6, (30, 40)).astype(np.uint8), "mono8")
    return path

def test_an_empty_frame_is_skipped_and_counted_not_fatal(tmp_path):
    """A 0x0 APS image (a faulty driver) aborted a whole evaluation with OpenCV's raw message; now
    that frame is skipped and counted, the others are scored, training extraction skips it too."""
    import torch

    from evdistill_ros.distill import config as C
    from evdistill_ros.eval.evaluate import evaluate
    from evdistill_ros.io.pair_writer import extract_pairs
    from evdistill_ros.models import build_model, save_checkpoint

    bag = _write_small_bag(tmp_path / "b.bag", lambda k: (0, 0) if k == 2 else (30, 40), labels=True)
    torch.manual_seed(0)
    net = build_model("deeplabv3plus", "mobilenetv2", in_channels=1, num_classes=6, width_mult=0.25,
                      aspp_channels=16, decoder_channels=16).eval()
    ck = save_checkpoint(tmp_path / "aps.pth", net, {"representation": "aps"})
    logs: list[str] = []
    r = evaluate(bag, aps_ckpt=ck, progress=False, log=logs.append)["aps"]
    assert r["frames"] == 3 and r["skipped"]["no_aps"] == 1, r["skipped"]
    # the report names the backend auto chose (and what it measured), beside the one asked for
    assert r["backend_requested"] == "auto" and r["backend"] in r["backend_timings"], r
    cfg = C.load_config(None, [{"data": {"cache_dir": str(tmp_path / "cache")}}])
    extract_pairs(cfg.data.pair_source([str(bag)]), cfg.data.cache_dir, progress=False, log=logs.append)
    assert any("1 empty frame(s) skipped" in s for s in logs), logs


def test_frames_that_change_size_and_events_out_of_order_are_reported(tmp_path):
    """Both passed through evaluation in silence; each recording now says so once."""
    import warnings

    from evdistill_ros.io.samples import iter_bag_samples

    def disorder(k, ts):
        if k == 2:
            ts[100:110] -= 20_000_000  # ten events out of order (less than the reset threshold)
        return ts

    bag = _write_small_bag(tmp_path / "b.bag", lambda k: (30, 40) if k < 3 else (20, 40), disorder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(list(iter_bag_samples(bag))) == 4
    text = " ".join(str(w.message) for w in caught)
    assert "change size (40x20, 40x30)" in text and "arrived out of time order" in text, text
