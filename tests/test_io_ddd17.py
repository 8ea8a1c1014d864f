"""DDD17 recordings (cAER packets in HDF5, ddd20-utils layout) -> bag, against a per-event Python reference."""
from __future__ import annotations

import json
import struct

import h5py
import numpy as np
import pytest

from evdistill_ros.cli import main
from evdistill_ros.events import Events
from evdistill_ros.io.bag import iter_images, read_events
from evdistill_ros.io.ddd17 import convert_ddd17, iter_ddd17_packets

H, W = 260, 346
SYS0 = 1_487_339_175_000_000  # µs, rec1487339175


def polarity_packet(rng, n, t0_us, overflow=0, invalid_every=0):
    """(header bytes, body bytes, reference events as list of (x, y, t_us, p, valid))."""
    x = rng.integers(0, W, n)
    y = rng.integers(0, H, n)
    p = rng.integers(0, 2, n)
    ts = np.sort(rng.integers(t0_us, t0_us + 20_000, n)) & 0x7FFFFFFF
    valid = np.ones(n, int) if not invalid_every else (np.arange(n) % invalid_every != 0).astype(int)
    data = (x.astype(np.uint32) << 17) | (y.astype(np.uint32) << 2) | (p.astype(np.uint32) << 1) | valid.astype(np.uint32)
    body = np.stack([data, ts.astype(np.uint32)], 1).astype("<u4").tobytes()
    head = struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, n, n, int(valid.sum()))
    return head, body, list(zip(x.tolist(), y.tolist(), ts.tolist(), p.tolist(), valid.tolist()))


def frame_packet(rng, t_end_us, overflow=0):
    img = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    head9 = np.array([1, t_end_us - 5000, t_end_us, t_end_us - 4000, t_end_us - 1000, W, H, 0, 0], "<i4")
    body = head9.tobytes() + img.astype("<u2").tobytes()
    head = struct.pack("<hhiiiiii", 2, 1, len(body), 4, overflow, 1, 1, 1)
    return head, body, img


def write_ddd17_fixture(path, seed=0, n_packets=10):
    """A recording in record.py's layout: (R, 3) vlen uint8 rows, padding rows at the end."""
    rng = np.random.default_rng(seed)
    rows, ref_events, ref_frames = [], [], []
    t_us = (1 << 31) - 6 * 30_000  # packet 6 starts at the 31-bit wrap: from there on overflow = 1
    for i in range(n_packets):
        ov = (t_us + i * 30_000) >> 31
        base = (t_us + i * 30_000) & 0x7FFFFFFF
        head, body, evs = polarity_packet(rng, 300 + 50 * i, base, ov, invalid_every=7 if i == 2 else 0)
        rows.append((SYS0 + i * 30_000, head, body))
        ref_events += [(x, y, ((ov << 31) | ts), p) for x, y, ts, p, v in evs if v]
        if i % 3 == 1:
            head, body, img = frame_packet(rng, base + 25_000, ov)
            rows.append((SYS0 + i * 30_000 + 25_000, head, body))
            ref_frames.append((((ov << 31) | (base + 25_000)), img))
        if i == 4:  # a special event packet (timestamp reset marker etc.) is skipped
            rows.append((SYS0 + i * 30_000 + 1, struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 1, 1, 1),
                         np.array([2, base], "<u4").tobytes()))
    with h5py.File(path, "w") as f:
        vlen = h5py.vlen_dtype(np.uint8)
        n_rows = ((len(rows) // 16) + 1) * 16  # pre-allocated blocks leave empty rows
        d = f.create_dataset("dvs/data", (n_rows, 3), dtype=vlen, maxshape=(None, 3), chunks=(8, 3))
        ts = f.create_dataset("dvs/timestamp", (n_rows,), dtype=np.int64)
        for r, (sys_ts, head, body) in enumerate(rows):
            d[r] = [np.frombuffer(str(sys_ts).encode(), np.uint8), np.frombuffer(head, np.uint8),
                    np.frombuffer(body, np.uint8)]
            ts[r] = sys_ts
        f.create_dataset("steering_wheel_angle/data", data=np.array([[SYS0, 1.5], [SYS0 + 1e5, 2.0]]))
        f.create_dataset("steering_wheel_angle/timestamp", data=np.array([SYS0, SYS0 + 100_000]))
    return ref_events, ref_frames


def reference_events(ref, offset_ns=0) -> Events:
    x, y, t, p = (np.array(v) for v in zip(*ref))
    return Events(x, y, t * 1000 + offset_ns, p)


def test_packets_decode_like_the_per_event_reference(tmp_path):
    h5 = tmp_path / "rec.hdf5"
    ref, frames = write_ddd17_fixture(h5)
    pol = [p.events for p in iter_ddd17_packets(h5, chunk_rows=5) if p.events is not None]
    assert Events.concatenate(pol) == reference_events(ref)
    got_frames = [f for p in iter_ddd17_packets(h5) for f in p.frames]
    assert [t for t, _ in got_frames] == [t * 1000 for t, _ in frames]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got_frames, frames))


def test_convert_sensor_time_exact_and_info(tmp_path, capsys):
    h5 = tmp_path / "rec.hdf5"
    ref, frames = write_ddd17_fixture(h5)
    bag = tmp_path / "ddd.bag"
    counts = convert_ddd17(h5, bag, time_origin="sensor", progress=False)
    want = reference_events(ref)
    assert counts["events"] == len(want) and counts["frames"] == len(frames)
    assert read_events(bag, "/dvs/events") == want
    imgs = list(iter_images(bag, "/dvs/image_raw"))
    assert [m.stamp_ns for m in imgs] == [t * 1000 for t, _ in frames]
    assert all(m.encoding == "mono16" and np.array_equal(m.image, f) for m, (_, f) in zip(imgs, frames))
    capsys.readouterr()
    assert main(["info", str(bag), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["topics"]
    assert info["/dvs/events"]["events"] == len(want)
    assert info["/dvs/image_raw"]["messages"] == len(frames)


def test_convert_wall_time_and_mono8_via_cli(tmp_path):
    h5 = tmp_path / "rec.hdf5"
    ref, frames = write_ddd17_fixture(h5, seed=3)
    bag = tmp_path / "w.bag"
    assert main(["convert", "ddd17", str(h5), "--out", str(bag), "--mono8", "--quiet"]) == 0
    first_t_us = ref[0][2]
    want = reference_events(ref, offset_ns=SYS0 * 1000 - first_t_us * 1000)
    assert read_events(bag, "/dvs/events") == want
    imgs = list(iter_images(bag, "/dvs/image_raw"))
    assert all(m.encoding == "mono8" and np.array_equal(m.image, (f >> 8).astype(np.uint8))
               for m, (_, f) in zip(imgs, frames))


def test_bad_files(tmp_path):
    other = tmp_path / "export.hdf5"
    with h5py.File(other, "w") as f:
        f.create_dataset("dvs_frame", data=np.zeros((1, 2, 2, 6)))
    with pytest.raises(ValueError, match="not a DDD17 recording"):
        convert_ddd17(other, tmp_path / "x.bag", progress=False)
    text = tmp_path / "t.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        list(iter_ddd17_packets(text))
    short = tmp_path / "short.hdf5"
    with h5py.File(short, "w") as f:
        d = f.create_dataset("dvs/data", (1, 3), dtype=h5py.vlen_dtype(np.uint8))
        d[0] = [np.frombuffer(b"123", np.uint8), np.frombuffer(struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, 5, 5, 5), np.uint8),
                np.zeros(16, np.uint8)]
    with pytest.raises(ValueError, match="capacity 5"):
        list(iter_ddd17_packets(short))
