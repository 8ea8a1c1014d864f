"""numpy codec for the ROS1 wire bytes of `dvs_msgs/EventArray`.

Layout (little endian): Header (u32 seq, u32 sec, u32 nsec, u32 len + frame_id bytes),
u32 height, u32 width, u32 N, then N packed 13-byte records (u2 x, u2 y, u4 sec, u4 nsec,
u1 polarity). Decoding is one `np.frombuffer` over the records and one numba pass
(`kernels.unpack_event_records`); encoding is numpy. No per-event Python on either path.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .kernels import unpack_event_records
from .types import Events

EVENT_RECORD = np.dtype([("x", "<u2"), ("y", "<u2"), ("sec", "<u4"), ("nsec", "<u4"), ("p", "u1")])
assert EVENT_RECORD.itemsize == 13

_U32 = struct.Struct("<I")
_HEADER_FIXED = struct.Struct("<IIII")  # seq, sec, nsec, len(frame_id)
_NS = 1_000_000_000


class CodecError(ValueError):
    """The bytes are not a well-formed message of the expected type."""


@dataclass(frozen=True)
class EventArrayMsg:
    """A decoded `dvs_msgs/EventArray`: header fields, sensor size and events."""

    events: Events
    height: int
    width: int
    stamp_ns: int = 0
    frame_id: str = ""
    seq: int = 0
    dropped: int = 0  # events outside height x width, removed from `events`


def parse_header(buf: memoryview, offset: int = 0) -> tuple[int, int, str, int]:
    """Parse a std_msgs/Header at `offset`: (seq, stamp_ns, frame_id, next offset)."""
    if len(buf) < offset + _HEADER_FIXED.size:
        raise CodecError(f"truncated header: {len(buf) - offset} bytes, need at least {_HEADER_FIXED.size}")
    seq, sec, nsec, n = _HEADER_FIXED.unpack_from(buf, offset)
    offset += _HEADER_FIXED.size
    if len(buf) < offset + n:
        raise CodecError(f"truncated header: frame_id of {n} bytes, {len(buf) - offset} left")
    frame_id = bytes(buf[offset : offset + n]).decode("utf-8", errors="replace")
    return seq, sec * _NS + nsec, frame_id, offset + n


def serialize_header(stamp_ns: int, frame_id: str = "", seq: int = 0) -> bytes:
    fid = frame_id.encode("utf-8")
    sec, nsec = divmod(int(stamp_ns), _NS)
    return _HEADER_FIXED.pack(seq & 0xFFFFFFFF, sec, nsec, len(fid)) + fid


def records_to_events(records: np.ndarray, height: int = 0, width: int = 0) -> tuple[Events, int]:
    """Structured 13-byte records -> (Events with int64 ns and polarity 1/0, number inside).

    "Inside" counts events with x < width and y < height; a size of 0 means unknown, and
    then every event counts as inside.
    """
    n = len(records)
    x, y = np.empty(n, np.uint16), np.empty(n, np.uint16)
    t, p = np.empty(n, np.int64), np.empty(n, np.int8)
    limit = 1 << 16  # beyond any uint16 coordinate
    inside = unpack_event_records(records, height or limit, width or limit, x, y, t, p)
    return Events(x, y, t, p), int(inside)


def decode_event_array(data: bytes | bytearray | memoryview, drop_out_of_bounds: bool = True) -> EventArrayMsg:
    """Decode the serialized bytes of one `dvs_msgs/EventArray`.

    Raises `CodecError` on truncated or inconsistent bytes. Events outside the declared
    sensor size are dropped and counted in `dropped` (unless the size is 0, i.e. unknown,
    or `drop_out_of_bounds` is False).
    """
    buf = memoryview(data).cast("B")
    seq, stamp_ns, frame_id, off = parse_header(buf)
    if len(buf) < off + 12:
        raise CodecError(f"truncated EventArray: {len(buf)} bytes, no room for height/width/length")
    height, width, n = struct.unpack_from("<III", buf, off)
    off += 12
    expected = off + n * EVENT_RECORD.itemsize
    if len(buf) != expected:
        raise CodecError(
            f"EventArray declares {n} events ({n * EVENT_RECORD.itemsize} bytes) but "
            f"{len(buf) - off} bytes follow the header"
        )
    records = np.frombuffer(buf, dtype=EVENT_RECORD, count=n, offset=off)
    check = drop_out_of_bounds and height and width
    events, inside = records_to_events(records, height if check else 0, width if check else 0)
    dropped = n - inside
    if dropped:
        events = events[events.in_bounds(height, width)]
    return EventArrayMsg(events, int(height), int(width), stamp_ns, frame_id, seq, dropped)


def encode_event_array(
    events: Events, height: int, width: int, stamp_ns: int | None = None, frame_id: str = "", seq: int = 0
) -> bytes:
    """Serialize events as one `dvs_msgs/EventArray`; the header stamp defaults to the last event."""
    n = len(events)
    if stamp_ns is None:
        stamp_ns = int(events.t[-1]) if n else 0
    if n and (events.t.min() < 0):
        raise ValueError("negative event timestamps cannot be encoded as ROS time")
    records = np.empty(n, dtype=EVENT_RECORD)
    records["x"] = events.x
    records["y"] = events.y
    sec, nsec = np.divmod(events.t, _NS)
    records["sec"] = sec
    records["nsec"] = nsec
    records["p"] = events.p > 0
    return b"".join(
        (serialize_header(stamp_ns, frame_id, seq), struct.pack("<III", height, width, n), records.tobytes())
    )
