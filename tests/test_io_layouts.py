"""Sample iterators (bag, EvDistill PNG, Ev-SegNet, ESS), bag exports, and bad layouts."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import random_events
from evdistill_ros.cli import main
from evdistill_ros.events import ByCount, ByTime, EventInput, Events
from evdistill_ros.io.bag_writer import BagWriter
from evdistill_ros.io.ess import iter_ess, write_ess_recording
from evdistill_ros.io.evdistill_png import event_image, iter_evdistill_png, write_evdistill_sample
from evdistill_ros.io.evsegnet import iter_evsegnet, write_evsegnet_sample
from evdistill_ros.io.png import write_png
from evdistill_ros.io.samples import detect_format, iter_bag_samples, iter_samples, validate_label

H, W = 260, 346
T0 = 1_600_000_000_000_000_000
MS = 1_000_000
COUNT_50MS = EventInput("count", {}, ByTime(50 * MS))


def ref_counts(ev: Events, t0: int, t1: int, height: int = H) -> np.ndarray:
    """(2, H, W) [ON, OFF] counts of events with t0 <= t < t1, by np.add.at."""
    m = (ev.t >= t0) & (ev.t < t1)
    out = np.zeros((2, height, W))
    np.add.at(out, ((ev.p[m] <= 0).astype(int), ev.y[m].astype(int), ev.x[m].astype(int)), 1)
    return out


def write_sim_bag(path, n_frames=6, seed=0):
    rng = np.random.default_rng(seed)
    ev = random_events(30_000, seed=seed, t0=T0, duration_ns=(n_frames + 1) * 40 * MS)
    stamps = [T0 + (k + 1) * 40 * MS + 7 for k in range(n_frames)]
    frames = rng.integers(0, 256, (n_frames, H, W), dtype=np.uint8)
    labels = rng.choice([0, 1, 2, 3, 4, 5, 255], (n_frames, H, W)).astype(np.uint8)
    with BagWriter(path) as w:
        for i in range(0, len(ev), 1000):
            w.write_events("/davis/left/events", ev[i:i + 1000], H, W)
        for k, s in enumerate(stamps):
            w.write_image("/davis/left/image_raw", s, frames[k])
            if k != 2:  # frame 2 has no label
                w.write_image("/davis/left/labels", s, labels[k])
    return ev, stamps, frames, labels


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bag") / "sim.bag"
    return path, *write_sim_bag(path)


def test_bag_samples_match_numpy_windows(sim_bag):
    path, ev, stamps, frames, labels = sim_bag
    samples = list(iter_samples(path, event_input=COUNT_50MS))
    assert [s.t_ns for s in samples] == stamps
    for k, s in enumerate(samples):
        assert np.array_equal(s.events, ref_counts(ev, stamps[k] - 50 * MS, stamps[k]))
        assert s.num_events == int(ref_counts(ev, stamps[k] - 50 * MS, stamps[k]).sum())
        assert np.array_equal(s.aps, frames[k])
        assert (s.label is None) if k == 2 else np.array_equal(s.label, labels[k])
    cropped = next(iter_bag_samples(path, event_input=COUNT_50MS, crop_rows=200))
    assert cropped.events.shape == (2, 200, W) and cropped.aps.shape == (200, W) and cropped.label.shape == (200, W)
    with pytest.raises(ValueError, match="has no label"):
        list(iter_bag_samples(path, event_input=COUNT_50MS, require_labels=True))


def test_export_evdistill_png_reads_back_as_the_counts(sim_bag, tmp_path):
    path, ev, stamps, frames, labels = sim_bag
    out = tmp_path / "evd"
    assert main(["convert", "bag-to-evdistill-png", str(path), "--out", str(out), "--quiet"]) == 0
    assert detect_format(out) == "evdistill-png"
    samples = list(iter_samples(out))
    labelled = [k for k in range(len(stamps)) if k != 2]
    assert len(samples) == len(labelled)
    for k, s in zip(labelled, samples):
        c = ref_counts(ev, stamps[k] - 50 * MS, stamps[k])[:, :200]
        want = np.zeros((3, 200, W))
        for ch in range(2):  # R = ON, G = OFF, each scaled by its own max, rounded to nearest
            want[ch] = np.floor(c[ch] * 255 / c[ch].max() + 0.5) / 255
        assert s.events.dtype == np.float32 and np.allclose(s.events, want, atol=1e-7)
        assert np.array_equal(s.aps, frames[k][:200]) and np.array_equal(s.label, labels[k][:200])


def test_evdistill_png_matches_the_live_representation(sim_bag, tmp_path):
    from evdistill_ros.events import embed

    path, ev, stamps, *_ = sim_bag
    window = ev[(ev.t >= stamps[0] - 50 * MS) & (ev.t < stamps[0])]
    counts = ref_counts(ev, stamps[0] - 50 * MS, stamps[0])
    write_evdistill_sample(tmp_path, "test", "a", counts, np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8))
    s = next(iter_evdistill_png(tmp_path))
    live = embed(window, "evdistill_2ch", height=H, width=W, quantize=True)
    assert np.allclose(s.events, live, atol=1e-6)


def test_export_evsegnet_and_both_orders(sim_bag, tmp_path):
    path, ev, stamps, frames, labels = sim_bag
    out = tmp_path / "evs"
    assert main(["convert", "bag-to-evsegnet", str(path), "--out", str(out), "--window-ms", "50", "--quiet"]) == 0
    assert detect_format(out) == "evsegnet"
    samples = list(iter_samples(out, split="test"))
    assert len(samples) == len(stamps) - 1
    k = 0
    on, off = ref_counts(ev, stamps[k] - 50 * MS, stamps[k])[:, :200]
    assert samples[0].events.shape == (6, 200, W)
    # Ev-SegNet's order: channel 0 = ON count, 1 = OFF count
    assert np.array_equal(samples[0].events[0], on) and np.array_equal(samples[0].events[1], off)
    # writer/reader round trip is exact, in either directory order
    rng = np.random.default_rng(3)
    e = rng.normal(size=(6, 20, 30)).astype(np.float32)
    aps = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    lab = rng.choice([0, 5, 255], (20, 30)).astype(np.uint8)
    write_evsegnet_sample(tmp_path / "a", "train", "x_1", e, aps, lab)
    s = next(iter_evsegnet(tmp_path / "a", "train"))
    assert np.array_equal(s.events, e) and np.array_equal(s.aps, aps) and np.array_equal(s.label, lab)
    b = tmp_path / "b"
    for kind in ("images", "labels", "events"):
        (tmp_path / "a" / "train" / kind).rename((b / kind).mkdir(parents=True) or b / kind / "train")
    s = next(iter_samples(b, "evsegnet", split="train"))
    assert s.name == "x_1" and np.array_equal(s.events, e)


def test_ess_layout(tmp_path):
    ev = random_events(20_000, seed=4, t0=0, duration_ns=400 * MS)
    ft = [100 * MS, 200 * MS, 300 * MS, 390 * MS]
    rng = np.random.default_rng(4)
    labels = {k: rng.choice([0, 1, 255], (200, W)).astype(np.uint8) for k in (1, 3)}
    imgs = {1: rng.integers(0, 256, (H, W), dtype=np.uint8)}
    write_ess_recording(tmp_path / "dir0", ev, ft, labels, imgs, windows_ms=(50,))
    assert detect_format(tmp_path) == "ess"
    samples = list(iter_ess(tmp_path, split="all", event_input=COUNT_50MS))
    assert [s.t_ns for s in samples] == [ft[1], ft[3]]
    for s, k in zip(samples, (1, 3)):
        # the index window: events with frame_t - 50 ms <= t <= frame_t
        assert np.array_equal(s.events, ref_counts(ev, ft[k] - 50 * MS, ft[k] + 1)[:, :200])
        assert np.array_equal(s.label, labels[k])
    assert np.array_equal(samples[0].aps, imgs[1][:200]) and samples[1].aps is None
    n = next(iter_ess(tmp_path / "dir0", event_input=EventInput("count", {}, ByCount(1000))))
    assert n.num_events == 1000
    with pytest.raises(ValueError, match="need the 7 DDD17"):
        list(iter_ess(tmp_path, split="test", event_input=COUNT_50MS))


def test_bad_layouts(tmp_path):
    with pytest.raises(ValueError, match="no such file or directory"):
        list(iter_samples(tmp_path / "nope"))
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="unknown dataset layout"):
        detect_format(tmp_path / "x")
    with pytest.raises(ValueError, match="missing directory"):
        list(iter_samples(tmp_path / "x", "evdistill-png"))
    with pytest.raises(ValueError, match="not an Ev-SegNet dataset"):
        list(iter_samples(tmp_path / "x", "evsegnet"))
    root = tmp_path / "evd"
    counts = np.ones((2, 4, 6))
    write_evdistill_sample(root, "test", "a", counts, np.zeros((4, 6), np.uint8), np.zeros((4, 6), np.uint8))
    write_png(root / "images" / "test" / "b.png", np.zeros((4, 12, 3), np.uint8))
    with pytest.raises(ValueError, match="no label file"):
        list(iter_samples(root))
    write_png(root / "labels" / "test" / "b.png", np.full((4, 6), 7, np.uint8))
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        list(iter_samples(root))
    write_png(root / "labels" / "test" / "b.png", np.zeros((4, 6), np.uint8))
    write_png(root / "images" / "test" / "b.png", np.zeros((4, 13, 3), np.uint8))
    with pytest.raises(ValueError, match="side-by-side"):
        list(iter_samples(root))
    with pytest.raises(ValueError, match="label values"):
        validate_label(np.array([[0, 6]]), "x")
    assert validate_label(np.array([[0, 5, 255]], np.int64), "x").dtype == np.uint8
    with pytest.raises(ValueError, match="counts must be"):
        event_image(np.ones((3, 2, 2)))


def test_export_needs_labels(tmp_path):
    bag = tmp_path / "nolabels.bag"
    with BagWriter(bag) as w:
        w.write_events("/davis/left/events", random_events(100, t0=T0), H, W)
        w.write_image("/davis/left/image_raw", T0 + 60 * MS, np.zeros((H, W), np.uint8))
    assert main(["convert", "bag-to-evsegnet", str(bag), "--out", str(tmp_path / "o"), "--quiet"]) == 1


def test_export_into_a_full_disk_leaves_no_set_that_looks_whole(sim_bag, full_disk):
    """bag-to-evdistill-png into a full disk left 87 complete PNGs with no sign the set was cut."""
    from evdistill_ros.io.convert import export_bag

    path = sim_bag[0]
    small = full_disk("24k")
    for out in (small / "new", small / "existing"):
        if out.name == "existing":
            (out / "images" / "train").mkdir(parents=True)
            (out / "images" / "train" / "keep.png").write_bytes(b"x")
        with pytest.raises((OSError, ValueError), match="cannot write|No space"):
            export_bag(path, out, "evdistill-png", crop_rows=None, progress=False)
        left = sorted(str(p.relative_to(small)) for p in small.rglob("*") if p.is_file())
        assert left == ([] if out.name == "new" else ["existing/images/train/keep.png"]), left
