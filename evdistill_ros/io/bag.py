"""ROS1 bag reading and writing without ROS, over the `rosbags` library.

Messages are read as raw bytes and decoded by this package's numpy codecs, so a 27 GB
MVSEC bag streams message by message in bounded memory and events never go through
per-event Python. Bags written here carry the standard type names and md5 sums
(`dvs_msgs/EventArray`, `sensor_msgs/Image`, `sensor_msgs/CameraInfo`), so `rosbag info`,
`rosbag play` and other tools read them.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..atomic import PendingFile
from ..wire import dvs_msgs
from ..wire.dvs_msgs import EventArrayMsg, decode_event_array, encode_event_array, summarize_event_array
from ..wire.ros1 import CodecError
from ..events.types import Events
from ..wire.sensor_msgs import ImageMsg, decode_image, encode_camera_info, encode_image

# Image and CameraInfo definitions with their md5 sums (from the ROS1 Noetic typestore).
_SENSOR_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo")
EVENT_ARRAY_ROS2_NAME = "dvs_msgs/msg/EventArray"


class BagError(RuntimeError):
    """A bag cannot be read as asked (missing file, topic or type)."""


def ros1_type_name(msgtype: str) -> str:
    """'sensor_msgs/msg/Image' -> 'sensor_msgs/Image' (rosbags reports ROS2-style names)."""
    return msgtype.replace("/msg/", "/")


@dataclass(frozen=True)
class TopicInfo:
    topic: str
    msgtype: str  # ROS1 style, e.g. dvs_msgs/EventArray
    md5: str
    count: int


def _open_reader(path: str | os.PathLike):
    from rosbags.rosbag1 import Reader, ReaderError

    path = Path(path)
    if not path.is_file():
        raise BagError(f"no such bag file: {path}")
    reader = Reader(path)
    try:
        reader.open()
    except ReaderError as exc:
        raise BagError(f"{path}: not a readable ROS1 bag ({exc})") from exc
    return reader


@contextmanager
def open_bag(path: str | os.PathLike):
    """Context manager around an opened rosbags Reader."""
    reader = _open_reader(path)
    try:
        yield reader
    finally:
        reader.close()


class Bag:
    """One bag, opened once: its topics and the messages of any of them, from one reader.

        with Bag(path) as bag:
            bag.topics                          {topic: TopicInfo}
            bag.event_messages(topic)           (bag ns, EventArrayMsg) per dvs_msgs/EventArray
            bag.events(topic)                   Events per non-empty message
            bag.images(topic)                   ImageMsg per sensor_msgs/Image

    Several iterators may be open at once (samples walk events, frames and labels side by
    side): the reader seeks to each message before reading it. Errors are BagError naming the
    bag, the topic and the bag time.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.reader = _open_reader(path)
        self.topics: dict[str, TopicInfo] = {}
        for conn in self.reader.connections:
            prev = self.topics.get(conn.topic)
            count = conn.msgcount + (prev.count if prev else 0)
            self.topics[conn.topic] = TopicInfo(conn.topic, ros1_type_name(conn.msgtype), conn.digest, count)

    def __enter__(self) -> "Bag":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.reader.close()

    def event_messages(self, topic: str | None = None, start_ns: int | None = None,
                       stop_ns: int | None = None) -> Iterator[tuple[int, EventArrayMsg]]:
        """(bag time ns, EventArrayMsg) for each `dvs_msgs/EventArray` message on `topic`, in bag order."""
        conns = _connections(self.reader, topic, EVENT_ARRAY_ROS2_NAME, "event")
        for conn in conns:
            if conn.digest != dvs_msgs.EVENT_ARRAY_MD5:
                raise BagError(f"{self.path}: {conn.topic} has md5 {conn.digest}, not dvs_msgs/EventArray's")
        for _, bag_ns, raw in self.reader.messages(connections=conns, start=start_ns, stop=stop_ns):
            try:
                yield bag_ns, decode_event_array(raw)
            except CodecError as exc:
                raise BagError(f"{self.path}: corrupt EventArray at bag time {bag_ns} ns: {exc}") from exc

    def events(self, topic: str | None = None, start_ns: int | None = None,
               stop_ns: int | None = None) -> Iterator[Events]:
        for _, msg in self.event_messages(topic, start_ns, stop_ns):
            if len(msg.events):
                yield msg.events

    def images(self, topic: str, start_ns: int | None = None, stop_ns: int | None = None) -> Iterator[ImageMsg]:
        """`sensor_msgs/Image` messages of a topic as `ImageMsg` (header stamp, encoding, array)."""
        conns = _connections(self.reader, topic, "sensor_msgs/Image", "image")
        for _, bag_ns, raw in self.reader.messages(connections=conns, start=start_ns, stop=stop_ns):
            try:
                yield decode_image(raw)
            except CodecError as exc:
                raise BagError(f"{self.path}: bad Image on {topic} at bag time {bag_ns} ns: {exc}") from exc


def topics(path: str | os.PathLike) -> dict[str, TopicInfo]:
    """Topics of a bag with their ROS1 type names, md5 sums and message counts."""
    with Bag(path) as bag:
        return bag.topics


def _connections(reader, topic: str | None, msgtype: str, what: str):
    wanted = ros1_type_name(msgtype)
    matching = [c for c in reader.connections if ros1_type_name(c.msgtype) == wanted]
    if topic is not None:
        on_topic = [c for c in reader.connections if c.topic == topic]
        if not on_topic:
            raise BagError(f"{reader.path}: no topic {topic!r}; topics: {sorted({c.topic for c in reader.connections})}")
        bad = [c for c in on_topic if ros1_type_name(c.msgtype) != wanted]
        if bad:
            raise BagError(f"{reader.path}: topic {topic} has type {ros1_type_name(bad[0].msgtype)}, expected {wanted}")
        return on_topic
    if len({c.topic for c in matching}) != 1:
        found = sorted({c.topic for c in matching})
        raise BagError(f"{reader.path}: {len(found)} {what} topics {found}; name one with a topic argument")
    return matching


def iter_event_messages(
    path: str | os.PathLike, topic: str | None = None, start_ns: int | None = None, stop_ns: int | None = None
) -> Iterator[tuple[int, EventArrayMsg]]:
    """`Bag.event_messages` of a bag opened for this one iteration."""
    with Bag(path) as bag:
        yield from bag.event_messages(topic, start_ns, stop_ns)


def iter_events(
    path: str | os.PathLike, topic: str | None = None, start_ns: int | None = None, stop_ns: int | None = None
) -> Iterator[Events]:
    """Stream the events of one topic as `Events` chunks (one per message), in bag order."""
    with Bag(path) as bag:
        yield from bag.events(topic, start_ns, stop_ns)


def read_events(path: str | os.PathLike, topic: str | None = None) -> Events:
    """All events of a topic in one `Events` (for bags that fit in memory)."""
    return Events.concatenate(iter_events(path, topic))


def iter_images(
    path: str | os.PathLike, topic: str, start_ns: int | None = None, stop_ns: int | None = None
) -> Iterator[ImageMsg]:
    """`Bag.images` of a bag opened for this one iteration."""
    with Bag(path) as bag:
        yield from bag.images(topic, start_ns, stop_ns)


def bag_info(path: str | os.PathLike) -> dict:
    """Per-topic summary; event topics add event count, time span, rate and sensor size."""
    info: dict = {"path": str(path), "topics": {}}
    with open_bag(path) as reader:
        info["duration_s"] = reader.duration / 1e9 if reader.message_count else 0.0
        info["start_ns"], info["end_ns"] = reader.start_time, reader.end_time
        for t in topics(path).values():
            info["topics"][t.topic] = {"type": t.msgtype, "md5": t.md5, "messages": t.count}
        event_conns = [c for c in reader.connections if ros1_type_name(c.msgtype) == dvs_msgs.EVENT_ARRAY_TYPE]
        stats: dict[str, dict] = {}
        for conn, _, raw in reader.messages(connections=event_conns):
            n, h, w, t0, t1 = summarize_event_array(raw)
            s = stats.setdefault(conn.topic, {"events": 0, "first_ns": None, "last_ns": None, "height": h, "width": w})
            s["events"] += n
            if n:
                s["first_ns"] = t0 if s["first_ns"] is None else min(s["first_ns"], t0)
                s["last_ns"] = t1 if s["last_ns"] is None else max(s["last_ns"], t1)
        for topic, s in stats.items():
            span = (s["last_ns"] - s["first_ns"]) / 1e9 if s["events"] else 0.0
            info["topics"][topic].update(
                events=s["events"],
                first_event_ns=s["first_ns"],
                last_event_ns=s["last_ns"],
                event_rate_hz=(s["events"] / span) if span > 0 else 0.0,
                sensor_size={"height": s["height"], "width": s["width"]},
            )
    return info


class BagWriter:
    """Write a ROS1 bag with events, images and camera info; use as a context manager.

    The file is written under a temporary name and renamed when closed without error,
    so a crash never leaves a half-written bag under the final name.
    """

    def __init__(self, path: str | os.PathLike, compression: str | None = None):
        from rosbags.rosbag1 import Writer

        self.path = Path(path)
        self._pending = PendingFile(self.path)
        self._writer = Writer(self._pending.tmp)
        if compression:
            self._writer.set_compression(getattr(Writer.CompressionFormat, compression.upper()))
        self._conns: dict[str, object] = {}
        self._typestore = None

    def __enter__(self) -> "BagWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._writer.close()
        if exc_type is None:
            self._pending.commit()
        else:
            self._pending.abort()

    def _connection(self, topic: str, msgtype: str, msgdef: str | None = None, md5: str | None = None):
        conn = self._conns.get(topic)
        if conn is None:
            if msgdef is not None and md5 is not None:
                pass  # a type this writer does not know (e.g. copied from another bag)
            elif msgtype == EVENT_ARRAY_ROS2_NAME:
                msgdef, md5 = dvs_msgs.event_array_definition(), dvs_msgs.EVENT_ARRAY_MD5
            else:
                if self._typestore is None:
                    from rosbags.typesys import Stores, get_typestore

                    self._typestore = get_typestore(Stores.ROS1_NOETIC)
                msgdef, md5 = self._typestore.generate_msgdef(msgtype)
            conn = self._writer.add_connection(topic, msgtype, msgdef=msgdef, md5sum=md5)
            self._conns[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f"topic {topic} already carries {conn.msgtype}, cannot write {msgtype}")
        return conn

    def write_raw(self, topic: str, msgtype: str, bag_ns: int, raw: bytes, msgdef: str | None = None,
                  md5: str | None = None) -> None:
        """Write serialized bytes; `msgdef` and `md5` are needed for types other than the ones
        written above (given once, on the topic's first message)."""
        self._writer.write(self._connection(topic, msgtype, msgdef, md5), int(bag_ns), raw)

    def write_events(
        self, topic: str, events: Events, height: int, width: int, stamp_ns: int | None = None, frame_id: str = ""
    ) -> None:
        """One EventArray; header stamp and bag time default to the last event's time."""
        if stamp_ns is None:
            stamp_ns = int(events.t[-1]) if len(events) else 0
        raw = encode_event_array(events, height, width, stamp_ns, frame_id)
        self.write_raw(topic, EVENT_ARRAY_ROS2_NAME, stamp_ns, raw)

    def write_image(
        self, topic: str, stamp_ns: int, image: np.ndarray, encoding: str | None = None, frame_id: str = ""
    ) -> None:
        self.write_raw(topic, _SENSOR_TYPES[0], stamp_ns, encode_image(image, stamp_ns, encoding, frame_id))

    def write_camera_info(
        self, topic: str, stamp_ns: int, height: int, width: int, K: np.ndarray, D: np.ndarray | None = None,
        frame_id: str = "",
    ) -> None:
        raw = encode_camera_info(stamp_ns, height, width, K, D, frame_id=frame_id)
        self.write_raw(topic, _SENSOR_TYPES[1], stamp_ns, raw)
