"""libcaer_driver's EventPacket encodings: "libcaer" and "libcaer_cmp" (decode and encode).

Formats as ros-event-camera/event_camera_codecs defines them (libcaer_decoder.h,
libcaer_cmp_decoder.h, libcaer_cmp_types.h); little endian; times in ns since the epoch
(both formats carry sensor time already synchronised to ROS time: hasSensorTimeSinceEpoch).

"libcaer": libcaer's polarity events, 8 bytes each: u32 data, i32 timestamp (µs).
    x = (data >> 17) & 0x7FFF, y = (data >> 2) & 0x7FFF, polarity = (data >> 1) & 1 (bit 0,
    libcaer's valid mark, is not looked at). t = time_base + 1000 * ts, where the timestamp is
    sign-extended to 64 bits and every fall of it inside one packet adds one overflow of
    2**31 µs (the count restarts with each packet). Arithmetic is modulo 2**64, as the C++.

"libcaer_cmp": 16-bit words, code = word >> 12, payload = word & 0xFFF:
    0 TIME_HIGH  t_high = payload << 12          1 TIME_LOW  t_low = payload
    2 ADDR_X     x = payload & 0x7FF             3 ADDR_Y    event at (x, payload & 0x7FF),
                                                             polarity bit 11
    4 VECT_BASE_Y  base_y = payload & 0x7FF, vector polarity bit 11
    5 VECT_8     bit i of payload & 0xFF: event at (x, base_y + i); then base_y += 8
    anything else (VECT_12 and codes 7-15) is not a CD event: skipped and counted.
    t = time_base + 1000 * (t_high | t_low); t_high and t_low restart at 0 with each packet,
    while x, base_y and the vector polarity carry over from the previous packet of the stream
    (as the reference decoder's members do). Events outside width x height are dropped (the
    reference skips them silently; here they are counted).

    LibcaerCmpDecoder()          stateful: decoder(raw, time_base, width, height) -> (Events, dropped, skipped)
    decode_libcaer(raw, time_base, width, height) -> (Events, dropped)
    encode_libcaer(events, time_base) -> bytes
    encode_libcaer_cmp(events, time_base) -> bytes

Out-of-bounds events are dropped and counted only when width and height are known (> 0) for
"libcaer"; "libcaer_cmp" follows its reference, which needs the geometry (0 drops all).
"""
from __future__ import annotations

import numba
import numpy as np

from ..events.types import Events
from .ros1 import CodecError

LIBCAER_RECORD = np.dtype([("data", "<u4"), ("ts", "<i4")])
_OVERFLOW_NS = np.uint64((1 << 31) * 1000)
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.int64)


def decode_libcaer(raw: np.ndarray, time_base: int, width: int, height: int) -> tuple[Events, int]:
    """"libcaer" bytes -> (Events with t in ns, events dropped outside width x height). numpy."""
    if len(raw) % LIBCAER_RECORD.itemsize:
        raise CodecError(f"libcaer: {len(raw)} bytes of events is not a multiple of {LIBCAER_RECORD.itemsize}")
    rec = np.frombuffer(raw, dtype=LIBCAER_RECORD)
    ts_low = rec["ts"].astype(np.int64).view(np.uint64)  # sign-extended, as static_cast<int32_t> then uint64
    rollovers = np.zeros(len(rec), np.uint64)
    if len(rec) > 1:
        rollovers[1:] = np.cumsum(ts_low[1:] < ts_low[:-1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        t = (np.uint64(time_base) + rollovers * _OVERFLOW_NS + ts_low * np.uint64(1000)).view(np.int64)
    data = rec["data"]
    ev = Events(((data >> 17) & 0x7FFF).astype(np.uint16), ((data >> 2) & 0x7FFF).astype(np.uint16), t,
                ((data >> 1) & 1).astype(np.int8))
    return ev.inside(height, width)


# stream state carried between packets: x, base_y, vector polarity
_C_X, _C_BASEY, _C_POL = range(3)


@numba.njit(cache=True, nogil=True)
def _cmp_kernel(words, state, time_base, width, height, out_x, out_y, out_t, out_p):
    """One pass over libcaer_cmp words; returns (events written, dropped, skipped words)."""
    ex, base_y, vpol = state[0], state[1], state[2]
    t_high = np.uint64(0)
    t_low = np.uint64(0)
    n = 0
    dropped = 0
    skipped = 0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        code = w >> 12
        if code == 3:  # ADDR_Y
            y = w & 0x7FF
            if ex < width and y < height:
                out_x[n] = ex
                out_y[n] = y
                out_t[n] = np.int64((t_high | t_low) * np.uint64(1000) + time_base)
                out_p[n] = (w >> 11) & 1
                n += 1
            else:
                dropped += 1
        elif code == 2:  # ADDR_X
            ex = w & 0x7FF
        elif code == 1:  # TIME_LOW
            t_low = np.uint64(w & 0xFFF)
        elif code == 0:  # TIME_HIGH
            t_high = np.uint64(w & 0xFFF) << np.uint64(12)
        elif code == 4:  # VECT_BASE_Y
            vpol = (w >> 11) & 1
            base_y = w & 0x7FF
        elif code == 5:  # VECT_8
            valid = w & 0xFF
            for k in range(8):
                if (valid >> k) & 1:
                    y = (base_y + k) & 0xFFFF
                    if ex < width and y < height:
                        out_x[n] = ex
                        out_y[n] = y
                        out_t[n] = np.int64((t_high | t_low) * np.uint64(1000) + time_base)
                        out_p[n] = vpol
                        n += 1
                    else:
                        dropped += 1
            base_y = (base_y + 8) & 0xFFFF
        else:
            skipped += 1
    state[0], state[1], state[2] = ex, base_y, vpol
    return n, dropped, skipped


class LibcaerCmpDecoder:
    """libcaer_cmp words -> Events (ns); one per stream, it keeps x / base_y / polarity between packets."""

    def __init__(self) -> None:
        self.state = np.zeros(3, dtype=np.int64)

    def __call__(self, raw: np.ndarray, time_base: int, width: int, height: int) -> tuple[Events, int, int]:
        if len(raw) % 2:
            raise CodecError(f"libcaer_cmp: {len(raw)} bytes of events is not a multiple of 2")
        words = np.frombuffer(raw, dtype="<u2")
        codes = words >> 12
        # an exact bound of what the packet can hold, so the arrays are never larger than needed
        bound = int(np.count_nonzero(codes == 3)) + int(_POPCOUNT8[words[codes == 5] & 0xFF].sum())
        x, y = np.empty(bound, np.uint16), np.empty(bound, np.uint16)
        t, p = np.empty(bound, np.int64), np.empty(bound, np.int8)
        n, dropped, skipped = _cmp_kernel(words, self.state, np.uint64(time_base), int(width), int(height),
                                          x, y, t, p)
        return Events(x[:n], y[:n], t[:n], p[:n]), int(dropped), int(skipped)


def _relative_us(events: Events, time_base: int, what: str) -> np.ndarray:
    dt = events.t - np.int64(time_base)
    if len(dt) and (dt.min() < 0 or np.any(dt % 1000)):
        raise ValueError(f"{what}: event times must be whole µs at or after time_base")
    return dt // 1000


def encode_libcaer(events: Events, time_base: int) -> bytes:
    """Events -> "libcaer" bytes (valid bit set); times must be whole µs after time_base, and
    consecutive events less than 2**31 µs apart so each overflow shows as a falling timestamp."""
    us = _relative_us(events, time_base, "encode_libcaer")
    if len(us) and (np.any(np.diff(us) < 0) or np.any(np.diff(us) >= 1 << 31)):
        raise ValueError("encode_libcaer: times must be sorted and less than 2**31 µs apart")
    if len(events) and (events.x.max() > 0x7FFF or events.y.max() > 0x7FFF):
        raise ValueError("encode_libcaer: coordinates must be < 32768")
    rec = np.empty(len(events), LIBCAER_RECORD)
    rec["data"] = ((events.x.astype(np.uint32) << 17) | (events.y.astype(np.uint32) << 2)
                   | ((events.p > 0).astype(np.uint32) << 1) | np.uint32(1))
    rec["ts"] = (us % (1 << 31)).astype(np.int32)
    return rec.tobytes()


def encode_libcaer_cmp(events: Events, time_base: int) -> bytes:
    """Events -> "libcaer_cmp" words. Time words only when the time changes, ADDR_X only when x
    changes (and at the packet's start, so a packet never depends on the one before), and a
    run of >= 2 events of one time, x and polarity with rising y within 8 rows as VECT_BASE_Y +
    VECT_8. Decoding gives the events back in their order. Times must be whole µs within 2**24
    µs after time_base; x, y < 2048."""
    us = _relative_us(events, time_base, "encode_libcaer_cmp")
    if len(us) and us.max() >= 1 << 24:
        raise ValueError("encode_libcaer_cmp: times must lie within 2**24 µs (16.7 s) after time_base")
    if len(events) and (events.x.max() > 0x7FF or events.y.max() > 0x7FF):
        raise ValueError("encode_libcaer_cmp: coordinates must be < 2048")
    x, y, p = events.x.astype(np.int64), events.y.astype(np.int64), (events.p > 0).astype(np.int64)
    out: list[int] = []
    high = low = cur_x = -1
    i, n = 0, len(us)
    while i < n:
        h, lo = int(us[i]) >> 12, int(us[i]) & 0xFFF
        if h != high:
            out.append((0 << 12) | h)
            high, low = h, -1
        if lo != low:
            out.append((1 << 12) | lo)
            low = lo
        if x[i] != cur_x:
            out.append((2 << 12) | int(x[i]))
            cur_x = int(x[i])
        j = i + 1  # a vector: same time, x and polarity, y rising inside [y_i, y_i + 8)
        while (j < n and us[j] == us[i] and x[j] == x[i] and p[j] == p[i] and y[j] > y[j - 1]
               and y[j] < y[i] + 8):
            j += 1
        if j - i >= 2:
            bits = 0
            for k in range(i, j):
                bits |= 1 << int(y[k] - y[i])
            out.append((4 << 12) | (int(p[i]) << 11) | int(y[i]))
            out.append((5 << 12) | bits)
        else:
            out.append((3 << 12) | (int(p[i]) << 11) | int(y[i]))
        i = j
    return np.asarray(out, dtype="<u2").tobytes()
