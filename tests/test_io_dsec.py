"""DSEC-Semantic in its published layout (h5py + hdf5plugin Blosc/zstd, PNG labels, µs
timestamps), written here and read back event-exact against a plain numpy reference of the
rectification and the window, and label-exact."""
from __future__ import annotations

import numpy as np
import pytest

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
    imgs = [rng.integers(0, 256, (480, 640), dtype=np.uint8) for _ in ts_us]
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
        if 0 <= xr < 640 and 0 <= yr < 480:
            on_sensor.append((i, xr, yr))
    if isinstance(spec.window, ByCount):  # the last N events that land on the sensor
        on_sensor = on_sensor[-spec.window.events:]
    out = np.zeros((2, 480, 640), np.float32)
    for i, xr, yr in on_sensor:
        out[0 if ev.p[i] > 0 else 1, yr, xr] += 1
    return out[:, :440]


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
