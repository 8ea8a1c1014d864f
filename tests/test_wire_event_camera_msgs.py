"""event_camera_msgs/EventPacket: md5, mono and evt3 decoding against pure-Python references."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from conftest import random_events
from evdistill_ros.events import Events
from evdistill_ros.wire.dvs_msgs import decode_event_array, encode_event_array
from evdistill_ros.wire.ros1 import CodecError, serialize_header
from evdistill_ros.wire.event_camera_msgs import (
    EVENT_PACKET_MD5, EVENT_PACKET_TYPE, EventPacketDecoder, Evt3Decoder, decode_event_packet, decoder_for,
    encode_event_packet, event_packet_definition,
)

T0 = 1_700_000_000_000_000_000


def test_md5_matches_generated_definition():
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    ts = get_typestore(Stores.ROS1_NOETIC)
    body = event_packet_definition().split("=" * 80)[0]
    ts.register(get_types_from_msg(body, "event_camera_msgs/msg/EventPacket"))
    assert ts.generate_msgdef("event_camera_msgs/msg/EventPacket")[1] == EVENT_PACKET_MD5


def reference_mono(raw: bytes, stamp: int, time_base: int):
    out = []
    for (w,) in struct.iter_unpack("<Q", raw):
        out.append((((w >> 32) & 0xFFFF), ((w >> 48) & 0x7FFF), stamp + (w & 0xFFFFFFFF), w >> 63))
    return out


def test_mono_round_trip_and_reference():
    ev = random_events(3000, seed=5, t0=T0, duration_ns=2_000_000_000)
    raw = encode_event_packet(ev, 260, 346, seq=7, frame_id="cam")
    msg = decode_event_packet(raw)
    assert msg.events == ev and msg.seq == 7 and msg.frame_id == "cam" and msg.stamp_ns == int(ev.t[0])
    body = raw[-8 * len(ev):]
    x, y, t, p = (np.array(v) for v in zip(*reference_mono(body, msg.stamp_ns, 0)))
    assert np.array_equal(msg.events.x, x) and np.array_equal(msg.events.t, t) and np.array_equal(msg.events.p, p)
    # a driver stamping the message at time_base: ros time = stamp + (time_base + dt - time_base)
    shifted = encode_event_packet(ev, 260, 346, stamp_ns=int(ev.t[0]) - 500, time_base=123)
    assert decode_event_packet(shifted).events == ev


def test_mono_drops_out_of_bounds_and_rejects_bad_bytes():
    ev = Events(np.array([10, 400, 20]), np.array([5, 5, 300]), np.array([T0, T0 + 1, T0 + 2]), np.array([1, 0, 1]))
    msg = decode_event_packet(encode_event_packet(ev, 260, 346))
    assert msg.dropped == 2 and len(msg.events) == 1
    raw = bytearray(encode_event_packet(ev, 260, 346))
    with pytest.raises(CodecError):
        decode_event_packet(bytes(raw[:-3]))
    with pytest.raises(CodecError, match="not supported"):
        decode_event_packet(bytes(raw).replace(b"mono", b"evt2"))


# ---- EVT 3.0: a pure-Python encoder and a line-by-line reference decoder (event_camera_codecs) ----

def evt3_encode(x, y, t_us, p, rng, start_high=True):
    """Words for events sorted by time: TIME_HIGH/TIME_LOW as needed, ADDR_Y, then ADDR_X or vectors."""
    words, high, low, row = [], None, None, None
    i, n = 0, len(x)
    while i < n:
        th, tl = (t_us[i] >> 12) & 0xFFF, t_us[i] & 0xFFF
        if th != high:
            words.append(0x8000 | th)
            high = th
            low = None
        if tl != low:
            words.append(0x6000 | tl)
            low = tl
        if y[i] != row:
            words.append(0x0000 | y[i])
            row = y[i]
        # a run of same-time, same-row, same-polarity events within 12 columns -> a vector
        j = i
        while (j + 1 < n and t_us[j + 1] == t_us[i] and y[j + 1] == y[i] and p[j + 1] == p[i]
               and x[i] <= x[j + 1] < x[i] + 12 and x[j + 1] > x[j]):
            j += 1
        if j > i and rng.random() < 0.8:
            base = x[i]
            words.append(0x3000 | (p[i] << 11) | base)
            bits = 0
            for k in range(i, j + 1):
                bits |= 1 << (x[k] - base)
            words.append((0x4000 | bits) if rng.random() < 0.5 or bits >> 8 else (0x5000 | bits))
            i = j + 1
        else:
            words.append(0x2000 | (p[i] << 11) | x[i])
            i += 1
        if rng.random() < 0.05:
            words.append(0xE000 | 0x019)  # OTHERS: end of frame
    return np.array(words, dtype=np.uint16)


class RefEvt3:
    """Direct transliteration of event_camera_codecs' evt3::Decoder (per word, Python)."""

    def __init__(self):
        self.high = self.low = self.ey = self.base = self.pol = 0
        self.valid = False

    def update_high(self, t):
        last = (self.high >> 12) & 0xFFF
        if t < last and last - t > 10:
            self.high += 1 << 24
        self.high = (self.high & ~((1 << 24) - 1)) | (t << 12)

    def decode(self, words, width, height):
        out = []
        i = 0
        have_high = self.valid
        while not self.valid and i < len(words):
            w = int(words[i])
            if w >> 12 == 6:
                self.low = w & 0xFFF
                if have_high:
                    self.valid = True
            elif w >> 12 == 8:
                self.update_high(w & 0xFFF)
                have_high = True
            i += 1
        for w in words[i:]:
            w, code = int(w), int(w) >> 12
            t = (self.high | self.low) * 1000
            if code == 2:
                if (w & 0x7FF) < width and self.ey < height:
                    out.append((w & 0x7FF, self.ey, t, (w >> 11) & 1))
            elif code == 0:
                self.ey = w & 0x7FF
            elif code == 6:
                self.low = w & 0xFFF
            elif code == 8:
                self.update_high(w & 0xFFF)
            elif code == 3:
                self.pol, self.base = (w >> 11) & 1, w & 0x7FF
            elif code in (4, 5):
                nb = 12 if code == 4 else 8
                for k in range(nb):
                    if w >> k & 1 and self.base + k < width and self.ey < height:
                        out.append((self.base + k, self.ey, t, self.pol))
                self.base += nb
        return out


def evt3_packet(words, stamp, time_base, height=260, width=346, bigendian=False):
    body = words.astype(">u2" if bigendian else "<u2").tobytes()
    return b"".join((serialize_header(stamp), struct.pack("<IIQQI", height, width, 0, time_base, 4), b"evt3",
                     struct.pack("<BI", int(bigendian), len(body)), body))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evt3_matches_reference_across_split_messages(seed):
    rng = np.random.default_rng(seed)
    n = 4000
    t_us = np.sort(rng.integers(0, 40_000_000, n))  # 40 s: the 24-bit µs clock (16.7 s) rolls over twice
    y = rng.integers(0, 270, n)  # some rows outside the 260-row sensor
    x = rng.integers(0, 350, n)
    clustered = rng.random(n) < 0.5  # make vector runs: same time and row, neighbouring columns
    for i in np.flatnonzero(clustered)[:-1]:
        t_us[i + 1], y[i + 1], x[i + 1] = t_us[i], y[i], min(x[i] + 1 + rng.integers(0, 3), 349)
    order = np.lexsort((x, y, t_us))
    x, y, t_us = x[order], y[order], t_us[order]
    p = rng.integers(0, 2, n)
    words = evt3_encode(x.tolist(), y.tolist(), t_us.tolist(), p.tolist(), rng)
    words = np.concatenate([np.array([0x2000 | 5, 0x6000 | 9], np.uint16), words])  # before a valid time: skipped
    cuts = np.sort(rng.choice(np.arange(1, len(words)), 6, replace=False))
    ref, dec = RefEvt3(), EventPacketDecoder()
    stamp, time_base = T0, 0
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(words)]):
        part = words[a:b]
        want = ref.decode(part, 346, 260)
        msg = dec(evt3_packet(part, stamp, time_base, bigendian=bool(seed == 2)))
        got = list(zip(msg.events.x.tolist(), msg.events.y.tolist(), (msg.events.t - stamp).tolist(),
                       msg.events.p.tolist()))
        assert got == want
    # the decoded clock unwraps the rollovers: sensor times equal the encoded µs
    all_ev = Evt3Decoder()(words, 346, 260)[0]
    inside = (x < 346) & (y < 260)
    assert np.array_equal(all_ev.t, t_us[inside] * 1000)


def test_evt3_rejects_unknown_codes():
    with pytest.raises(CodecError, match="unsupported event code 11"):
        Evt3Decoder()(np.array([0x8001, 0x6001, 0xB000], np.uint16), 346, 260)


def test_decoder_for_connection_types():
    ev = random_events(50, seed=1, t0=T0)
    assert decoder_for("dvs_msgs/EventArray", "5e8beee5a6c107e504c2e78903c224b8") is decode_event_array
    assert decoder_for("dvs_msgs/msg/EventArray", "*")(encode_event_array(ev, 260, 346)).events == ev
    dec = decoder_for(EVENT_PACKET_TYPE, EVENT_PACKET_MD5)
    assert dec(encode_event_packet(ev, 260, 346)).events == ev
    assert decoder_for(EVENT_PACKET_TYPE, EVENT_PACKET_MD5) is not dec  # one stateful decoder per stream
    with pytest.raises(ValueError, match="does not match"):
        decoder_for(EVENT_PACKET_TYPE, "0" * 32)
    with pytest.raises(ValueError, match="no event decoder"):
        decoder_for("sensor_msgs/Image", "*")


def test_convert_event_packet_bag(tmp_path):
    from evdistill_ros.cli import main
    from evdistill_ros.io.bag import iter_images, read_events, topics
    from evdistill_ros.io.bag_writer import BagWriter

    ev = random_events(2000, seed=2, t0=T0, duration_ns=300_000_000)
    src, dst = tmp_path / "pk.bag", tmp_path / "dvs.bag"
    img = np.arange(260 * 346, dtype=np.uint32).reshape(260, 346).astype(np.uint8)
    with BagWriter(src) as w:
        for k in range(4):
            part = ev[k * 500:(k + 1) * 500]
            w.write_raw("/event_camera/events", "event_camera_msgs/msg/EventPacket", int(part.t[0]),
                        encode_event_packet(part, 260, 346, seq=k), msgdef=event_packet_definition(),
                        md5=EVENT_PACKET_MD5)
        w.write_image("/event_camera/image", T0 + 1000, img)
    assert main(["convert", "event-packets", str(src), "--out", str(dst), "--out-topic", "/dvs/events", "--quiet"]) == 0
    assert topics(dst)["/dvs/events"].msgtype == "dvs_msgs/EventArray"
    assert read_events(dst, "/dvs/events") == ev
    from evdistill_ros.io.bag import bag_info

    info = bag_info(dst)["topics"]
    assert info["/dvs/events"]["events"] == len(ev) and info["/dvs/events"]["messages"] == 4
    assert info["/event_camera/image"]["messages"] == 1
    assert np.array_equal(next(iter_images(dst, "/event_camera/image")).image, img)
