"""`event_camera_msgs/EventPacket` (libcaer_driver, metavision_driver): definition and decoders.

Also `event_array_msgs/EventArray`, the same message under its pre-2023 name (same fields, same
md5). Wire layout (ROS1, little endian): Header, u32 height, u32 width, u64 seq, u64 time_base,
string encoding (u32 length + bytes), u8 is_bigendian, uint8[] events (u32 length + bytes).

Encodings decoded here (as in ros-event-camera/event_camera_codecs):
  "libcaer_cmp", "libcaer"  libcaer_driver (iniVation DAVIS, DVXplorer): see wire.libcaer
  "mono"  libcaer_driver's packed 8-byte events, one uint64 each:
          bit 63 polarity, bits 48-62 y, bits 32-47 x, bits 0-31 time (ns) since time_base.
  "evt3"  Prophesee EVT 3.0, 16-bit words with a 4-bit code in the top bits: ADDR_Y (0),
          ADDR_X (2: x, polarity), VECT_BASE_X (3), VECT_12 (4), VECT_8 (5), TIME_LOW (6),
          TIME_HIGH (8), EXT_TRIGGER (10), OTHERS/CONTINUED/padding (14, 15, 7, 9) ignored.
          Time is µs: TIME_HIGH holds bits 12-23, TIME_LOW bits 0-11; a TIME_HIGH that falls
          back by more than 10 counts is a 24-bit rollover. State (time, row, vector base)
          carries across messages, so use one decoder object per topic; events before the
          first TIME_HIGH + TIME_LOW pair are skipped, as the reference decoder does.

Decoded sensor time ``ts`` (ns; mono: time_base + low 32 bits, evt3: µs clock * 1000) maps to
ROS time as ``header.stamp + (ts - time_base)``: both drivers stamp a message at the ROS time
of its time_base. libcaer and libcaer_cmp times are synchronised to the epoch by the driver and
used as they are. Events outside width x height are dropped and counted; non-CD words
(triggers, IMU markers, others) are skipped and counted in `EventArrayMsg.skipped`.

API:
    EVENT_PACKET_TYPE, EVENT_PACKET_MD5, event_packet_definition()
    decode_event_packet(data, decoder=None) -> EventArrayMsg     one message's wire bytes
    EventPacketDecoder()  stateful callable: decoder(data) -> EventArrayMsg (keeps evt3 state)
    encode_event_packet(events, height, width, *, stamp_ns=None, time_base=None, frame_id="",
                        seq=0, encoding="mono") -> bytes   mono, libcaer, libcaer_cmp (tests, tools)
    decoder_for(msg_type, md5) -> callable(bytes) -> EventArrayMsg   any of EVENT_TYPES
"""
from __future__ import annotations

import struct
from typing import Callable

import numba
import numpy as np

from ..events.types import Events
from . import dvs_msgs
from .dvs_msgs import EventArrayMsg, decode_event_array
from .libcaer import LibcaerCmpDecoder, decode_libcaer, encode_libcaer, encode_libcaer_cmp
from .ros1 import CodecError, parse_header, serialize_header

__all__ = ["EVENT_PACKET_TYPE", "EVENT_ARRAY_MSGS_TYPE", "EVENT_TYPES", "EVENT_PACKET_MD5", "EVENT_PACKET_MSG", "event_packet_definition", "Evt3Decoder",
           "EventPacketDecoder", "decode_mono", "decode_event_packet", "encode_event_packet", "decoder_for"]

EVENT_PACKET_TYPE = "event_camera_msgs/EventPacket"
# the same message under its older name (metavision_driver and libcaer_driver until 2023):
# identical fields, so the same md5
EVENT_ARRAY_MSGS_TYPE = "event_array_msgs/EventArray"
EVENT_PACKET_MD5 = "8a6101b351a64529ac77bd8b71074e52"

EVENT_PACKET_MSG = """\
# This message contains a packet of camera events

Header header     # standard ROS header
uint32 height     # image height
uint32 width      # image width

uint64 seq        # sequence number to detect lost messages
uint64 time_base  # event ros time = time_base + decoded event_time
string encoding   # the encoding scheme to use
bool is_bigendian # true if machine stores in big endian format

uint8[] events
"""


def event_packet_definition() -> str:
    """Full definition text with dependencies, as stored in bag connection headers."""
    return EVENT_PACKET_MSG + "=" * 80 + "\nMSG: std_msgs/Header\n" + dvs_msgs.HEADER_MSG


# evt3 decoder state: time_high (with rollover bits), time_low, y, base_x, polarity, valid time, seen high
_S_HIGH, _S_LOW, _S_Y, _S_BASEX, _S_POL, _S_VALID, _S_HAVEHIGH = range(7)


@numba.njit(cache=True, nogil=True)
def _evt3_kernel(words, state, width, height, fill, out_x, out_y, out_t, out_p):
    """One pass over EVT3 words. Returns (events written or counted, dropped, non-CD events
    skipped, bad word index or -1)."""
    high, low, ey, base_x, pol = state[0], state[1], state[2], state[3], state[4]
    valid, have_high = state[5], state[6]
    n = 0
    dropped = 0
    skipped = 0
    check = width > 0 and height > 0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        code = w >> 12
        if code == 8:  # TIME_HIGH
            t = w & 0xFFF
            last = (high >> 12) & 0xFFF
            if t < last and last - t > 10:
                high += 1 << 24
            high = (high & ~((1 << 24) - 1)) | (t << 12)
            have_high = 1
        elif code == 6:  # TIME_LOW
            low = w & 0xFFF
            if have_high:
                valid = 1
        elif valid == 0:
            continue  # nothing but time words count before the clock is known
        elif code == 0:  # ADDR_Y
            ey = w & 0x7FF
        elif code == 2:  # ADDR_X
            ex = w & 0x7FF
            if check and (ex >= width or ey >= height):
                dropped += 1
            else:
                if fill:
                    out_x[n] = ex
                    out_y[n] = ey
                    out_t[n] = (high | low) * 1000
                    out_p[n] = (w >> 11) & 1
                n += 1
        elif code == 3:  # VECT_BASE_X
            base_x = w & 0x7FF
            pol = (w >> 11) & 1
        elif code == 4 or code == 5:  # VECT_12 / VECT_8
            nbits = 12 if code == 4 else 8
            bits = w & ((1 << nbits) - 1)
            for k in range(nbits):
                if (bits >> k) & 1:
                    ex = base_x + k
                    if check and (ex >= width or ey >= height):
                        dropped += 1
                    else:
                        if fill:
                            out_x[n] = ex
                            out_y[n] = ey
                            out_t[n] = (high | low) * 1000
                            out_p[n] = pol
                        n += 1
            base_x += nbits
        elif code == 10 or code == 14:
            skipped += 1  # EXT_TRIGGER, OTHERS: not CD events
        elif code == 7 or code == 9 or code == 15:
            pass  # CONTINUED_4, padding, CONTINUED_12: payload of the word before
        else:
            return n, dropped, skipped, i
    if fill:
        state[0], state[1], state[2], state[3], state[4] = high, low, ey, base_x, pol
        state[5], state[6] = valid, have_high
    return n, dropped, skipped, -1


class Evt3Decoder:
    """EVT 3.0 words -> Events in sensor time (ns); keeps the stream state between calls."""

    def __init__(self) -> None:
        self.state = np.zeros(7, dtype=np.int64)

    def __call__(self, words: np.ndarray, width: int, height: int) -> tuple[Events, int, int]:
        """(Events, dropped, skipped non-CD events)."""
        words = np.ascontiguousarray(words, dtype=np.uint16)
        empty = np.empty(0, np.int64)
        count, _, _, bad = _evt3_kernel(words, self.state.copy(), width, height, False, empty, empty, empty, empty)
        if bad >= 0:
            raise CodecError(f"evt3: unsupported event code {int(words[bad]) >> 12} in word {bad}")
        x = np.empty(count, np.uint16)
        y = np.empty(count, np.uint16)
        t = np.empty(count, np.int64)
        p = np.empty(count, np.int8)
        n, dropped, skipped, _ = _evt3_kernel(words, self.state, width, height, True, x, y, t, p)
        return Events(x, y, t, p), int(dropped), int(skipped)


def decode_mono(raw: np.ndarray, time_base: int, width: int, height: int, bigendian: bool = False) -> tuple[Events, int]:
    """libcaer 'mono' packed events -> Events in sensor time (ns), dropped count. Vectorised numpy."""
    if len(raw) % 8:
        raise CodecError(f"mono: {len(raw)} bytes of events is not a multiple of 8")
    w = np.frombuffer(raw, dtype=">u8" if bigendian else "<u8").astype(np.uint64, copy=False)
    with np.errstate(over="ignore"):  # modulo 2**64, as the C++ decoder's uint64 sum
        t = ((w & np.uint64(0xFFFFFFFF)) + np.uint64(time_base)).view(np.int64)
    x = ((w >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.uint16)
    y = ((w >> np.uint64(48)) & np.uint64(0x7FFF)).astype(np.uint16)
    p = (w >> np.uint64(63)).astype(np.int8)
    ev = Events(x, y, t, p)
    return ev.inside(height, width)


def _parse_packet(data) -> tuple:
    buf = memoryview(data).cast("B")
    seq_h, stamp_ns, frame_id, off = parse_header(buf)
    try:
        height, width, seq, time_base, n = struct.unpack_from("<IIQQI", buf, off)
        off += 28
        encoding = bytes(buf[off : off + n]).decode("ascii")
        off += n
        bigendian, size = struct.unpack_from("<BI", buf, off)
        off += 5
    except (struct.error, UnicodeDecodeError) as exc:
        raise CodecError(f"truncated or malformed EventPacket ({exc})") from None
    if len(buf) != off + size:
        raise CodecError(f"EventPacket declares {size} bytes of events but {len(buf) - off} follow")
    raw = np.frombuffer(buf, dtype=np.uint8, count=size, offset=off)
    return stamp_ns, frame_id, height, width, seq, time_base, encoding, bool(bigendian), raw


class EventPacketDecoder:
    """Stateful decoder for one EventPacket stream (one topic): ``decoder(bytes) -> EventArrayMsg``.

    Event times come out in ROS time: libcaer and libcaer_cmp carry sensor time synchronised
    to the epoch already (used as is); mono and evt3 carry a sensor clock, mapped as
    ``header.stamp + (t - time_base)``. `sensor_offset_ns` of the result undoes the mapping.
    """

    ENCODINGS = ("libcaer_cmp", "libcaer", "evt3", "mono")
    _SINCE_EPOCH = ("libcaer", "libcaer_cmp")

    def __init__(self) -> None:
        self._evt3 = Evt3Decoder()
        self._cmp = LibcaerCmpDecoder()

    def __call__(self, data) -> EventArrayMsg:
        stamp_ns, frame_id, height, width, seq, time_base, encoding, bigendian, raw = _parse_packet(data)
        skipped = 0
        if encoding in self._SINCE_EPOCH and bigendian:
            raise CodecError(f"EventPacket: big-endian {encoding} packets are not supported")
        if encoding == "libcaer_cmp":
            ev, dropped, skipped = self._cmp(raw, time_base, width, height)
        elif encoding == "libcaer":
            ev, dropped = decode_libcaer(raw, time_base, width, height)
        elif encoding == "mono":
            ev, dropped = decode_mono(raw, time_base, width, height, bigendian)
        elif encoding == "evt3":
            if len(raw) % 2:
                raise CodecError(f"evt3: {len(raw)} bytes of events is not a multiple of 2")
            words = np.frombuffer(raw, dtype=">u2" if bigendian else "<u2")
            ev, dropped, skipped = self._evt3(words, width, height)
        else:
            raise CodecError(f"EventPacket encoding {encoding!r} is not supported; supported: {', '.join(self.ENCODINGS)}")
        offset = 0 if encoding in self._SINCE_EPOCH else stamp_ns - int(time_base)
        if not -(1 << 62) < offset < 1 << 62:
            raise CodecError(f"EventPacket: time_base {time_base} is decades away from the stamp {stamp_ns}")
        if len(ev) and offset:
            ev = Events(ev.x, ev.y, ev.t + offset, ev.p)
        return EventArrayMsg(ev, int(height), int(width), stamp_ns, frame_id, int(seq), dropped, skipped, offset)


def decode_event_packet(data, decoder: EventPacketDecoder | None = None) -> EventArrayMsg:
    """Decode one EventPacket; pass the same `decoder` for consecutive messages of a stream."""
    return (decoder or EventPacketDecoder())(data)


def encode_event_packet(
    events: Events, height: int, width: int, *, stamp_ns: int | None = None, time_base: int | None = None,
    frame_id: str = "", seq: int = 0, encoding: str = "mono",
) -> bytes:
    """Serialize events as one EventPacket (tests, fixtures, converters), round-trip exact.

    encoding "mono" (the deprecated libcaer_driver format), "libcaer" or "libcaer_cmp" (see
    wire.libcaer for their limits). time_base defaults to the first event's time and stamp_ns
    to time_base (the drivers' convention), so decoding gives back the events' times exactly.
    The bytes are the same for event_array_msgs/EventArray (only the type name differs).
    """
    n = len(events)
    if time_base is None:
        time_base = int(events.t[0]) if n else 0
    if stamp_ns is None:
        stamp_ns = time_base
    if encoding == "mono":
        dt = events.t - stamp_ns  # decoding gives stamp + (time_base + dt - time_base)
        if n and (dt.min() < 0 or dt.max() > 0xFFFFFFFF):
            raise ValueError("encode_event_packet: event times must lie within 4.29 s after stamp_ns")
        if n and (events.x.max() > 0xFFFF or events.y.max() > 0x7FFF):
            raise ValueError("encode_event_packet: coordinates out of range (x < 65536, y < 32768)")
        w = (dt.astype(np.uint64) | (events.x.astype(np.uint64) << np.uint64(32))
             | (events.y.astype(np.uint64) << np.uint64(48)) | ((events.p > 0).astype(np.uint64) << np.uint64(63)))
        body = w.astype("<u8").tobytes()
    elif encoding == "libcaer":
        body = encode_libcaer(events, time_base)
    elif encoding == "libcaer_cmp":
        body = encode_libcaer_cmp(events, time_base)
    else:
        raise ValueError(f"encode_event_packet: cannot write encoding {encoding!r} (mono, libcaer, libcaer_cmp)")
    enc = encoding.encode("ascii")
    return b"".join((
        serialize_header(stamp_ns, frame_id, seq),
        struct.pack("<IIQQI", height, width, seq, time_base, len(enc)), enc,
        struct.pack("<BI", 0, len(body)), body,
    ))


EVENT_TYPES = (dvs_msgs.EVENT_ARRAY_TYPE, EVENT_PACKET_TYPE, EVENT_ARRAY_MSGS_TYPE)
"""Every event message type this package decodes (ROS1 names)."""


def decoder_for(msg_type: str, md5: str) -> Callable[[bytes], EventArrayMsg]:
    """The decode function for an event topic's connection type and md5 (one per subscription).

    `msg_type` may be ROS1 ('pkg/Type') or ROS2-style ('pkg/msg/Type'). ValueError for other
    types or an md5 that does not match the known definition.
    """
    name = msg_type.replace("/msg/", "/")
    known = {dvs_msgs.EVENT_ARRAY_TYPE: dvs_msgs.EVENT_ARRAY_MD5, EVENT_PACKET_TYPE: EVENT_PACKET_MD5,
             EVENT_ARRAY_MSGS_TYPE: EVENT_PACKET_MD5}
    if name not in known:
        raise ValueError(f"no event decoder for message type {msg_type!r}; supported: {', '.join(known)}")
    if md5 not in ("*", known[name]):
        raise ValueError(f"{name} with md5 {md5} does not match the known definition ({known[name]})")
    if name == dvs_msgs.EVENT_ARRAY_TYPE:
        return decode_event_array
    return EventPacketDecoder()
