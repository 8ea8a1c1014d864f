"""MVSEC HDF5 -> bag: exact events and frames, message packing, timestamp rounding, bad files."""
from __future__ import annotations

import json
from fractions import Fraction

import h5py
import numpy as np
import pytest

from conftest import random_events
from evdistill_ros.cli import main
from evdistill_ros.events import Events
from evdistill_ros.io.bag import bag_info, iter_event_messages, iter_images, read_events
from evdistill_ros.io.mvsec import convert_mvsec, ns_to_seconds, seconds_to_ns
from evdistill_ros.io.presets import PRESETS, detect_preset, preset

T0 = 1_506_117_000_000_000_000  # MVSEC outdoor_day epoch, ns


def write_mvsec_fixture(path, n=20_000, n_frames=12, seed=0, duration_ns=400_000_000):
    """An MVSEC *_data.hdf5 with its published layout (left camera)."""
    rng = np.random.default_rng(seed)
    ev = random_events(n, seed=seed, t0=T0, duration_ns=duration_ns)
    ev = Events(ev.x, ev.y, ev.t // 1000 * 1000, ev.p)  # DAVIS clocks tick in µs
    frame_ns = np.sort(rng.choice(np.arange(T0, T0 + duration_ns, 1000), n_frames, replace=False))
    frames = rng.integers(0, 256, (n_frames, 260, 346), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        g = f.create_group("davis/left")
        rows = np.stack([ev.x.astype(np.float64), ev.y.astype(np.float64), ns_to_seconds(ev.t),
                         np.where(ev.p > 0, 1.0, -1.0)], 1)
        g.create_dataset("events", data=rows, chunks=(4096, 4))
        g.create_dataset("image_raw", data=frames, chunks=(1, 260, 346))
        g.create_dataset("image_raw_ts", data=ns_to_seconds(frame_ns))
        g.create_dataset("image_raw_event_inds", data=np.searchsorted(ev.t, frame_ns))
    return ev, frame_ns, frames


def test_seconds_to_ns_rounds_to_the_exact_microsecond(rng):
    us = rng.integers(1_000_000_000_000_000, 4_000_000_000_000_000, 20_000)  # 2001..2096 in µs
    ns = us * 1000
    assert np.array_equal(seconds_to_ns(ns_to_seconds(ns)), ns)
    # arbitrary doubles: the nearest microsecond of the exact binary value (Fraction is exact)
    t = rng.uniform(1.4e9, 1.6e9, 300)
    want = [int(round(Fraction(float(v)) * 10**6)) * 1000 for v in t]
    assert seconds_to_ns(t).tolist() == want


def test_convert_keeps_events_and_frames_exactly(tmp_path):
    h5 = tmp_path / "outdoor_day1_data.hdf5"
    ev, frame_ns, frames = write_mvsec_fixture(h5)
    bag = tmp_path / "out.bag"
    counts = convert_mvsec(h5, bag, progress=False, chunk=3000)  # chunks smaller than messages
    assert counts["events"] == len(ev) and counts["frames"] == len(frames)
    assert read_events(bag, "/davis/left/events") == ev
    back = list(iter_images(bag, "/davis/left/image_raw"))
    assert [m.stamp_ns for m in back] == frame_ns.tolist()
    assert all(m.encoding == "mono8" and np.array_equal(m.image, f) for m, f in zip(back, frames))
    # ~30 Hz messages: each message lies inside one 1/30 s slot of event time, slots in order
    slots = []
    for _, msg in iter_event_messages(bag, "/davis/left/events"):
        s = np.unique(msg.events.t // 33_333_333)
        assert len(s) == 1 and msg.stamp_ns == msg.events.t[-1]
        slots.append(int(s[0]))
    assert slots == sorted(slots) and len(slots) == len(set(slots)) == counts["messages"]
    assert detect_preset(bag).name == "mvsec"


def test_convert_by_event_count_and_info_json(tmp_path, capsys):
    h5 = tmp_path / "d.hdf5"
    ev, frame_ns, _ = write_mvsec_fixture(h5, n=5_003, n_frames=3)
    bag = tmp_path / "n.bag"
    assert main(["convert", "mvsec", str(h5), "--out", str(bag), "--max-events", "1000", "--quiet"]) == 0
    sizes = [len(m.events) for _, m in iter_event_messages(bag)]
    assert sizes == [1000] * 5 + [3]
    capsys.readouterr()
    assert main(["info", str(bag), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["topics"]
    e = info["/davis/left/events"]
    assert e["events"] == len(ev) and e["messages"] == 6
    assert e["first_event_ns"] == int(ev.t[0]) and e["last_event_ns"] == int(ev.t[-1])
    assert e["sensor_size"] == {"height": 260, "width": 346}
    assert info["/davis/left/image_raw"]["messages"] == 3
    assert bag_info(bag)["topics"]["/davis/left/image_raw"]["type"] == "sensor_msgs/Image"


def test_bad_inputs_fail_with_one_line(tmp_path, capsys):
    gt = tmp_path / "outdoor_day1_gt.hdf5"
    with h5py.File(gt, "w") as f:
        f.create_dataset("davis/left/depth_image_raw", data=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="no davis/left/events"):
        convert_mvsec(gt, tmp_path / "x.bag", progress=False)
    assert main(["convert", "mvsec", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path / "x.bag")]) == 1
    assert "no such MVSEC file" in capsys.readouterr().err
    bad = tmp_path / "frac.hdf5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("davis/left/events", data=np.array([[1.5, 2.0, 1.5e9, 1.0]]))
    with pytest.raises(ValueError, match="not integers"):
        convert_mvsec(bad, tmp_path / "y.bag", progress=False)
    assert not (tmp_path / "y.bag").exists()


def test_presets():
    assert preset("sim").labels == "/davis/left/labels" and preset("davis").events == "/dvs/events"
    assert PRESETS["mvsec"].with_overrides(image="/x").image == "/x"
    with pytest.raises(ValueError, match="known: mvsec"):
        preset("nope")
