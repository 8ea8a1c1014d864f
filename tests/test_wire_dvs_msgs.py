"""dvs_msgs/EventArray wire codec: round trips, parity with genpy, bad bytes."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from conftest import random_events
from evdistill_ros.events import Events
from evdistill_ros.wire import CodecError, decode_event_array, dvs_msgs, encode_event_array
from evdistill_ros.wire.dvs_msgs import EVENT_RECORD

genpy = pytest.importorskip("genpy", reason="genpy (ROS) needed for parity with the reference serialiser")


def genpy_bytes(events: Events, height: int, width: int, stamp_ns: int, frame_id: str = "", seq: int = 0) -> bytes:
    """Reference: serialise the same message through genpy's typed classes."""
    Event, EventArray = dvs_msgs.message_classes()
    msg = EventArray()
    msg.header.seq = seq
    msg.header.stamp = genpy.Time(*divmod(stamp_ns, 1_000_000_000))
    msg.header.frame_id = frame_id
    msg.height, msg.width = height, width
    msg.events = [
        Event(x=int(x), y=int(y), ts=genpy.Time(*divmod(int(t), 1_000_000_000)), polarity=bool(p > 0))
        for x, y, t, p in zip(events.x, events.y, events.t, events.p)
    ]
    buf = io.BytesIO()
    msg.serialize(buf)
    return buf.getvalue()


def test_md5_and_type_names_match_dvs_msgs():
    Event, EventArray = dvs_msgs.message_classes()
    assert EventArray._md5sum == dvs_msgs.EVENT_ARRAY_MD5 == "5e8beee5a6c107e504c2e78903c224b8"
    assert Event._md5sum == dvs_msgs.EVENT_MD5 == "40d339b261445b8ce9a6fef01267cd5d"
    assert EventArray._type == "dvs_msgs/EventArray" and Event._type == "dvs_msgs/Event"


@pytest.mark.parametrize("n", [0, 1, 257])
@pytest.mark.parametrize("signed", [False, True])
def test_bytes_equal_genpy_serialisation(n, signed):
    ev = random_events(n, seed=n, signed=signed)
    ours = encode_event_array(ev, 260, 346, stamp_ns=1_600_000_000_123_456_789, frame_id="davis", seq=7)
    assert ours == genpy_bytes(ev, 260, 346, 1_600_000_000_123_456_789, "davis", 7)


def test_decode_genpy_message_and_round_trip():
    ev = random_events(1000, seed=3, signed=True)
    raw = genpy_bytes(ev, 260, 346, 1_600_000_001_000_000_000, "cam", 3)
    msg = decode_event_array(raw)
    assert msg.events == ev and msg.dropped == 0
    assert (msg.height, msg.width, msg.stamp_ns, msg.frame_id, msg.seq) == (260, 346, 1_600_000_001_000_000_000, "cam", 3)
    # decoding normalises polarity to 1/0
    assert set(np.unique(msg.events.p)) <= {0, 1}
    assert decode_event_array(encode_event_array(msg.events, 260, 346)).events == ev


def test_genpy_deserialises_our_bytes():
    _, EventArray = dvs_msgs.message_classes()
    ev = random_events(50, seed=9)
    msg = EventArray().deserialize(encode_event_array(ev, 260, 346))
    assert [e.x for e in msg.events] == ev.x.tolist()
    assert [e.ts.to_nsec() for e in msg.events] == ev.t.tolist()
    assert [e.polarity for e in msg.events] == (ev.p > 0).tolist()


def test_timestamps_exact_at_second_boundaries_and_large_times():
    t = np.array([0, 999_999_999, 1_000_000_000, 4_294_967_295 * 1_000_000_000 + 999_999_999], np.int64)
    ev = Events(np.arange(4), np.arange(4), t, [1, 0, 1, 0])
    assert decode_event_array(encode_event_array(ev, 10, 10)).events.t.tolist() == t.tolist()


def test_header_stamp_defaults_to_last_event():
    ev = random_events(10, seed=1)
    assert decode_event_array(encode_event_array(ev, 260, 346)).stamp_ns == int(ev.t[-1])


def test_truncated_buffers_raise_clear_errors():
    raw = encode_event_array(random_events(20), 260, 346, frame_id="frame")
    for cut in (0, 3, 15, 20, 30, len(raw) - 1):
        with pytest.raises(CodecError):
            decode_event_array(raw[:cut])


def test_length_field_disagreeing_with_buffer_raises():
    ev = random_events(20)
    raw = bytearray(encode_event_array(ev, 260, 346))
    off = 16 + 8  # header with empty frame_id, then height/width
    struct.pack_into("<I", raw, off, 21)
    with pytest.raises(CodecError, match="declares 21 events"):
        decode_event_array(bytes(raw))
    with pytest.raises(CodecError):
        decode_event_array(bytes(raw[:-13]) + b"\x00")  # trailing garbage


def test_out_of_range_coordinates_are_dropped_and_counted():
    ev = Events([0, 345, 346, 10, 1000], [0, 259, 5, 260, 3], np.arange(5) + 10**9, [1, 0, 1, 0, 1])
    msg = decode_event_array(encode_event_array(ev, 260, 346))
    assert msg.dropped == 3
    assert msg.events == ev[np.array([0, 1])]
    # unknown sensor size (0x0) keeps everything
    assert len(decode_event_array(encode_event_array(ev, 0, 0)).events) == 5


def numpy_reference_decode(records: np.ndarray) -> Events:
    """Plain numpy: one strided pass per field, as the codec did before its numba kernel."""
    t = records["sec"].astype(np.int64) * 1_000_000_000 + records["nsec"]
    return Events(records["x"], records["y"], t, (records["p"] != 0).astype(np.int8))


def raw_message(records: np.ndarray, height: int, width: int) -> bytes:
    return struct.pack("<IIII", 0, 0, 0, 0) + struct.pack("<III", height, width, len(records)) + records.tobytes()


@pytest.mark.parametrize("n", [0, 1, 13, 10_000])
def test_numba_unpack_equals_numpy_reference_on_raw_records(n):
    rng = np.random.default_rng(n)
    rec = np.empty(n, EVENT_RECORD)
    rec["x"] = rng.choice([0, 1, 345, 346, 65535], n) if n < 100 else rng.integers(0, 400, n)
    rec["y"] = rng.integers(0, 300, n)
    rec["sec"] = rng.integers(0, 2**32, n, dtype=np.uint64)
    rec["nsec"] = rng.integers(0, 1_000_000_000, n)
    rec["p"] = rng.choice([0, 1, 2, 255], n)  # any non-zero wire byte is ON
    ref = numpy_reference_decode(rec)
    inside = (ref.x < 346) & (ref.y < 260)
    msg = decode_event_array(raw_message(rec, 260, 346))
    assert msg.events == ref[inside] and msg.dropped == n - np.count_nonzero(inside)
    assert set(np.unique(msg.events.p)) <= {0, 1}
    kept = decode_event_array(raw_message(rec, 260, 346), drop_out_of_bounds=False)
    assert kept.events == ref and kept.dropped == 0
    assert msg.events.t.flags.c_contiguous and msg.events.x.dtype == np.uint16


def test_negative_times_cannot_be_encoded():
    with pytest.raises(ValueError):
        encode_event_array(Events([0], [0], [-1], [1]), 10, 10)


def test_events_type_checks_lengths_and_slices():
    with pytest.raises(ValueError, match="differ in length"):
        Events([1, 2], [1], [1, 2], [0, 1])
    ev = random_events(100)
    assert len(ev.time_slice(int(ev.t[10]), int(ev.t[20]))) >= 10
    assert Events.concatenate([ev[:30], Events.empty(), ev[30:]]) == ev
    assert len(Events.concatenate([])) == 0
