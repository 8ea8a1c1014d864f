"""ROS1 wire primitives shared by every message codec: std_msgs/Header and the error type.

    CodecError                   the bytes are not a well-formed message of the expected type
    parse_header(buf, offset)    -> (seq, stamp_ns, frame_id, next offset)
    serialize_header(stamp_ns, frame_id="", seq=0) -> bytes

Layout (little endian): u32 seq, u32 sec, u32 nsec, u32 length + frame_id bytes.
"""
from __future__ import annotations

import struct

from ..errors import WireFormatError

_HEADER_FIXED = struct.Struct("<IIII")  # seq, sec, nsec, len(frame_id)
_NS = 1_000_000_000


class CodecError(WireFormatError):
    """The bytes are not a well-formed message of the expected type."""


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


