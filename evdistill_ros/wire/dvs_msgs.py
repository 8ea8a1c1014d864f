"""The `dvs_msgs` (rpg_dvs_ros) message definitions, without needing the package.

rpg_dvs_ros is not packaged for Debian, yet MVSEC bags, DAVIS drivers and rqt tools all
speak `dvs_msgs/EventArray`. The definition text below is the package's own; its md5 sums
are what every bag and publisher carries. `message_classes()` returns the real classes when
dvs_msgs is installed and otherwise generates identical ones with genpy at run time.

Codec for the wire bytes of `dvs_msgs/EventArray` (little endian): Header, u32 height,
u32 width, u32 N, then N packed 13-byte records (u2 x, u2 y, u4 sec, u4 nsec, u1 polarity).
Decoding is one `np.frombuffer` over the records and one numba pass
(`events.kernels.unpack_event_records`); encoding is numpy. No per-event Python on either path.

    decode_event_array(data, drop_out_of_bounds=True) -> EventArrayMsg
    screen_time_outliers(msg, tolerance_ns=TIME_OUTLIER_NS) -> EventArrayMsg   glitched clocks out (counted);
        every reader applies it: io.bag (offline, all recordings) and the nodes' subscriber
    encode_event_array(events, height, width, stamp_ns=None, frame_id="", seq=0) -> bytes
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Any, Tuple

import numpy as np

from ..events.kernels import time_span, unpack_event_records
from ..events.types import Events
from .ros1 import CodecError, parse_header, serialize_header

_NS = 1_000_000_000

EVENT_TYPE = "dvs_msgs/Event"
EVENT_ARRAY_TYPE = "dvs_msgs/EventArray"
EVENT_MD5 = "40d339b261445b8ce9a6fef01267cd5d"
EVENT_ARRAY_MD5 = "5e8beee5a6c107e504c2e78903c224b8"

EVENT_MSG = """\
# A DVS event
uint16 x
uint16 y
time ts
bool polarity
"""

EVENT_ARRAY_MSG = """\
# This message contains an array of events
# (0, 0) is at top-left corner of image
#

Header header

uint32 height         # image height, that is, number of rows
uint32 width          # image width, that is, number of columns

# an array of events
Event[] events
"""

HEADER_MSG = """\
# Standard metadata for higher-level stamped data types.
# This is generally used to communicate timestamped data 
# in a particular coordinate frame.
# 
# sequence ID: consecutively increasing ID 
uint32 seq
#Two-integer timestamp that is expressed as:
# * stamp.sec: seconds (stamp_secs) since epoch (in Python the variable is called 'secs')
# * stamp.nsec: nanoseconds since stamp_secs (in Python the variable is called 'nsecs')
# time-handling sugar is provided by the client library
time stamp
#Frame this data is associated with
string frame_id
"""

_SEPARATOR = "=" * 80 + "\n"


def event_array_definition() -> str:
    """Full definition text with dependencies, as stored in bag connection headers."""
    return (
        EVENT_ARRAY_MSG
        + _SEPARATOR
        + "MSG: std_msgs/Header\n"
        + HEADER_MSG
        + _SEPARATOR
        + "MSG: dvs_msgs/Event\n"
        + EVENT_MSG
    )


_CLASSES: Tuple[Any, Any] | None = None


def message_classes() -> Tuple[Any, Any]:
    """(Event, EventArray) message classes: the installed dvs_msgs, else genpy-generated.

    Needs genpy (ROS); the rest of the library does not.
    """
    global _CLASSES
    if _CLASSES is None:
        try:
            from dvs_msgs.msg import Event, EventArray  # type: ignore[import-not-found]
        except ImportError:
            import genpy.dynamic

            generated = genpy.dynamic.generate_dynamic(EVENT_ARRAY_TYPE, event_array_definition())
            Event, EventArray = generated[EVENT_TYPE], generated[EVENT_ARRAY_TYPE]
        if EventArray._md5sum != EVENT_ARRAY_MD5 or Event._md5sum != EVENT_MD5:
            raise RuntimeError(
                f"dvs_msgs md5 mismatch: EventArray {EventArray._md5sum}, Event {Event._md5sum}; "
                f"expected {EVENT_ARRAY_MD5}, {EVENT_MD5}"
            )
        _CLASSES = (Event, EventArray)
    return _CLASSES


EVENT_RECORD = np.dtype([("x", "<u2"), ("y", "<u2"), ("sec", "<u4"), ("nsec", "<u4"), ("p", "u1")])
assert EVENT_RECORD.itemsize == 13


@dataclass(frozen=True)
class EventArrayMsg:
    """A decoded event message (dvs_msgs/EventArray, event_camera_msgs/EventPacket, ...): header
    fields, sensor size and events in ROS time (ns)."""

    events: Events
    height: int
    width: int
    stamp_ns: int = 0
    frame_id: str = ""
    seq: int = 0
    dropped: int = 0  # events outside height x width, removed from `events`
    skipped: int = 0  # non-CD words of the encoding (triggers, IMU markers, ...): never events
    sensor_offset_ns: int = 0  # events.t - sensor_offset_ns = the sensor time the encoding carries
    time_outliers: int = 0  # events far from the message's own time (screen_time_outliers), removed


# An event more than this from its message's own time is a glitched clock, not data (one event
# stamped 2**31 s in a recording turned a whole evaluation's windows into empty ones)
TIME_OUTLIER_NS = 10_000_000_000


def screen_time_outliers(msg: "EventArrayMsg", tolerance_ns: int = TIME_OUTLIER_NS) -> "EventArrayMsg":
    """`msg` without the events more than `tolerance_ns` from the message's own time (the median
    of five of its events spread over the message; for a lone event, the header stamp), counted
    in `time_outliers`. One pass (kernels.time_span) when nothing is that far apart (the usual case)."""
    t = msg.events.t
    n = len(t)
    if n == 0:
        return msg
    if n == 1:
        if not msg.stamp_ns or abs(int(t[0]) - int(msg.stamp_ns)) <= tolerance_ns:
            return msg
        keep = np.zeros(1, bool)
    else:
        if int(time_span(t)) <= tolerance_ns:
            return msg
        ref = int(np.median(t[[0, n // 4, n // 2, (3 * n) // 4, n - 1]]))
        keep = np.abs(t - ref) <= tolerance_ns
    dropped = int(n - keep.sum())
    return replace(msg, events=msg.events[keep], time_outliers=msg.time_outliers + dropped)


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

