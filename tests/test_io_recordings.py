"""Recordings that are not bags: DV's AEDAT4 (the real DAVIS346 file in shared/data/real) and
Prophesee RAW (EVT 2.0 / EVT 3.0 files written here to the published specification).

The AEDAT4 reader is held against iniVation's own library (dv-processing), event-exact and
frame-exact; the RAW decoders against plain-Python decoders of the specification.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evdistill_ros.events import Events
from evdistill_ros.io.bag import Bag, BagError, bag_info, open_recording, read_events, recording_kind
from evdistill_ros.io.recordings import EVENTS_TOPIC, EXPOSURE_TOPIC, IMAGE_TOPIC, IMU_TOPIC, RawRecording
from evdistill_ros.io.samples import detect_format, iter_bag_samples
from evdistill_ros.wire import reference
from evdistill_ros.wire.prophesee import encode_evt2, encode_evt3, raw_header_bytes

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "sample.aedat4"
needs_sample = pytest.mark.skipif(not SAMPLE.is_file(), reason="the real recording ../shared/data/real is not here")


def _dv_reading(path: Path):
    dv = pytest.importorskip("dv_processing")
    rec = dv.io.MonoCameraRecording(str(path))
    batches = []
    while (b := rec.getNextEventBatch()) is not None:
        batches.append(b.numpy())
    ev = np.concatenate(batches)
    frames = []
    while (f := rec.getNextFrame()) is not None:
        frames.append((int(f.timestamp), int(f.exposure.total_seconds() * 1e6 + 0.5), f.image.copy()))
    return ev, frames


@needs_sample
def test_aedat4_reads_the_real_davis346_exactly():
    ev_ref, frames_ref = _dv_reading(SAMPLE)
    got = read_events(SAMPLE)
    assert len(got) == len(ev_ref) == 6676 and int((got.p > 0).sum()) == 3563
    np.testing.assert_array_equal(got.t, ev_ref["timestamp"] * 1000)  # µs since the epoch -> ns
    np.testing.assert_array_equal(got.x, ev_ref["x"])
    np.testing.assert_array_equal(got.y, ev_ref["y"])
    np.testing.assert_array_equal(got.p, ev_ref["polarity"])
    with open_recording(SAMPLE) as rec:
        assert rec.kind == "aedat4" and recording_kind(SAMPLE) == "aedat4"
        frames = list(rec.images(IMAGE_TOPIC))
        exposures = [int.from_bytes(raw, "little", signed=True)
                     for _, _, _, raw in rec.raw_messages([EXPOSURE_TOPIC])]
        assert rec.topics[IMU_TOPIC].count == 160 and rec.other_streams == {"triggers": 17}
    assert len(frames) == len(frames_ref) == 4
    for f, (t_start, exposure, image), e in zip(frames, frames_ref, exposures):
        np.testing.assert_array_equal(f.image, image)  # pixel-exact
        assert f.encoding == "mono8" and e == exposure == 500
        # the package's instant: the middle of the exposure (dv-processing reports its start)
        assert f.stamp_ns == (t_start + exposure // 2) * 1000


@needs_sample
def test_aedat4_info_samples_and_ros1_conversion(tmp_path):
    info = bag_info(SAMPLE)
    ev = info["topics"][EVENTS_TOPIC]
    assert ev["events"] == 6676 and ev["sensor_size"] == {"height": 260, "width": 346}
    assert info["format"] == "aedat4" and info["other_streams"] == {"triggers": 17}
    assert detect_format(SAMPLE) == "bag"
    from evdistill_ros.events.spec import ByTime, EventInput

    spec = EventInput("count", {}, ByTime(10_000_000))
    samples = list(iter_bag_samples(SAMPLE, event_input=spec))
    all_ev = read_events(SAMPLE)
    assert len(samples) == 4
    for s in samples:  # the window ends at the frame's mid-exposure stamp
        n = int(((all_ev.t >= s.t_ns - 10_000_000) & (all_ev.t < s.t_ns)).sum())
        assert s.num_events == n and s.aps.shape == (260, 346) and float(s.events.sum()) == n

    from evdistill_ros.io.convert import convert_to_ros1

    out = tmp_path / "sample.bag"
    counts = convert_to_ros1(SAMPLE, out, progress=False)
    assert counts[EVENTS_TOPIC] == 17 and counts[IMAGE_TOPIC] == 4 and counts[IMU_TOPIC] == 160
    with Bag(out) as bag:
        assert bag.topics[EVENTS_TOPIC].md5 == "5e8beee5a6c107e504c2e78903c224b8"  # rpg_dvs_ros' EventArray
        assert bag.topics[IMU_TOPIC].msgtype == "sensor_msgs/Imu"
        images = list(bag.images(IMAGE_TOPIC))
        imu = next(bag.raw_messages([IMU_TOPIC]))
    conv = read_events(out)
    for a in "xytp":
        np.testing.assert_array_equal(getattr(conv, a), getattr(all_ev, a))
    with open_recording(SAMPLE) as rec:
        for a, b in zip(images, rec.images(IMAGE_TOPIC)):
            assert a.stamp_ns == b.stamp_ns and np.array_equal(a.image, b.image)
    from rosbags.typesys import Stores, get_typestore

    msg = get_typestore(Stores.ROS1_NOETIC).deserialize_ros1(imu[3], "sensor_msgs/msg/Imu")
    assert 5.0 < abs(msg.linear_acceleration.x) + abs(msg.linear_acceleration.y) + abs(msg.linear_acceleration.z) < 20


@needs_sample
def test_info_cli_reads_aedat4():
    out = subprocess.run([sys.executable, "-m", "evdistill_ros.cli", "info", str(SAMPLE), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["topics"][EVENTS_TOPIC]["events"] == 6676


def test_a_broken_aedat4_is_one_line(tmp_path):
    bad = tmp_path / "bad.aedat4"
    bad.write_bytes(b"#!AEDAT4.0\r\n" + b"\x00" * 64)
    with pytest.raises(BagError) as exc:
        bag_info(bad)
    assert "bad.aedat4" in str(exc.value) and "\n" not in str(exc.value)


# ---------------------------------------------------------------------------------------------
# Prophesee RAW


def _events(seed: int, n: int = 3000, width: int = 640, height: int = 480) -> Events:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 300_000, n)) * 1000 + 5_000_000_000  # µs clock, past a 2**24 µs wrap
    ev = Events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))
    # runs for EVT3's vectors: same time, same row, consecutive x
    run = Events(np.arange(100, 111), np.full(11, 7), np.full(11, int(t[n // 2])), np.ones(11))
    return Events.concatenate([ev[: n // 2], run, ev[n // 2:]])


def _write_raw(path: Path, encoding: str, events: Events, width: int = 640, height: int = 480,
               garbage: bytes = b"") -> Path:
    data = encode_evt2(events) if encoding == "evt2" else encode_evt3(events)
    path.write_bytes(raw_header_bytes(encoding, width, height, {"serial_number": "test"}) + garbage + data)
    return path


@pytest.mark.parametrize("encoding", ["evt2", "evt3"])
def test_raw_files_decode_exactly(tmp_path, encoding):
    want = _events(1)
    path = _write_raw(tmp_path / f"rec_{encoding}.raw", encoding, want)
    got = read_events(path)
    for a in "xytp":
        np.testing.assert_array_equal(getattr(got, a), getattr(want, a), err_msg=a)
    data = path.read_bytes()
    with RawRecording(path) as rec:
        assert (rec.width, rec.height) == (640, 480) and rec.header.encoding == encoding
        ref = (reference.evt2 if encoding == "evt2" else reference.evt3)(data[rec.header.data_offset:], 640, 480)
    assert [tuple(map(int, r)) for r in ref] == list(zip(got.t.tolist(), got.x.tolist(), got.y.tolist(),
                                                          got.p.tolist()))
    info = bag_info(path)
    assert info["format"] == "raw" and info["topics"][EVENTS_TOPIC]["events"] == len(want)


def test_raw_chunks_keep_the_decoder_state(tmp_path, monkeypatch):
    """A file read in many small chunks gives what one read gives (time base, row, vector base
    carry over between chunks)."""
    import evdistill_ros.io.recordings as R

    want = _events(2)
    for encoding in ("evt2", "evt3"):
        path = _write_raw(tmp_path / f"c_{encoding}.raw", encoding, want)
        monkeypatch.setattr(R, "CHUNK_BYTES", 1000)
        got = read_events(path)
        monkeypatch.setattr(R, "CHUNK_BYTES", 1 << 20)
        assert np.array_equal(got.t, want.t) and np.array_equal(got.x, want.x)


def test_evt3_follows_the_specification_when_time_low_steps_back(tmp_path):
    """A TIME_LOW below the previous one (no new TIME_HIGH) is that time, as the specification
    reads it; no 4096 µs are added."""
    words = [(8 << 12) | 5, (6 << 12) | 100, 3, (2 << 12) | 10, (6 << 12) | 50, (2 << 12) | (1 << 11) | 11]
    path = tmp_path / "back.raw"
    path.write_bytes(raw_header_bytes("evt3", 64, 64) + np.asarray(words, "<u2").tobytes())
    ev = read_events(path)
    assert ev.t.tolist() == [(5 << 12 | 100) * 1000, (5 << 12 | 50) * 1000] and ev.p.tolist() == [0, 1]
    assert ev.x.tolist() == [10, 11] and ev.y.tolist() == [3, 3]


def test_evt2_skips_triggers_and_timeless_words(tmp_path):
    cd_before = (1 << 28) | (3 << 11) | 4  # a CD word before any EVT_TIME_HIGH: no time, skipped
    words = [cd_before, (8 << 28) | 7, (10 << 28) | 1, (0 << 28) | (5 << 22) | (9 << 11) | 2, (14 << 28)]
    path = tmp_path / "t.raw"
    path.write_bytes(raw_header_bytes("evt2", 32, 32) + np.asarray(words, "<u4").tobytes())
    ev = read_events(path)
    assert ev.t.tolist() == [(7 << 6 | 5) * 1000] and ev.x.tolist() == [9] and ev.y.tolist() == [2]
    with RawRecording(path) as rec:
        (_, msg), = list(rec.event_messages())
    assert msg.skipped == 3


def test_raw_headers_and_garbage_fail_in_one_line(tmp_path):
    cases = {b"% evt 4.0\n% geometry 10x10\n% end\n": "not supported",
             b"% evt 3.0\n% end\n": "no sensor size",
             b"\x00\x01binary": "not a Prophesee RAW file",
             b"% format EVT21;height=10;width=10\n% end\n": "not supported"}
    for i, (body, why) in enumerate(cases.items()):
        p = tmp_path / f"h{i}.raw"
        p.write_bytes(body + b"\x00" * 16)
        with pytest.raises(BagError, match=why) as exc:
            bag_info(p)
        assert "\n" not in str(exc.value)
    # the older header without "% end" and with only the format line reads
    p = tmp_path / "old.raw"
    p.write_bytes(b"% date 2019-01-01\n% format EVT2;height=480;width=640\n" + encode_evt2(_events(3, 10)))
    assert len(read_events(p)) == 21


@pytest.mark.parametrize("encoding", ["evt2", "evt3"])
def test_raw_fuzz_never_crashes_or_lies(tmp_path, encoding):
    """Random words after a valid header: events inside the sensor, times non-negative, and the
    numba decoder equal to the plain-Python one; or a one-line BagError (unknown EVT3 codes)."""
    rng = np.random.default_rng(7)
    for k in range(20):
        body = rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8).tobytes()
        path = tmp_path / f"f{k}.raw"
        path.write_bytes(raw_header_bytes(encoding, 100, 80) + body)
        try:
            ev = read_events(path)
        except BagError as exc:
            assert "\n" not in str(exc) and encoding == "evt3"
            continue
        assert (ev.x < 100).all() and (ev.y < 80).all() and (ev.t >= 0).all()
        # the decoder itself (before the reader screens glitched times out) is the reference's
        from evdistill_ros.wire.prophesee import decoder_for_encoding

        usable = body[: len(body) - len(body) % (4 if encoding == "evt2" else 2)]
        raw, _, _ = decoder_for_encoding(encoding)(usable, 100, 80)
        ref = (reference.evt2 if encoding == "evt2" else reference.evt3)(usable, 100, 80)
        assert [r[0] for r in ref] == raw.t.tolist() and [r[1] for r in ref] == raw.x.tolist()
        assert len(ev) <= len(raw)


@needs_sample
def test_visualize_an_unlabelled_real_recording_with_a_card_teacher(tmp_path):
    """`evdistill visualize --data REC --video out.mp4` with default options on a recording without
    labels: the video and the panels are written (ground truth n/a), nothing temporary is left,
    and a Cityscapes teacher card beside a DDD17 student is drawn in DDD17's classes."""
    import torch
    import yaml

    from evdistill_ros.events.spec import ByTime, EventInput
    from evdistill_ros.models import build_model, save_checkpoint

    student = build_model("deeplabv3plus", "mobilenetv2", 2, 6, 16, width_mult=0.25, aspp_channels=16,
                          decoder_channels=16)
    ckpt = save_checkpoint(tmp_path / "student.pt", student, {
        "representation": EventInput("count", {}, ByTime(20_000_000)).to_dict(), "input_size": None,
        "preprocessing": {"scale": 1.0, "channels": "exact"}})
    teacher = torch.jit.trace(torch.nn.Conv2d(3, 19, 3, padding=1).eval(), torch.rand(1, 3, 16, 16))
    teacher.save(str(tmp_path / "t.ts"))
    card = tmp_path / "t.yaml"
    card.write_text(yaml.safe_dump({"path": "t.ts", "classes": "cityscapes", "frame": "rgb", "mean": 128,
                                    "std": 64}))
    out = tmp_path / "viz"
    r = subprocess.run([sys.executable, "-m", "evdistill_ros.cli", "visualize", "--data", str(SAMPLE),
                        "--event-ckpt", str(ckpt), "--aps-ckpt", str(card), "--video", str(out / "rec.mp4"),
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["panels.png", "rec.mp4"], files
    import imageio.v2 as imageio

    assert len(imageio.mimread(out / "rec.mp4")) == 4
