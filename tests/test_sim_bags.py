"""Simulated bags: determinism, physics checks (static, brightening, speed), labels, bag tools."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from evdistill_ros.io.bag import bag_info, iter_event_messages, iter_images, read_events
from evdistill_ros.sim import (CAMERA_INFO_TOPIC, EVENTS_TOPIC, IMAGE_TOPIC, LABELS_TOPIC, simulate_dataset,
                               simulate_sequence)
from evdistill_ros.sim.render import Camera

SMALL = dict(width=64, height=48)


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "a.bag"
    stats = simulate_sequence(path, seconds=0.5, seed=11, width=96, height=72)
    return path, stats


def test_same_seed_same_bag(small_bag, tmp_path):
    path, stats = small_bag
    again = simulate_sequence(tmp_path / "b.bag", seconds=0.5, seed=11, width=96, height=72)
    assert path.read_bytes() == (tmp_path / "b.bag").read_bytes()
    assert again["events"] == stats["events"] > 1000
    other = simulate_sequence(tmp_path / "c.bag", seconds=0.5, seed=12, width=96, height=72)
    assert read_events(tmp_path / "c.bag") != read_events(path) and other["events"] != stats["events"]


def test_topics_counts_and_bag_info(small_bag):
    path, stats = small_bag
    info = bag_info(path)["topics"]
    assert info[EVENTS_TOPIC]["type"] == "dvs_msgs/EventArray"
    assert info[EVENTS_TOPIC]["messages"] == stats["packets"] == 15  # 30 Hz packets
    assert info[EVENTS_TOPIC]["events"] == stats["events"]
    assert info[EVENTS_TOPIC]["sensor_size"] == {"height": 72, "width": 96}
    for topic in (IMAGE_TOPIC, LABELS_TOPIC, CAMERA_INFO_TOPIC):
        assert info[topic]["messages"] == stats["frames"] == 10  # 20 Hz frames
    ev = read_events(path)
    assert ev.is_time_sorted() and ev.x.max() < 96 and ev.y.max() < 72
    assert ev.t[0] >= 1_600_000_000 * 10 ** 9 and ev.t[-1] <= 1_600_000_000 * 10 ** 9 + 500_000_000
    # packets: consecutive 1/30 s slices stamped with their last event
    for _, msg in iter_event_messages(path, EVENTS_TOPIC):
        assert msg.stamp_ns == msg.events.t[-1] and np.ptp(msg.events.t) < 34_000_000


def test_labels_align_with_frames_and_geometry(small_bag):
    path, stats = small_bag
    frames = list(iter_images(path, IMAGE_TOPIC))
    labels = list(iter_images(path, LABELS_TOPIC))
    assert [f.stamp_ns for f in frames] == [lb.stamp_ns for lb in labels]
    assert np.all(np.diff([f.stamp_ns for f in frames]) == 50_000_000)
    cam = Camera.davis(96, 72)
    for f, lb in zip(frames, labels):
        assert f.encoding == lb.encoding == "mono8" and lb.image.shape == f.image.shape == (72, 96)
        lab = lb.image
        assert set(np.unique(lab)) <= {0, 1, 2, 3, 4, 5, 255}
        bottom = lab[-6:, 24:72]
        assert np.mean(bottom == 0) > 0.95  # road right in front of the car
        above = lab[: int(cam.cy) - 6]
        assert not np.any(above == 0)  # no ground above the horizon
    freq = stats["class_frequency"]
    assert freq["flat"] > 0.25 and freq["background"] > 0.2


def test_static_scene_gives_only_noise(tmp_path):
    rate = 3.0
    stats = simulate_sequence(tmp_path / "s.bag", seconds=0.5, seed=2, speed=0.0, moving_objects=False,
                              noise_rate_hz=rate, hot_pixel_fraction=0.0, **SMALL)
    expected = rate * 64 * 48 * 0.5
    assert abs(stats["events"] - expected) < 5 * np.sqrt(expected)
    quiet = simulate_sequence(tmp_path / "q.bag", seconds=0.3, seed=2, speed=0.0, moving_objects=False,
                              noise_rate_hz=0.0, hot_pixel_fraction=0.0, **SMALL)
    assert quiet["events"] == 0


def test_brightening_scene_gives_positive_events(tmp_path):
    stats = simulate_sequence(tmp_path / "b.bag", seconds=0.3, seed=4, speed=0.0, moving_objects=False,
                              illumination_ramp=3.0, noise_rate_hz=0.2, **SMALL)
    ev = read_events(tmp_path / "b.bag")
    # log intensity rises by 0.9 in 0.3 s: about 3 ON events per pixel, OFF only from noise
    assert stats["events"] > 2 * 64 * 48 and ev.positive.mean() > 0.97
    frames = [m.image.mean() for m in iter_images(tmp_path / "b.bag", IMAGE_TOPIC)]
    assert frames[-1] > frames[0] or frames[-1] >= 250  # auto exposure lags the ramp


def test_event_count_grows_with_speed(tmp_path):
    counts = [simulate_sequence(tmp_path / f"v{v}.bag", seconds=0.4, seed=5, speed=v, moving_objects=False,
                                noise_rate_hz=0.0, hot_pixel_fraction=0.0, **SMALL)["events"] for v in (2.0, 8.0)]
    assert counts[1] > 1.8 * counts[0] > 0


def test_night_frames_dark_but_events_alive(tmp_path):
    day = simulate_sequence(tmp_path / "d.bag", seconds=0.3, seed=6, speed=8.0, **SMALL)
    night = simulate_sequence(tmp_path / "n.bag", seconds=0.3, seed=6, speed=8.0, night=True, **SMALL)
    d = np.mean([m.image.mean() for m in iter_images(tmp_path / "d.bag", IMAGE_TOPIC)])
    n_img = [m.image for m in iter_images(tmp_path / "n.bag", IMAGE_TOPIC)]
    assert np.mean([i.mean() for i in n_img]) < 0.6 * d
    assert night["exposure_s"] > 3 * day["exposure_s"]
    assert night["events"] > 0.3 * day["events"]


def test_dataset_manifest_and_bad_input(tmp_path):
    m = simulate_dataset(tmp_path / "ds", sequences=2, seconds=0.2, seed=1, progress=False, **SMALL)
    saved = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert saved["seed"] == 1 and len(saved["bags"]) == 2 and saved["parameters"]["width"] == 64
    assert {b["path"] for b in saved["bags"]} == {"seq_000.bag", "seq_001.bag"}
    assert abs(sum(saved["class_frequency"].values()) - 1) < 1e-3 and m["bags"][0]["frames"] == 4
    with pytest.raises(ValueError, match="unknown parameter"):
        simulate_sequence(tmp_path / "x.bag", seconds=0.1, bogus=1)
    with pytest.raises(ValueError, match="seconds"):
        simulate_sequence(tmp_path / "x.bag", seconds=0.0)
    r = subprocess.run([sys.executable, "-m", "evdistill_ros.cli", "simulate", "--out", str(tmp_path / "o"),
                        "--width", "8"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "sensor size" in r.stderr


@pytest.mark.ros
def test_rosbag_info_reads_simulated_bag(small_bag):
    path, stats = small_bag
    if shutil.which("rosbag") is None:
        pytest.skip("rosbag not in PATH")
    out = subprocess.run(["rosbag", "info", "--yaml", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "dvs_msgs/EventArray" in text and "sensor_msgs/Image" in text and "sensor_msgs/CameraInfo" in text
    assert f"messages: {stats['packets'] + 3 * stats['frames']}" in text
    assert "start: 1600000000" in text


def test_sim_labels_in_the_richer_set_map_exactly_onto_ddd17(tmp_path):
    """`classes="sim"` writes the renderer's 12 classes (small ones apart); mapped with
    classes.class_map they are exactly the default DDD17 labels of the same seed."""
    from evdistill_ros.classes import DDD17, SIM, class_map
    from evdistill_ros.io.bag import Bag
    from evdistill_ros.sim import simulate_sequence

    stats = {}
    for cs in ("ddd17", "sim"):
        stats[cs] = simulate_sequence(tmp_path / f"{cs}.bag", seconds=0.5, seed=21, width=96, height=72, classes=cs)
    with Bag(tmp_path / "ddd17.bag") as a, Bag(tmp_path / "sim.bag") as b:
        six = [m.image for m in a.images("/davis/left/labels")]
        rich = [m.image for m in b.images("/davis/left/labels")]
    assert len(six) == len(rich) > 0
    lut = class_map(SIM, DDD17)
    for s, r in zip(six, rich):
        np.testing.assert_array_equal(lut[r], s)
    present = {SIM.names[i] for i in np.unique(np.concatenate([r.ravel() for r in rich]))}
    assert {"road", "sidewalk", "sky", "terrain"} <= present <= set(SIM.names), present
    assert set(stats["sim"]["class_pixels"]) == set(SIM.names)
