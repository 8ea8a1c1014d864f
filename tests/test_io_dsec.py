"""DSEC-Semantic in its published layout (h5py + hdf5plugin Blosc/zstd, PNG labels, µs
timestamps), written here and read back event-exact against a plain numpy reference of the
rectification and the window, and label-exact."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from evdistill_ros.classes import DSEC11, DSEC19, class_map
from evdistill_ros.events import ByCount, ByTime, EventInput, Events
from evdistill_ros.io import dsec
from evdistill_ros.io.samples import detect_format, iter_samples

T_OFFSET_US = 1_627_000_000_000_000  # DSEC's times are µs of the day's GPS clock: large


def _rectify_map(rng) -> np.ndarray:
    """A distortion-like map: scaled about the centre, shifted, with a ripple; the borders fall
    off the sensor (as DSEC's corners do)."""
    gy, gx = np.mgrid[0:480, 0:640].astype(np.float32)
    rx = 320 + (gx - 320) * 1.04 + 1.3 + 0.8 * np.sin(gy / 23.0)
    ry = 240 + (gy - 240) * 1.04 - 2.2 + 0.6 * np.cos(gx / 31.0)
    return np.stack([rx, ry], -1).astype(np.float32) + rng.normal(0, 0.01, (480, 640, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    rng = np.random.default_rng(7)
    n, t0_ns = 400_000, (T_OFFSET_US + 5_000) * 1000
    t = np.sort(rng.integers(t0_ns, t0_ns + 1_000_000_000, n))  # 1 s
    ev = Events(rng.integers(0, 640, n), rng.integers(0, 480, n), t, rng.integers(0, 2, n))
    ts_us = (T_OFFSET_US + 5_000 + np.arange(120_000, 1_000_000, 50_000)).astype(np.int64)
    lab19 = [rng.integers(0, 19, (440, 640)).astype(np.uint8) for _ in ts_us]
    for lab in lab19:
        lab[:5] = 255
    lab11 = [class_map(DSEC19, DSEC11)[lab] for lab in lab19]
    imgs = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in ts_us]  # ev_inf frames are colour
    rmap = _rectify_map(rng)
    seq = dsec.write_dsec_sequence(tmp_path_factory.mktemp("dsec") / "test" / "zurich_city_13_a", ev, ts_us,
                                   labels11=lab11, labels19=lab19, rectify_map=rmap, images=imgs,
                                   t_offset_us=T_OFFSET_US)
    return {"path": seq, "events": ev, "ts_us": ts_us, "lab11": lab11, "lab19": lab19, "imgs": imgs, "map": rmap}


def _reference_count(seq: dict, t_end_ns: int, spec: EventInput) -> np.ndarray:
    """Plain numpy: the window's events, each rectified through the map one by one, counted."""
    ev, rmap = seq["events"], seq["map"]
    on_sensor = []  # (index, x, y) of the events before t_end that land on the sensor, latest last
    for i in range(int(np.searchsorted(ev.t, t_end_ns, side="left"))):
        if isinstance(spec.window, ByTime) and ev.t[i] < t_end_ns - spec.window.window_ns:
            continue
        x, y = int(ev.x[i]), int(ev.y[i])
        xr, yr = int(np.rint(rmap[y, x, 0])), int(np.rint(rmap[y, x, 1]))
        if 0 <= xr < 640 and 0 <= yr < 440:  # on the sensor and above the hood ESS cuts
            on_sensor.append((i, xr, yr))
    if isinstance(spec.window, ByCount):  # the last N events that land on the sensor
        on_sensor = on_sensor[-spec.window.events:]
    out = np.zeros((2, 440, 640), np.float32)
    for i, xr, yr in on_sensor:
        out[0 if ev.p[i] > 0 else 1, yr, xr] += 1
    return out


@pytest.mark.parametrize("window", [ByTime(50_000_000), ByCount(20_000)])
def test_dsec_reads_back_event_exact_after_rectification(sequence, window, monkeypatch):
    monkeypatch.setattr(dsec, "CHUNK_EVENTS", 30_000)  # many chunks: windows straddle reads
    spec = EventInput("count", {}, window)
    samples = list(dsec.iter_dsec(sequence["path"], event_input=spec, label_every=3))
    assert [s.t_ns for s in samples] == [int(t) * 1000 for t in sequence["ts_us"][::3]]
    for k, s in zip(range(0, len(sequence["ts_us"]), 3), samples):
        assert s.events.shape == (2, 440, 640)
        np.testing.assert_array_equal(s.events, _reference_count(sequence, s.t_ns, spec))
        np.testing.assert_array_equal(s.label, sequence["lab11"][k])
        np.testing.assert_array_equal(s.aps, sequence["imgs"][k][:440])


def test_dsec_files_use_the_published_filters_and_layout(sequence):
    import h5py

    import hdf5plugin  # noqa: F401

    with h5py.File(sequence["path"] / "events" / "left" / "events.h5", "r") as f:
        assert set(f) == {"events", "ms_to_idx", "t_offset"} and set(f["events"]) == {"x", "y", "t", "p"}
        assert "32001" in f["events/t"]._filters  # Blosc (hdf5plugin), as DSEC ships them
        assert f["events/t"].dtype == np.uint32 and f["events/x"].dtype == np.uint16
        t = f["events/t"][()]
        ms = f["ms_to_idx"][()].astype(np.int64)
    # DSEC's definition: t[ms_to_idx[ms]] >= ms*1000 > t[ms_to_idx[ms] - 1]
    for m in (0, 1, 250, len(ms) - 1):
        i = ms[m]
        assert i == len(t) or t[i] >= m * 1000
        assert i == 0 or t[i - 1] < m * 1000


def test_dsec_19_classes_format_detection_and_errors(sequence, tmp_path):
    root = sequence["path"].parents[1]
    assert detect_format(root) == "dsec" and detect_format(sequence["path"]) == "dsec"
    s19 = list(iter_samples(root, format="dsec", classes=19, need_events=False, images=False))
    assert len(s19) == len(sequence["ts_us"]) and s19[0].events is None and s19[0].aps is None
    np.testing.assert_array_equal(s19[4].label, sequence["lab19"][4])
    with pytest.raises(ValueError, match="11 or 19"):
        next(dsec.iter_dsec(root, classes=6))
    with pytest.raises(ValueError, match="no DSEC sequences"):
        dsec.sequences(root, "train")
    # a label of another class set is refused with the file named
    bad = sequence["path"].parent.parent.parent / "bad" / "test" / "zurich_city_14_c"
    dsec.write_dsec_sequence(bad, sequence["events"], sequence["ts_us"][:2], labels11=sequence["lab11"][:2],
                             t_offset_us=T_OFFSET_US)
    (bad / "semantic" / "timestamps.txt").write_text("1\n")
    with pytest.raises(ValueError, match="2 label PNGs but 1 timestamps"):
        next(dsec.iter_dsec(bad))
    (bad / "semantic" / "timestamps.txt").write_text("".join(f"{t}\n" for t in sequence["ts_us"][:2]))
    (bad / "events" / "left" / "rectify_map.h5").unlink()
    with pytest.raises(ValueError, match="no readable rectify_map"):
        next(dsec.iter_dsec(bad))


def _net(tmp_path, name: str, classes, representation) -> str:
    import torch

    from evdistill_ros.models import build_model, save_checkpoint

    torch.manual_seed(0)
    net = build_model("deeplabv3plus", "mobilenetv2", in_channels=2 if representation != "aps" else 1,
                      num_classes=classes.num_classes, width_mult=0.25, aspp_channels=16, decoder_channels=16).eval()
    return str(save_checkpoint(tmp_path / name, net, {"representation": representation, **classes.to_dict()}))


def test_evaluate_dsec_names_its_classes_and_refuses_another_set(sequence, tmp_path, capsys):
    from evdistill_ros.classes import DDD17
    from evdistill_ros.cli import main

    spec = EventInput("count", {}, ByTime(50_000_000)).to_dict()
    dsec_net, ddd_net = _net(tmp_path, "dsec.pth", DSEC11, spec), _net(tmp_path, "ddd.pth", DDD17, spec)
    root = str(sequence["path"].parents[1])
    out_json = tmp_path / "r.json"
    assert main(["evaluate", "--data", root, "--format", "dsec", "--event-ckpt", dsec_net, "--limit", "3",
                 "--json", str(out_json), "--no-progress"]) == 0
    table = capsys.readouterr().out
    for name in DSEC11.names:
        assert f"| {name} |" in table
    import json

    r = json.loads(out_json.read_text())["events"]
    assert r["class_set"] == "dsec11" and r["frames"] == 3 and list(r["iou"]) == list(DSEC11.names)
    # a DDD17 network on DSEC labels: one line, with the way out
    assert main(["evaluate", "--data", root, "--event-ckpt", ddd_net, "--limit", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "predicts ddd17" in err[0] and "--class-map ddd17" in err[0], err
    assert main(["evaluate", "--data", root, "--event-ckpt", ddd_net, "--limit", "2", "--class-map", "ddd17",
                 "--json", str(out_json), "--no-progress"]) == 0
    r = json.loads(out_json.read_text())["events"]
    assert r["class_set"] == "ddd17" and list(r["iou"]) == list(DDD17.names)
    # the 19-class labels, scored in 11 classes by mapping them
    assert main(["evaluate", "--data", root, "--dsec-classes", "19", "--event-ckpt", dsec_net, "--limit", "2",
                 "--class-map", "dsec11", "--no-progress"]) == 0
    # figures follow the class set: five panels in DSEC's colours, the confusion figure from the JSON
    assert main(["visualize", "--data", root, "--event-ckpt", dsec_net, "--num", "2", "--out", str(tmp_path / "viz"),
                 "--metrics", str(out_json), "--no-progress"]) == 0
    assert (tmp_path / "viz" / "panels.png").is_file() and (tmp_path / "viz" / "confusion_events.png").is_file()
    assert main(["visualize", "--data", root, "--event-ckpt", ddd_net, "--num", "1", "--out", str(tmp_path / "v2"),
                 "--no-progress"]) == 1
    assert "--class-map ddd17" in capsys.readouterr().err


def test_dsec_converts_to_a_bag_that_gives_the_same_windows(sequence, tmp_path, capsys):
    """The bag path (what the live nodes and training read) and the DSEC reader agree exactly."""
    from evdistill_ros.cli import main
    from evdistill_ros.io.samples import iter_bag_samples

    bag = tmp_path / "seq.bag"
    assert main(["convert", "dsec", str(sequence["path"]), "--out", str(bag), "--quiet"]) == 0
    assert main(["info", str(sequence["path"].parents[1])]) == 0
    assert "DSEC sequence" in capsys.readouterr().out
    spec = EventInput("count", {}, ByTime(50_000_000), topic="/dsec/left/events")
    direct = list(dsec.iter_dsec(sequence["path"], event_input=spec, label_every=4))
    via_bag = [s for s in iter_bag_samples(bag, event_input=spec, classes=DSEC11)][::4]
    assert len(direct) == len(via_bag) > 3
    for a, b in zip(direct, via_bag):
        assert a.t_ns == b.t_ns
        np.testing.assert_array_equal(a.events, b.events)
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_array_equal(a.aps, b.aps)


@pytest.mark.parametrize("frame", ["gray", "rgb"])
def test_evdistill_trains_on_a_dsec_bag_in_its_class_set(sequence, tmp_path, frame):
    """config/dsec.yaml on a converted sequence: a teacher on the ev_inf frames (grey or colour, as
    data.frame says) with the 11-class labels, then the label-free EvDistill student; both
    checkpoints predict dsec11, the teacher takes the frames it was trained on, and a DDD17
    teacher or one of the other frame kind is refused for a DSEC student in one line."""
    from evdistill_ros.classes import class_set_of
    from evdistill_ros.distill.config import load_config
    from evdistill_ros.distill.trainer import run_training
    from evdistill_ros.io.dsec import convert_dsec
    from evdistill_ros.models import read_metadata

    bag = tmp_path / "seq.bag"
    convert_dsec(sequence["path"], bag, progress=False)
    over = {"data": {"cache_dir": str(tmp_path / "cache"), "resize": [44, 64], "representation": "voxel_grid",
                     "representation_params": {"bins": 3}, "frame": frame},
            "model": {"backbone": "mobilenetv2", "width_mult": 0.25, "aspp_channels": 16, "decoder_channels": 16},
            "augment": {"crop": [32, 48]},
            "train": {"steps": 2, "batch_size": 2, "num_workers": 0, "log_every": 1, "image_every": 0, "val_every": 0,
                      "ckpt_every": 2, "out_dir": str(tmp_path / "runs"), "device": "cpu", "threads": 1, "amp": False},
            "teacher": {"steps": 2}, "student": {"steps": 2}}
    cfg = load_config(REPO / "config" / "dsec.yaml", [over])
    teacher = run_training(cfg, [str(bag)], "teacher", progress=False, log=lambda s: None)
    student = run_training(cfg, [str(bag)], "student", method="evdistill", teacher=str(teacher), progress=False,
                           log=lambda s: None)
    for ckpt in (teacher, student):
        meta = read_metadata(ckpt)
        assert class_set_of(meta) == DSEC11 and meta["num_classes"] == 11
    t_meta = read_metadata(teacher)
    channels = 3 if frame == "rgb" else 1
    assert t_meta["in_channels"] == channels and t_meta["preprocessing"]["frame"] == frame
    assert len(t_meta["preprocessing"]["mean"]) == channels == len(t_meta["preprocessing"]["std"])
    if frame == "rgb":  # colour statistics per channel: the fixture's random channels differ
        assert len(set(t_meta["preprocessing"]["mean"])) == 3
    # the teacher scored and drawn on the sequence itself: evaluation hands it the frame kind it trained on
    from evdistill_ros.cli import main

    root, out_json = str(sequence["path"].parents[1]), tmp_path / "t.json"
    assert main(["evaluate", "--data", root, "--aps-ckpt", str(teacher), "--event-ckpt", str(student), "--limit", "2",
                 "--json", str(out_json), "--no-progress"]) == 0
    import json

    r = json.loads(out_json.read_text())
    assert r["aps"]["frames"] == 2 == r["events"]["frames"] and r["aps"]["class_set"] == "dsec11"
    assert main(["visualize", "--data", root, "--aps-ckpt", str(teacher), "--num", "1", "--out", str(tmp_path / "v"),
                 "--no-progress"]) == 0
    other = "gray" if frame == "rgb" else "rgb"
    other_cfg = load_config(REPO / "config" / "dsec.yaml", [{**over, "data": {**over["data"], "frame": other}}])
    with pytest.raises(ValueError, match=f"takes {frame} frames but data.frame is {other}"):
        run_training(other_cfg, [str(bag)], "student", method="kd", teacher=str(teacher), progress=False,
                     log=lambda s: None)
    # a teacher of another class set is mapped into the student's (dsec11 -> ddd17, the real-teacher
    # issue); one whose classes do not map onto the student's is refused before any work
    sim_cfg = load_config(None, [{**over, "data": {**over["data"], "class_set": "sim"}}])
    with pytest.raises(ValueError, match="predicts dsec11.*the student learns sim.*no mapping"):
        run_training(sim_cfg, [str(bag)], "student", method="kd", teacher=str(teacher), progress=False,
                     log=lambda s: None)
