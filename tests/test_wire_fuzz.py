"""Fuzzing every decoder on the wire with random and mutated bytes (seeded, so reproducible):
the only exceptions are the package's CodecError / ValueError, and nothing is allocated beyond
what the message itself can hold."""
from __future__ import annotations

import numpy as np
import pytest

from evdistill_ros.events import Events
from evdistill_ros.wire import CodecError, decode_event_array, decode_image, encode_event_array, encode_image
from evdistill_ros.wire.event_camera_msgs import (EVENT_PACKET_MD5, EVENT_PACKET_TYPE, decoder_for,
                                                   encode_event_packet)

T0 = 1_700_000_000_000_000_000
MAX_EVENTS_PER_BYTE = 4  # libcaer_cmp: a 2-byte VECT_8 word holds up to 8 events


def _seeds(rng, n: int = 20) -> list[bytes]:
    out = []
    for k in range(n):
        m = int(rng.integers(0, 200))
        ev = Events(rng.integers(0, 346, m), rng.integers(0, 260, m), np.sort(rng.integers(T0, T0 + 10**8, m)) // 1000
                    * 1000, rng.integers(0, 2, m))
        out.append(encode_event_array(ev, 260, 346, stamp_ns=T0))
        for enc in ("mono", "libcaer", "libcaer_cmp"):
            out.append(encode_event_packet(ev, 260, 346, encoding=enc, time_base=T0))
    return out


def _mutations(rng, seed: bytes, k: int = 30):
    yield seed
    for _ in range(k):
        b = bytearray(seed)
        kind = rng.integers(0, 4)
        if kind == 0 and b:  # flip bytes
            for i in rng.integers(0, len(b), int(rng.integers(1, 8))):
                b[i] = int(rng.integers(0, 256))
        elif kind == 1:  # truncate
            b = b[: int(rng.integers(0, len(b) + 1))]
        elif kind == 2:  # append junk
            b += bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
        elif b:  # a huge length field somewhere
            i = int(rng.integers(0, max(1, len(b) - 4)))
            b[i:i + 4] = (0xFFFFFFF0).to_bytes(4, "little")
        yield bytes(b)
    yield bytes(rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8))


@pytest.mark.parametrize("decoder_name", ["dvs_msgs", "event_packet"])
def test_event_decoders_raise_only_codec_errors(decoder_name):
    rng = np.random.default_rng(7)
    decode = decode_event_array if decoder_name == "dvs_msgs" else decoder_for(EVENT_PACKET_TYPE, EVENT_PACKET_MD5)
    outcomes = {"ok": 0, "refused": 0}
    for seed in _seeds(rng):
        for data in _mutations(rng, seed):
            try:
                msg = decode(data)
            except (CodecError, ValueError):
                outcomes["refused"] += 1
                continue
            outcomes["ok"] += 1
            assert len(msg.events) <= MAX_EVENTS_PER_BYTE * len(data) + 1
            assert msg.events.x.dtype == np.uint16 and msg.events.t.dtype == np.int64
    assert outcomes["ok"] > 50 and outcomes["refused"] > 50, outcomes  # both paths were exercised


def test_image_decoder_raises_only_codec_errors_and_bounds_pixels():
    rng = np.random.default_rng(8)
    seeds = [encode_image(rng.integers(0, 256, (int(rng.integers(1, 20)), int(rng.integers(1, 20))), dtype=np.uint8),
                          T0) for _ in range(10)]
    seeds += [encode_image(rng.integers(0, 65535, (5, 7), dtype=np.uint16), T0, "mono16"),
              encode_image(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), T0, "bgr8")]
    ok = refused = 0
    for seed in seeds:
        for data in _mutations(rng, seed):
            try:
                img = decode_image(data, max_pixels=10_000)
            except CodecError:
                refused += 1
                continue
            ok += 1
            assert img.image.nbytes <= len(data)
    assert ok > 10 and refused > 10, (ok, refused)
