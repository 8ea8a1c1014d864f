"""Plain-Python reference decoders, one event at a time as event_camera_codecs' C++ does.

Slow on purpose (1000x the numpy / numba decoders): the decoders of wire.libcaer are checked
against these in the tests, and bench/bench_wire.py times both in the same run. Each returns
[(t_ns, x, y, polarity), ...] in stream order.

    libcaer(raw, time_base)                                   "libcaer"
    LibcaerCmp()(raw, time_base, width, height) -> (events, non-CD words skipped)   "libcaer_cmp"
"""
from __future__ import annotations

import struct

_U64 = (1 << 64) - 1


def libcaer(raw: bytes, time_base: int) -> list[tuple[int, int, int, int]]:
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
    """Keeps x, base_y and the vector polarity between packets, as the C++ decoder's members."""

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
