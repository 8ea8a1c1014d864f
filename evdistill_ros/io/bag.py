"""Reading recordings: ROS1 bags and rosbag2 (sqlite3 .db3 or .mcap) alike, and one way in for
every recording kind the package reads (`open_recording`: a Bag, or DV's .aedat4 / Prophesee's .raw
as an io.recordings.FileRecording with the same reading interface).

Messages are handed to this package's numpy decoders as ROS1 wire bytes: rosbag2's CDR is
turned into ROS1 bytes by rosbags' typestore (`cdr_to_ros1`, a copy of the payload for the
byte-array messages events and images are), so one decoder serves both. Event topics of every
type the package decodes (wire.event_camera_msgs.EVENT_TYPES: dvs_msgs/EventArray,
event_camera_msgs/EventPacket in every supported encoding, event_array_msgs/EventArray) read
the same; other types are listed, never parsed. A 27 GB bag streams message by message in
bounded memory. Which kind of bag a path is and how it is opened: io.bag_layout; writing ROS1
bags: io.bag_writer.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..events.types import Events
from ..wire import dvs_msgs
from ..wire.dvs_msgs import EventArrayMsg
from ..wire.event_camera_msgs import (EVENT_ARRAY_MSGS_TYPE, EVENT_PACKET_MD5, EVENT_PACKET_TYPE, EVENT_TYPES,
                                      decoder_for, event_packet_definition)
from ..wire.ros1 import CodecError
from ..wire.sensor_msgs import ImageMsg, decode_image
from .bag_layout import bag_kind, is_bag, open_reader, ros1_type_name, ros2_typestore
from .recordings import (AEDAT4_SUFFIXES, RAW_SUFFIXES, Aedat4Recording, BagError, FileRecording, RawRecording,
                         Recording, TopicInfo)

__all__ = ["Bag", "BagError", "open_recording", "recording_kind", "is_recording", "topics", "iter_event_messages",
           "iter_events", "read_events", "iter_images", "bag_info"]


def recording_kind(path: str | os.PathLike) -> str:
    """"ros1" | "rosbag2" | "aedat4" | "raw"; BagError when `path` is none of them."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() in AEDAT4_SUFFIXES:
        return "aedat4"
    if p.is_file() and p.suffix.lower() in RAW_SUFFIXES:
        return "raw"
    return bag_kind(p)[0]


def is_recording(path: str | os.PathLike) -> bool:
    """A bag, DV's .aedat4 or Prophesee's .raw."""
    p = Path(path)
    return is_bag(p) or (p.is_file() and p.suffix.lower() in AEDAT4_SUFFIXES + RAW_SUFFIXES)


def open_recording(path: str | os.PathLike) -> "Bag | FileRecording":
    """One reader for any recording, opened once: a Bag for ROS1 / rosbag2, an
    io.recordings.FileRecording for .aedat4 and .raw (same reading interface)."""
    kind = recording_kind(path)
    if kind == "aedat4":
        return Aedat4Recording(path)
    if kind == "raw":
        return RawRecording(path)
    return Bag(path)


class Bag(Recording):
    """One bag (ROS1 or rosbag2), opened once: its topics and the messages of any of them.

        with Bag(path) as bag:
            bag.topics                          {topic: TopicInfo}
            bag.event_messages(topic)           (bag ns, EventArrayMsg) for any event type
            bag.events(topic)                   Events per non-empty message
            bag.images(topic)                   ImageMsg per sensor_msgs/Image
            bag.raw_messages(topics)            (topic, ROS1 type, bag ns, ROS1 bytes)

    Several iterators may be open at once (samples walk events, frames and labels side by
    side): the reader seeks to each message before reading it. Errors are BagError naming the
    bag, the topic and the bag time.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.kind, _ = bag_kind(path)
        self.reader = open_reader(path)
        self.typestore = ros2_typestore(self.reader.connections) if self.kind == "rosbag2" else None
        self.topics: dict[str, TopicInfo] = {}
        for conn in self.reader.connections:
            prev = self.topics.get(conn.topic)
            count = conn.msgcount + (prev.count if prev else 0)
            md5 = conn.digest if self.kind == "ros1" else ""
            name = ros1_type_name(conn.msgtype)
            types = prev.types if prev else ()
            types = types if name in types else (*types, name)
            # a topic recorded with two types (two publishers disagreeing) keeps both: `types`
            self.topics[conn.topic] = TopicInfo(conn.topic, prev.msgtype if prev else name, prev.md5 if prev else md5,
                                                count, types)

    def __enter__(self) -> "Bag":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.reader.close()
        shadow = getattr(self.reader, "_evdistill_shadow", None)
        if shadow is not None:
            shadow.cleanup()

    @property
    def start_ns(self) -> int:
        return int(self.reader.start_time) if self.reader.message_count else 0

    @property
    def end_ns(self) -> int:
        return int(self.reader.end_time) if self.reader.message_count else 0

    def event_topics(self) -> list[str]:
        return [t for t, info in self.topics.items() if info.msgtype in EVENT_TYPES]


    def _connections(self, topic: str | None, wanted: Iterable[str], what: str) -> list:
        wanted = set(wanted)
        conns = self.reader.connections
        if topic is not None:
            on_topic = [c for c in conns if c.topic == topic]
            if not on_topic:
                raise BagError(f"{self.path}: no topic {topic!r}; topics: {sorted({c.topic for c in conns})}")
            bad = [c for c in on_topic if ros1_type_name(c.msgtype) not in wanted]
            if bad:
                raise BagError(f"{self.path}: topic {topic} has type {ros1_type_name(bad[0].msgtype)}, "
                               f"expected {' or '.join(sorted(wanted))}")
            return on_topic
        matching = [c for c in conns if ros1_type_name(c.msgtype) in wanted]
        found = sorted({c.topic for c in matching})
        if len(found) != 1:
            raise BagError(f"{self.path}: {len(found)} {what} topics {found}; name one with a topic argument")
        return matching

    def _ros1_bytes(self, conns: list, start_ns: int | None, stop_ns: int | None) -> Iterator[tuple[object, int, bytes]]:
        for conn, bag_ns, raw in self.reader.messages(connections=conns, start=start_ns, stop=stop_ns):
            if self.typestore is not None:
                try:
                    raw = self.typestore.cdr_to_ros1(raw, conn.msgtype)
                except Exception as exc:  # noqa: BLE001 - rosbags raises many kinds on bad CDR
                    raise BagError(f"{self.path}: bad {conn.msgtype} on {conn.topic} at bag time {bag_ns} ns "
                                   f"({type(exc).__name__}: {exc})") from None
            yield conn, bag_ns, raw

    def ros1_definition(self, topic: str) -> tuple[str, str]:
        """(ROS1 message definition, md5) of a topic's type, for writing it to a ROS1 bag: the
        bag's own for ROS1 bags; for rosbag2, the event types' ROS1 definitions, ROS Noetic's
        for its standard types, else one generated from the bag's definition."""
        conn = next(c for c in self.reader.connections if c.topic == topic)
        if self.kind == "ros1":
            return getattr(conn.msgdef, "data", conn.msgdef), conn.digest
        name = ros1_type_name(conn.msgtype)
        if name in (EVENT_PACKET_TYPE, EVENT_ARRAY_MSGS_TYPE):
            return event_packet_definition(), EVENT_PACKET_MD5
        if name == dvs_msgs.EVENT_ARRAY_TYPE:
            return dvs_msgs.event_array_definition(), dvs_msgs.EVENT_ARRAY_MD5
        from rosbags.typesys import Stores, get_typestore  # on use: only a rosbag2 -> ROS1 copy needs it

        noetic = get_typestore(Stores.ROS1_NOETIC)
        if conn.msgtype in noetic.types:
            return noetic.generate_msgdef(conn.msgtype)
        return self.typestore.generate_msgdef(conn.msgtype, ros_version=1)

    def raw_messages(self, topics: Iterable[str] | None = None, start_ns: int | None = None,
                     stop_ns: int | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, ROS1 type name, bag time ns, ROS1 wire bytes) of the given topics (all: None)."""
        wanted = None if topics is None else set(topics)
        conns = [c for c in self.reader.connections if wanted is None or c.topic in wanted]
        if self.typestore is not None:
            unknown = sorted({c.msgtype for c in conns if c.msgtype not in self.typestore.types})
            if unknown:
                raise BagError(f"{self.path}: no message definition for {', '.join(unknown)} in this rosbag2 bag")
        for conn, bag_ns, raw in self._ros1_bytes(conns, start_ns, stop_ns) if conns else ():
            yield conn.topic, ros1_type_name(conn.msgtype), bag_ns, raw

    def event_messages(self, topic: str | None = None, start_ns: int | None = None,
                       stop_ns: int | None = None) -> Iterator[tuple[int, EventArrayMsg]]:
        """(bag time ns, EventArrayMsg) for each message of an event topic (any type in
        EVENT_TYPES), in bag order; one decoder per topic keeps the encodings' stream state."""
        conns = self._connections(topic, EVENT_TYPES, "event")
        decoders: dict[str, Callable[[bytes], EventArrayMsg]] = {}
        for conn in conns:
            try:
                decoders.setdefault(conn.topic, decoder_for(conn.msgtype, conn.digest if self.kind == "ros1" else "*"))
            except ValueError as exc:
                raise BagError(f"{self.path}: {conn.topic}: {exc}") from None
        for conn, bag_ns, raw in self._ros1_bytes(conns, start_ns, stop_ns):
            try:
                msg = decoders[conn.topic](raw)
            except CodecError as exc:
                raise BagError(f"{self.path}: corrupt {ros1_type_name(conn.msgtype)} on {conn.topic} at bag time "
                               f"{bag_ns} ns: {exc}") from exc
            yield bag_ns, self.screen(msg)

    def images(self, topic: str, start_ns: int | None = None, stop_ns: int | None = None) -> Iterator[ImageMsg]:
        """`sensor_msgs/Image` messages of a topic as `ImageMsg` (header stamp, encoding, array)."""
        conns = self._connections(topic, ("sensor_msgs/Image",), "image")
        for _, bag_ns, raw in self._ros1_bytes(conns, start_ns, stop_ns):
            try:
                yield decode_image(raw)
            except CodecError as exc:
                raise BagError(f"{self.path}: bad Image on {topic} at bag time {bag_ns} ns: {exc}") from exc


def topics(path: str | os.PathLike) -> dict[str, TopicInfo]:
    """Topics of a recording with their ROS1 type names, md5 sums and message counts."""
    with open_recording(path) as bag:
        return bag.topics


def iter_event_messages(
    path: str | os.PathLike, topic: str | None = None, start_ns: int | None = None, stop_ns: int | None = None
) -> Iterator[tuple[int, EventArrayMsg]]:
    """`Bag.event_messages` of a recording opened for this one iteration."""
    with open_recording(path) as bag:
        yield from bag.event_messages(topic, start_ns, stop_ns)


def iter_events(
    path: str | os.PathLike, topic: str | None = None, start_ns: int | None = None, stop_ns: int | None = None
) -> Iterator[Events]:
    """Stream the events of one topic as `Events` chunks (one per message), in bag order."""
    with open_recording(path) as bag:
        yield from bag.events(topic, start_ns, stop_ns)


def read_events(path: str | os.PathLike, topic: str | None = None) -> Events:
    """All events of a topic in one `Events` (for bags that fit in memory)."""
    return Events.concatenate(iter_events(path, topic))


def iter_images(
    path: str | os.PathLike, topic: str, start_ns: int | None = None, stop_ns: int | None = None
) -> Iterator[ImageMsg]:
    """`Bag.images` of a recording opened for this one iteration."""
    with open_recording(path) as bag:
        yield from bag.images(topic, start_ns, stop_ns)


def bag_info(path: str | os.PathLike) -> dict:
    """Per-topic type and message count; every event topic (any type in EVENT_TYPES) adds its
    events (decoded, so the count is exact for every encoding), first/last event time, rate,
    sensor size and the non-CD words skipped. Other types are listed, never parsed."""
    info: dict = {"path": str(path), "topics": {}}
    with open_recording(path) as bag:
        info["format"] = bag.kind
        info["start_ns"], info["end_ns"] = bag.start_ns, bag.end_ns
        info["duration_s"] = (bag.end_ns - bag.start_ns) / 1e9
        for t in bag.topics.values():
            info["topics"][t.topic] = {"type": t.msgtype, "md5": t.md5, "messages": t.count}
            if len(t.types) > 1:  # two publishers of different types on one topic: said, not hidden
                info["topics"][t.topic].update(type=" + ".join(t.types), types=list(t.types))
        for topic in bag.event_topics():
            s = {"events": 0, "first_ns": None, "last_ns": None, "height": 0, "width": 0, "skipped": 0, "dropped": 0,
                 "outliers": 0}
            for _, msg in bag.event_messages(topic):
                s["height"], s["width"] = s["height"] or msg.height, s["width"] or msg.width
                s["skipped"] += msg.skipped
                s["dropped"] += msg.dropped
                s["outliers"] += msg.time_outliers
                n = len(msg.events)
                s["events"] += n
                if n:
                    t0, t1 = int(msg.events.t.min()), int(msg.events.t.max())
                    s["first_ns"] = t0 if s["first_ns"] is None else min(s["first_ns"], t0)
                    s["last_ns"] = t1 if s["last_ns"] is None else max(s["last_ns"], t1)
            span = (s["last_ns"] - s["first_ns"]) / 1e9 if s["events"] else 0.0
            info["topics"][topic].update(
                events=s["events"], first_event_ns=s["first_ns"], last_event_ns=s["last_ns"],
                event_rate_hz=(s["events"] / span) if span > 0 else 0.0,
                sensor_size={"height": s["height"], "width": s["width"]},
                non_cd_skipped=s["skipped"], out_of_bounds_dropped=s["dropped"],
                time_outliers_dropped=s["outliers"],
            )
        if getattr(bag, "other_streams", None):
            info["other_streams"] = dict(bag.other_streams)  # AEDAT4 triggers: counted, no ROS1 form here
    return info
