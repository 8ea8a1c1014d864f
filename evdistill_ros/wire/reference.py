"""Plain-Python reference decoders, one event at a time as event_camera_codecs' C++ does.

Slow on purpose (1000x the numpy / numba decoders): the decoders of wire.libcaer are checked
against these in the tests, and bench/bench_wire.py times both in the same run. Each returns
[(t_ns, x, y, polarity), ...] in stream order.
"""
from __future__ import annotations

import struct

_U64 = (1 << 64) - 1


def libcaer(raw: bytes, time_base: int) -> list[tuple[int, int, int, int]]:
    """The "libcaer" encoding: 8-byte words (data, 31-bit microsecond time that wraps)."""
    out, ts_high, last = [], time_base, 0
    for i in range(0, len(raw) - len(raw) % 8, 8):
        data, ts = struct.unpack_from("<Ii", raw, i)
        low = ts & _U64  # sign-extended to 64 bits, then unsigned
        if low < last:
            ts_high = (ts_high + (1 << 31) * 1000) & _U64
        t = (ts_high + low * 1000) & _U64
        t = t - (1 << 64) if t >= 1 << 63 else t
        out.append((t, (data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF, (data >> 1) & 1))
        last = low
    return out


class LibcaerCmp:
    """The "libcaer_cmp" encoding; `LibcaerCmp()(raw, time_base, width, height)` gives (events, non-CD
    words skipped). Keeps x, base_y and the vector polarity between packets, as the C++ decoder's
    members."""

    def __init__(self) -> None:
        self.x = self.base_y = self.pol = 0

    def __call__(self, raw: bytes, time_base: int, width: int, height: int):
        out, skipped, high, low = [], 0, 0, 0
        for (w,) in struct.iter_unpack("<H", raw[: len(raw) - len(raw) % 2]):
            code, rest = w >> 12, w & 0xFFF
            if code == 3:
                y, p = rest & 0x7FF, (rest >> 11) & 1
                if self.x < width and y < height:
                    out.append(((high | low) * 1000 + time_base, self.x, y, p))
            elif code == 2:
                self.x = rest & 0x7FF
            elif code == 1:
                low = rest
            elif code == 0:
                high = rest << 12
            elif code == 4:
                self.base_y, self.pol = rest & 0x7FF, (rest >> 11) & 1
            elif code == 5:
                for i in range(8):
                    if rest & (1 << i):
                        y = (self.base_y + i) & 0xFFFF
                        if self.x < width and y < height:
                            out.append(((high | low) * 1000 + time_base, self.x, y, self.pol))
                self.base_y = (self.base_y + 8) & 0xFFFF
            else:
                skipped += 1
        return out, skipped


def evt2(raw: bytes, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Prophesee EVT 2.0 words, one at a time, as docs.prophesee.ai describes them (events
    outside the sensor and CD words before the first EVT_TIME_HIGH left out)."""
    out, high = [], None
    for (w,) in struct.iter_unpack("<I", raw[: len(raw) - len(raw) % 4]):
        kind = w >> 28
        if kind == 8:
            h = (w & 0x0FFFFFFF) << 6
            if high is not None and h < high % (1 << 34):
                high += 1 << 34
            high = (0 if high is None else high - high % (1 << 34)) + h
        elif kind in (0, 1) and high is not None:
            x, y = (w >> 11) & 0x7FF, w & 0x7FF
            if x < width and y < height:
                out.append(((high + ((w >> 22) & 0x3F)) * 1000, x, y, kind))
    return out


def evt3(raw: bytes, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Prophesee EVT 3.0 words, one at a time (the 24-bit time: TIME_HIGH bits 23-12, TIME_LOW
    bits 11-0; a TIME_HIGH more than 10 below the last is a rollover, as event_camera_codecs)."""
    out = []
    high = low = y = base_x = pol = 0
    rollover = 0
    have_high = valid = False
    for (w,) in struct.iter_unpack("<H", raw[: len(raw) - len(raw) % 2]):
        code, rest = w >> 12, w & 0xFFF
        if code == 8:
            if have_high and rest < high and high - rest > 10:
                rollover += 1 << 24
            high, have_high = rest, True
            continue
        if code == 6:
            low, valid = rest, valid or have_high
            continue
        if not valid:
            continue
        t = (rollover + (high << 12) + low) * 1000
        if code == 0:
            y = rest & 0x7FF
        elif code == 2:
            x = rest & 0x7FF
            if x < width and y < height:
                out.append((t, x, y, (rest >> 11) & 1))
        elif code == 3:
            base_x, pol = rest & 0x7FF, (rest >> 11) & 1
        elif code in (4, 5):
            n = 12 if code == 4 else 8
            for k in range(n):
                if rest & (1 << k) and base_x + k < width and y < height:
                    out.append((t, base_x + k, y, pol))
            base_x += n
    return out
