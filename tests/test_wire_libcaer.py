"""libcaer and libcaer_cmp (libcaer_driver's EventPacket encodings) against plain-Python
reference decoders written here from event_camera_codecs' headers, and round trips."""
from __future__ import annotations

import numpy as np
import pytest

from evdistill_ros.events import Events
from evdistill_ros.wire import CodecError, decoder_for
from evdistill_ros.wire.event_camera_msgs import (EVENT_ARRAY_MSGS_TYPE, EVENT_PACKET_MD5, EVENT_PACKET_TYPE,
                                                   EventPacketDecoder, encode_event_packet)
from evdistill_ros.wire import reference
from evdistill_ros.wire.libcaer import LibcaerCmpDecoder, decode_libcaer, encode_libcaer, encode_libcaer_cmp

TB = 1_700_000_000_123_456_000


# the plain-Python references (evdistill_ros.wire.reference) were written from the C++ headers
ref_libcaer = reference.libcaer
RefCmp = reference.LibcaerCmp


def as_tuples(ev: Events) -> list[tuple[int, int, int, int]]:
    return list(zip(ev.t.tolist(), ev.x.tolist(), ev.y.tolist(), ev.p.tolist()))


def sorted_events(rng, n: int, width=346, height=260, span_us=100_000) -> Events:
    us = np.sort(rng.integers(0, span_us, n))
    return Events(rng.integers(0, width, n), rng.integers(0, height, n), TB + us * 1000, rng.integers(0, 2, n))


# ---- libcaer ------------------------------------------------------------------------------

def test_libcaer_random_words_equal_reference(rng):
    for trial in range(20):
        n = int(rng.integers(0, 300))
        raw = rng.integers(0, 256, n * 8, dtype=np.uint8).tobytes()  # any bits, negative stamps included
        ev, dropped = decode_libcaer(np.frombuffer(raw, np.uint8), TB, 0, 0)
        assert dropped == 0 and as_tuples(ev) == ref_libcaer(raw, TB), trial


def test_libcaer_rollover_and_round_trip(rng):
    # cross two 31-bit overflows of the µs counter (35.8 min each) inside one packet
    us = np.sort(np.concatenate([rng.integers((k << 31) - 50_000, (k << 31) + 50_000, 700) for k in (1, 2)]))
    ev = Events(rng.integers(0, 346, len(us)), rng.integers(0, 260, len(us)), TB + us * 1000,
                rng.integers(0, 2, len(us)))
    raw = encode_libcaer(ev, TB)
    got, _ = decode_libcaer(np.frombuffer(raw, np.uint8), TB, 346, 260)
    assert as_tuples(got) == as_tuples(ev) == ref_libcaer(raw, TB)


def test_libcaer_bounds_and_length():
    ev = Events([5, 400], [3, 4], [TB, TB + 1000], [1, 0])
    got, dropped = decode_libcaer(np.frombuffer(encode_libcaer(ev, TB), np.uint8), TB, 346, 260)
    assert dropped == 1 and got.x.tolist() == [5]
    with pytest.raises(CodecError, match="multiple of 8"):
        decode_libcaer(np.zeros(12, np.uint8), TB, 346, 260)


# ---- libcaer_cmp ----------------------------------------------------------------------------

def test_cmp_random_words_equal_reference_with_state_across_packets(rng):
    dec, ref = LibcaerCmpDecoder(), RefCmp()
    for trial in range(30):
        words = rng.integers(0, 1 << 16, int(rng.integers(0, 400)), dtype=np.uint16)
        words[rng.random(len(words)) < 0.6] &= 0x5FFF  # mostly codes 0-5
        raw = words.astype("<u2").tobytes()
        ev, dropped, skipped = dec(np.frombuffer(raw, np.uint8), TB, 346, 260)
        want, want_skipped = ref(raw, TB, 346, 260)
        assert as_tuples(ev) == want and skipped == want_skipped, trial


@pytest.mark.parametrize("case", ["column_runs", "time_jumps", "polarity_changes", "empty", "one", "random"])
def test_cmp_round_trip_corner_cases(case, rng):
    if case == "column_runs":  # runs of events on one column at one time: VECT_BASE_Y + VECT_8
        ys = [10, 11, 12, 14, 17, 18, 30, 31, 100]
        ev = Events([7] * len(ys), ys, [TB + 5000] * len(ys), [1] * len(ys))
    elif case == "time_jumps":  # µs time crossing the 12-bit TIME_LOW and TIME_HIGH steps
        us = np.array([0, 1, 4095, 4096, 4097, 1 << 20, (1 << 24) - 1])
        ev = Events(np.arange(7), np.arange(7), TB + us * 1000, np.ones(7))
    elif case == "polarity_changes":
        ev = Events([3] * 6, [1, 2, 3, 4, 5, 6], [TB] * 6, [1, 0, 1, 1, 0, 0])
    elif case == "empty":
        ev = Events.empty()
    elif case == "one":
        ev = Events([2047], [2047], [TB + 123_000], [0])
    else:
        ev = sorted_events(rng, 5000, 640, 480, 2_000_000)
    raw = encode_libcaer_cmp(ev, TB)
    got, dropped, skipped = LibcaerCmpDecoder()(np.frombuffer(raw, np.uint8), TB, 2048, 2048)
    assert as_tuples(got) == as_tuples(ev) and dropped == skipped == 0
    assert as_tuples(got) == RefCmp()(raw, TB, 2048, 2048)[0]
    if case == "column_runs":
        codes = np.frombuffer(raw, "<u2") >> 12
        assert (codes == 5).sum() >= 2  # the runs were vectors


def test_cmp_non_cd_words_are_skipped_and_counted():
    words = np.array([0x0000, 0x1005, 0x2003, 0x3004, 0x6FFF, 0xA123, 0xF000], "<u2")  # VECT_12, 10, 15
    ev, dropped, skipped = LibcaerCmpDecoder()(np.frombuffer(words.tobytes(), np.uint8), TB, 346, 260)
    assert as_tuples(ev) == [(TB + 5000, 3, 4, 0)] and skipped == 3


def test_cmp_needs_geometry_like_its_reference():
    raw = encode_libcaer_cmp(Events([1], [1], [TB], [1]), TB)
    ev, dropped, _ = LibcaerCmpDecoder()(np.frombuffer(raw, np.uint8), TB, 0, 0)
    assert len(ev) == 0 and dropped == 1


# ---- through the EventPacket decoder, for both type names -----------------------------------

@pytest.mark.parametrize("encoding", ["libcaer", "libcaer_cmp", "mono"])
@pytest.mark.parametrize("msg_type", [EVENT_PACKET_TYPE, EVENT_ARRAY_MSGS_TYPE, "event_array_msgs/msg/EventArray"])
def test_packets_decode_through_decoder_for(encoding, msg_type, rng):
    ev = sorted_events(rng, 1000)
    dec = decoder_for(msg_type, EVENT_PACKET_MD5)
    stamp = TB + 777  # the header stamp: libcaer times are epoch times already, mono is mapped
    msg = dec(encode_event_packet(ev, 260, 346, encoding=encoding, time_base=TB, stamp_ns=stamp))
    want = ev.t if encoding != "mono" else ev.t
    if encoding == "mono":  # mono carries t - stamp; the decoder maps it back onto the stamp
        assert msg.sensor_offset_ns == stamp - TB
    else:
        assert msg.sensor_offset_ns == 0
    assert np.array_equal(msg.events.t, want) and np.array_equal(msg.events.x, ev.x)
    assert (msg.height, msg.width, msg.skipped, msg.dropped) == (260, 346, 0, 0)


def test_unknown_encoding_and_big_endian_are_one_line_errors():
    ev = Events([1], [1], [TB], [1])
    raw = bytearray(encode_event_packet(ev, 10, 10, encoding="libcaer"))
    bad = bytes(raw).replace(b"libcaer", b"libcaeX")
    with pytest.raises(CodecError, match="'libcaeX' is not supported; supported: libcaer_cmp, libcaer, evt3, mono"):
        EventPacketDecoder()(bad)
    i = bytes(raw).index(b"libcaer") + len(b"libcaer")
    raw[i] = 1  # is_bigendian
    with pytest.raises(CodecError, match="big-endian libcaer"):
        EventPacketDecoder()(bytes(raw))
