"""Prophesee RAW files (Metavision): the ASCII header and the EVT 2.0 / EVT 3.0 event words.

RAW file (docs.prophesee.ai, "RAW File Format"): header lines "% <keyword> <value>\\n", ended by
"% end" or by the first line that does not start with "% "; then the sensor's words, little
endian. The encoding is "% evt 2.0" / "% evt 3.0" or "% format EVT2;..." / "% format EVT3;...";
the size is "% geometry WxH" or the format's height= / width=.

EVT 2.0 ("EVT 2.0 Format"): 32-bit words, type = word >> 28:
    CD_OFF (0) / CD_ON (1)  bits 27-22 timestamp LSB (6 bits), 21-11 x, 10-0 y
    EVT_TIME_HIGH (8)       bits 27-0 timestamp MSB (bits 33-6 of the µs clock)
    EXT_TRIGGER (10), OTHERS (14), CONTINUED (15): not CD events (skipped, counted)
    t (µs) = time_high << 6 | lsb; CD words before the first EVT_TIME_HIGH have no time
    and are skipped (counted); a TIME_HIGH that falls back is a 34-bit rollover.
EVT 3.0: wire.event_camera_msgs.Evt3Decoder (the same decoder metavision_driver's packets use).

    RawHeader, read_raw_header(f) -> RawHeader (file left at the first data byte)
    Evt2Decoder()  stateful: decoder(words uint32, width, height) -> (Events, dropped, skipped)
    decoder_for_encoding("evt2" | "evt3") -> callable(bytes, width, height) -> (Events, dropped, skipped)
    encode_evt2(events) -> bytes,  encode_evt3(events, vectorize=True) -> bytes   (sensor µs clock;
        tests and tools: write RAW files to the specification)
    raw_header_bytes(encoding, width, height) -> bytes

Times are the sensor's µs clock * 1000 (ns since the camera started): a RAW file carries no epoch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

import numba
import numpy as np

from ..events.types import Events
from .event_camera_msgs import Evt3Decoder
from .ros1 import CodecError

MAX_HEADER_BYTES = 1 << 20  # a header is a few hundred bytes; refuse to read text forever
ENCODINGS = ("evt2", "evt3")


@dataclass(frozen=True)
class RawHeader:
    encoding: str  # "evt2" | "evt3"
    width: int
    height: int
    data_offset: int
    fields: dict = field(default_factory=dict)


def read_raw_header(f: BinaryIO, name: str = "RAW file") -> RawHeader:
    """Parse the header at the start of `f`; CodecError naming what is missing."""
    fields: dict[str, str] = {}
    offset = 0
    while True:
        start = f.tell()
        if f.read(2) != b"% ":
            f.seek(start)
            break
        line = f.readline(MAX_HEADER_BYTES)
        offset = f.tell()
        if offset > MAX_HEADER_BYTES or not line.endswith(b"\n"):
            raise CodecError(f"{name}: a header line without an end (not a Prophesee RAW file?)")
        text = line.decode("ascii", errors="replace").strip()
        key, _, value = text.partition(" ")
        if key == "end":
            break
        fields[key] = value.strip()
    if not fields:
        raise CodecError(f"{name}: no '% ' header lines: not a Prophesee RAW file")
    fmt = fields.get("format", "")
    enc = fmt.split(";")[0].strip().lower() or {"2.0": "evt2", "3.0": "evt3"}.get(fields.get("evt", ""), "")
    if enc not in ENCODINGS:
        raise CodecError(f"{name}: encoding {enc or fields.get('evt') or '(none)'!r} is not supported "
                         f"(EVT 2.0 and EVT 3.0 are; the header says format={fmt!r}, evt={fields.get('evt')!r})")
    width = height = 0
    geometry = re.fullmatch(r"(\d+)x(\d+)", fields.get("geometry", ""))
    if geometry:
        width, height = int(geometry.group(1)), int(geometry.group(2))
    opts = dict(kv.split("=", 1) for kv in fmt.split(";")[1:] if "=" in kv)
    width = width or int(opts.get("width", 0) or 0)
    height = height or int(opts.get("height", 0) or 0)
    if not (0 < width <= 2048 and 0 < height <= 2048):
        raise CodecError(f"{name}: no sensor size in the header (% geometry WxH, or format ...;height=;width=)")
    return RawHeader(enc, width, height, f.tell(), fields)


def raw_header_bytes(encoding: str, width: int, height: int, extra: dict | None = None) -> bytes:
    """A RAW header as Metavision writes it (for tests and tools)."""
    name = {"evt2": ("2.0", "EVT2"), "evt3": ("3.0", "EVT3")}[encoding]
    lines = [f"% evt {name[0]}", f"% format {name[1]};height={height};width={width}", f"% geometry {width}x{height}",
             *(f"% {k} {v}" for k, v in (extra or {}).items()), "% end"]
    return ("\n".join(lines) + "\n").encode("ascii")


# ---------------------------------------------------------------------------------------------
# EVT 2.0

@numba.njit(cache=True, nogil=True)
def _evt2_kernel(words, state, width, height, fill, out_x, out_y, out_t, out_p):
    """One pass over EVT2 words; state = [time_high (µs, rollovers included), seen high].
    Returns (events, dropped, skipped)."""
    high, have = state[0], state[1]
    n = 0
    dropped = 0
    skipped = 0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        kind = w >> 28
        if kind == 8:
            h = (w & 0x0FFFFFFF) << 6
            if have and h < (high & ((1 << 34) - 1)):
                high += 1 << 34  # the 34-bit µs clock wrapped (every ~4.8 hours)
            high = (high & ~((1 << 34) - 1)) | h
            have = 1
        elif kind == 0 or kind == 1:
            if have == 0:
                skipped += 1
                continue
            x = (w >> 11) & 0x7FF
            y = w & 0x7FF
            if x >= width or y >= height:
                dropped += 1
                continue
            if fill:
                out_x[n] = x
                out_y[n] = y
                out_t[n] = (high | ((w >> 22) & 0x3F)) * 1000
                out_p[n] = kind
            n += 1
        else:
            skipped += 1  # EXT_TRIGGER, OTHERS, CONTINUED and reserved types: not CD events
    if fill:
        state[0], state[1] = high, have
    return n, dropped, skipped


class Evt2Decoder:
    """EVT 2.0 words -> Events (ns of the sensor clock); keeps the time base between calls."""

    def __init__(self) -> None:
        self.state = np.zeros(2, dtype=np.int64)

    def __call__(self, words: np.ndarray, width: int, height: int) -> tuple[Events, int, int]:
        words = np.ascontiguousarray(words, dtype=np.uint32)
        empty = np.empty(0, np.int64)
        count, _, _ = _evt2_kernel(words, self.state.copy(), width, height, False, empty, empty, empty, empty)
        x, y = np.empty(count, np.uint16), np.empty(count, np.uint16)
        t, p = np.empty(count, np.int64), np.empty(count, np.int8)
        _, dropped, skipped = _evt2_kernel(words, self.state, width, height, True, x, y, t, p)
        return Events(x, y, t, p), int(dropped), int(skipped)


def decoder_for_encoding(encoding: str) -> Callable[[bytes, int, int], tuple[Events, int, int]]:
    """A stateful decoder of RAW data bytes (whole words; a partial word is the caller's to keep)."""
    if encoding == "evt2":
        dec2 = Evt2Decoder()
        return lambda data, width, height: dec2(np.frombuffer(data, "<u4"), width, height)
    if encoding == "evt3":
        dec3 = Evt3Decoder()
        return lambda data, width, height: dec3(np.frombuffer(data, "<u2"), width, height)
    raise ValueError(f"unknown RAW encoding {encoding!r}; known: {', '.join(ENCODINGS)}")


def word_bytes(encoding: str) -> int:
    return 4 if encoding == "evt2" else 2


# ---------------------------------------------------------------------------------------------
# encoders (tests, tools)

def _us(events: Events) -> np.ndarray:
    if len(events) and (events.t.min() < 0 or np.any(np.diff(events.t) < 0)):
        raise ValueError("RAW encoding needs non-negative, non-decreasing event times")
    return events.t // 1000


def encode_evt2(events: Events) -> bytes:
    """Events -> EVT 2.0 words: an EVT_TIME_HIGH whenever the time's bits 33-6 change."""
    ts = _us(events)
    words: list[int] = []
    high = -1
    for x, y, t, p in zip(events.x.tolist(), events.y.tolist(), ts.tolist(), events.p.tolist()):
        h = (t >> 6) & 0x0FFFFFFF
        if h != high:
            words.append((8 << 28) | h)
            high = h
        words.append(((1 if p > 0 else 0) << 28) | ((t & 0x3F) << 22) | ((x & 0x7FF) << 11) | (y & 0x7FF))
    return np.asarray(words, dtype="<u4").tobytes()


def encode_evt3(events: Events, vectorize: bool = True) -> bytes:
    """Events -> EVT 3.0 words: TIME_HIGH / TIME_LOW when they change, ADDR_Y per row change, and
    for runs of same-time, same-row, same-polarity events on consecutive-ish x a VECT_BASE_X +
    VECT_12 / VECT_8 words (with `vectorize`), else ADDR_X."""
    ts = _us(events)
    words: list[int] = []
    high = low = y_cur = -1
    i, n = 0, len(events)
    xs, ys, ps = events.x.tolist(), events.y.tolist(), [1 if v > 0 else 0 for v in events.p.tolist()]
    tl = ts.tolist()
    while i < n:
        t = tl[i]
        h, lo = (t >> 12) & 0xFFF, t & 0xFFF
        if h != high:
            words.append((8 << 12) | h)
            high, low = h, -1
        if lo != low:
            words.append((6 << 12) | lo)
            low = lo
        if ys[i] != y_cur:
            words.append(ys[i] & 0x7FF)
            y_cur = ys[i]
        # a run: same time, row and polarity, x within 12 of the first, increasing
        j = i + 1
        while vectorize and j < n and tl[j] == t and ys[j] == ys[i] and ps[j] == ps[i] and xs[i] < xs[j] < xs[i] + 12 \
                and xs[j] > xs[j - 1]:
            j += 1
        if j - i >= 2:
            base = xs[i]
            words.append((3 << 12) | (ps[i] << 11) | (base & 0x7FF))
            bits = 0
            for k in range(i, j):
                bits |= 1 << (xs[k] - base)
            words.append((4 << 12) | (bits & 0xFFF))
            i = j
        else:
            words.append((2 << 12) | (ps[i] << 11) | (xs[i] & 0x7FF))
            i += 1
    return np.asarray(words, dtype="<u2").tobytes()
