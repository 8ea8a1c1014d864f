"""Bags without ROS, over the `rosbags` library: ROS1 bags and rosbag2 (sqlite3 .db3 or .mcap)
read alike, ROS1 bags written.

    Bag(path)            one bag opened once: .topics, .event_messages(topic), .events(topic),
                         .images(topic), .raw_messages(topics); ROS1 file, rosbag2 folder, or
                         a rosbag2 .db3 / .mcap file. Quirks of real recorders are repaired in a
                         temporary folder (links + a metadata.yaml; the user's files are never
                         written): a metadata.yaml with an empty storage_identifier (taken from the
                         file's magic bytes), a lone .db3 / .mcap without one (topics, types and
                         counts read from the file: SQLite tables, MCAP summary / chunk indexes)
    bag_kind(path)       "ros1" | "rosbag2" (BagError when it is neither)
    open_recording(path) a Bag, or for DV's .aedat4 / Prophesee's .raw an io.recordings
                         FileRecording with the same reading interface; recording_kind, is_recording
    bag_info(path)       per topic: type, count; event topics: events, span, rate, sensor size
    iter_event_messages / iter_events / read_events / iter_images / topics   one-shot helpers
    BagWriter(path)      a ROS1 bag (events, images, camera info, raw messages), atomic

Messages are handed to this package's numpy decoders as ROS1 wire bytes: rosbag2's CDR is
turned into ROS1 bytes by rosbags' typestore (`cdr_to_ros1`, a copy of the payload for the
byte-array messages events and images are), so one decoder serves both. Event topics of every
type the package decodes (wire.event_camera_msgs.EVENT_TYPES: dvs_msgs/EventArray,
event_camera_msgs/EventPacket in every supported encoding, event_array_msgs/EventArray) read
the same; other types are listed, never parsed. A 27 GB bag streams message by message in
bounded memory. Bags written here carry the standard type names and md5 sums, so `rosbag
info`, `rosbag play` and other tools read them.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..atomic import PendingFile
from ..events.types import Events
from ..wire import dvs_msgs
from ..wire.dvs_msgs import EventArrayMsg, encode_event_array
from ..wire.event_camera_msgs import (EVENT_ARRAY_MSGS_TYPE, EVENT_PACKET_MD5, EVENT_PACKET_MSG, EVENT_PACKET_TYPE,
                                      EVENT_TYPES, decoder_for, event_packet_definition)
from ..wire.ros1 import CodecError
from ..wire.sensor_msgs import ImageMsg, decode_image, encode_camera_info, encode_image
from .recordings import (AEDAT4_SUFFIXES, RAW_SUFFIXES, Aedat4Recording, BagError, FileRecording, RawRecording,
                         Recording, TopicInfo)

# Image and CameraInfo definitions with their md5 sums (from the ROS1 Noetic typestore).
_SENSOR_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo")
EVENT_ARRAY_ROS2_NAME = "dvs_msgs/msg/EventArray"
ROSBAG2_SUFFIXES = (".db3", ".mcap")


def ros1_type_name(msgtype: str) -> str:
    """'sensor_msgs/msg/Image' -> 'sensor_msgs/Image' (rosbags reports ROS2-style names)."""
    return msgtype.replace("/msg/", "/")


def ros2_type_name(msgtype: str) -> str:
    """'sensor_msgs/Image' -> 'sensor_msgs/msg/Image'."""
    return msgtype if "/msg/" in msgtype else msgtype.replace("/", "/msg/", 1)


def bag_kind(path: str | os.PathLike) -> tuple[str, Path]:
    """("ros1", file) or ("rosbag2", folder or lone .db3 / .mcap file) for a path; BagError naming
    what was expected."""
    p = Path(path)
    if p.is_dir():
        if (p / "metadata.yaml").is_file():
            return "rosbag2", p
        lone = sorted(f for f in p.iterdir() if f.suffix in ROSBAG2_SUFFIXES)
        if len(lone) == 1:
            return "rosbag2", lone[0]
        raise BagError(f"{p}: a folder without metadata.yaml (and not one .db3 / .mcap) is not a rosbag2 bag")
    if p.is_file():
        if p.suffix in ROSBAG2_SUFFIXES:
            if (p.parent / "metadata.yaml").is_file():
                return "rosbag2", p.parent
            return "rosbag2", p  # a lone storage file: its metadata is read from the file itself
        return "ros1", p
    raise BagError(f"no such bag: {p}")


def _storage_of(file: Path) -> str:
    """"mcap" | "sqlite3" from a storage file's first bytes (not its name)."""
    with open(file, "rb") as f:
        magic = f.read(16)
    if magic.startswith(b"\x89MCAP0\r\n"):
        return "mcap"
    if magic.startswith(b"SQLite format 3\x00"):
        return "sqlite3"
    raise BagError(f"{file}: neither MCAP nor SQLite data (first bytes {magic[:8]!r})")


def _topics_from_sqlite(file: Path) -> tuple[list[dict], int, int]:
    import sqlite3

    con = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    try:
        cols = {r[1] for r in con.execute("PRAGMA table_info(topics)")}
        rows = con.execute("SELECT id, name, type, serialization_format"
                           + (", offered_qos_profiles" if "offered_qos_profiles" in cols else "") + " FROM topics")
        topics = {r[0]: r[1:] for r in rows}
        stats = {r[0]: r[1:] for r in con.execute(
            "SELECT topic_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM messages GROUP BY topic_id")}
    except sqlite3.DatabaseError as exc:
        raise BagError(f"{file}: not a rosbag2 database ({exc})") from None
    finally:
        con.close()
    out = [{"topic_metadata": {"name": name, "type": msgtype, "serialization_format": fmt,
                               "offered_qos_profiles": (qos[0] if qos else "") or ""},
            "message_count": int(stats.get(tid, (0,))[0])} for tid, (name, msgtype, fmt, *qos) in topics.items()]
    times = [v[1:] for v in stats.values()]
    return out, min((t[0] for t in times), default=0), max((t[1] for t in times), default=0)


def _topics_from_mcap(file: Path) -> tuple[list[dict], int, int]:
    from rosbags.rosbag2.errors import ReaderError
    from rosbags.rosbag2.storage_mcap import MCAPFile

    mcap = MCAPFile(file)
    try:
        mcap.open()
        if not mcap.channels:
            mcap.meta_scan()
        counts: dict[int, int] = {}
        if mcap.statistics is not None and mcap.statistics.channel_message_counts:
            import struct as _struct

            raw = mcap.statistics.channel_message_counts
            counts = {k: v for k, v in _struct.iter_unpack("<HQ", raw[: len(raw) - len(raw) % 10])}
            start, end = mcap.statistics.start_time, mcap.statistics.end_time
        else:  # no summary statistics: the chunk indexes count (a file cut short has none: counted as 0)
            for chunk in mcap.chunks:
                for cid, n in chunk.channel_count.items():
                    counts[cid] = counts.get(cid, 0) + n
            start = min((c.message_start_time for c in mcap.chunks), default=0)
            end = max((c.message_end_time for c in mcap.chunks), default=0)
    except ReaderError as exc:
        raise BagError(f"{file}: not a readable MCAP file ({exc})") from None
    finally:
        if mcap.bio is not None:
            mcap.close()
    out = [{"topic_metadata": {"name": ch.topic, "type": ch.schema, "serialization_format": ch.message_encoding,
                               "offered_qos_profiles": ""},
            "message_count": int(counts.get(cid, 0))} for cid, ch in mcap.channels.items()]
    return out, int(start), int(end)


def _metadata_for(folder: Path, file: Path | None) -> tuple[str, dict] | None:
    """A metadata.yaml rosbags can open, when the bag's own cannot be used as written: a lone
    storage file (no metadata.yaml: made from the file), or metadata whose storage_identifier is
    empty (taken from the file's magic bytes). None when the bag's own metadata is fine."""
    import yaml

    meta_path = folder / "metadata.yaml"
    if file is None and meta_path.is_file():
        try:
            doc = yaml.safe_load(meta_path.read_text())
            info = doc["rosbag2_bagfile_information"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            return None  # rosbags says what is wrong with it
        if info.get("storage_identifier"):
            return None
        files = [folder / Path(x).name for x in info.get("relative_file_paths") or []]
        if not files or not files[0].is_file():
            return None
        info["storage_identifier"] = _storage_of(files[0])
        return "storage_identifier was empty", doc
    storage = _storage_of(file)
    topics, start, end = (_topics_from_mcap if storage == "mcap" else _topics_from_sqlite)(file)
    info = {"version": 9 if storage == "mcap" else 5, "storage_identifier": storage,
            "relative_file_paths": [file.name], "duration": {"nanoseconds": max(0, end - start)},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": sum(t["message_count"] for t in topics), "topics_with_message_count": topics,
            "compression_format": "", "compression_mode": ""}
    return "no metadata.yaml: read from the file", {"rosbag2_bagfile_information": info}


def _shadow_folder(target: Path) -> tuple[Path, object | None]:
    """The folder rosbags opens: the bag's own, or a temporary one holding links to its files and
    a repaired metadata.yaml (the user's files are never written)."""
    import tempfile

    import yaml

    folder, file = (target, None) if target.is_dir() else (target.parent, target)
    fixed = _metadata_for(folder, file)
    if fixed is None:
        return folder, None
    tmp = tempfile.TemporaryDirectory(prefix="evdistill-rosbag2-")
    info = fixed[1]["rosbag2_bagfile_information"]
    for name in info["relative_file_paths"]:
        os.symlink((folder / Path(name).name).resolve(), Path(tmp.name) / Path(name).name)
    (Path(tmp.name) / "metadata.yaml").write_text(yaml.safe_dump(fixed[1], sort_keys=False))
    return Path(tmp.name), tmp


def is_bag(path: str | os.PathLike) -> bool:
    p = Path(path)
    if p.is_dir():
        return (p / "metadata.yaml").is_file() or len([f for f in p.iterdir() if f.suffix in ROSBAG2_SUFFIXES]) == 1
    return p.is_file() and p.suffix in (".bag",) + ROSBAG2_SUFFIXES


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


# rosbag2 bags often carry no message definitions (older sqlite3 ones): the event types are
# registered here so their CDR can be read all the same.
_DVS_EVENT_ROS2 = "uint16 x\nuint16 y\nbuiltin_interfaces/Time ts\nbool polarity\n"
_DVS_ARRAY_ROS2 = "std_msgs/Header header\nuint32 height\nuint32 width\ndvs_msgs/Event[] events\n"


_TYPESTORE = None


def ros2_typestore(connections) -> "object":
    """rosbags' ROS2 typestore with the event types, plus the types a bag's connections define.
    One per process (building it costs ~0.1 s, and rosbags caches its generated CDR converters
    on it); a type already known is never redefined."""
    global _TYPESTORE
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    if _TYPESTORE is None:
        store = get_typestore(Stores.ROS2_HUMBLE)
        packet = EVENT_PACKET_MSG.replace("Header header", "std_msgs/Header header")
        types = {}
        types.update(get_types_from_msg(packet, ros2_type_name(EVENT_PACKET_TYPE)))
        types.update(get_types_from_msg(packet, ros2_type_name(EVENT_ARRAY_MSGS_TYPE)))
        types.update(get_types_from_msg(_DVS_EVENT_ROS2, "dvs_msgs/msg/Event"))
        types.update(get_types_from_msg(_DVS_ARRAY_ROS2, "dvs_msgs/msg/EventArray"))
        store.register(types)
        _TYPESTORE = store
    store = _TYPESTORE
    for conn in connections:  # definitions the bag carries (mcap, newer sqlite3)
        fmt, text = conn.msgdef if isinstance(conn.msgdef, tuple) else (None, conn.msgdef)
        if text and conn.msgtype not in store.types and getattr(fmt, "name", "MSG") == "MSG":
            try:
                store.register({k: v for k, v in get_types_from_msg(text, conn.msgtype).items()
                                if k not in store.types})
            except Exception:  # noqa: BLE001 - an unparsable definition: the type stays unknown, listed only
                pass
    return store


def _open_reader(path: str | os.PathLike):
    kind, target = bag_kind(path)
    shadow = None
    if kind == "ros1":
        from rosbags.rosbag1 import Reader, ReaderError
    else:
        from rosbags.rosbag2 import Reader, ReaderError
    if kind == "ros1":
        with open(target, "rb") as f:
            if f.read(13) != b"#ROSBAG V2.0\n":
                raise BagError(f"{path}: not a ROS1 bag (no '#ROSBAG V2.0' header; rosbag2 bags are folders "
                               "or .db3 / .mcap files)")
    else:
        target, shadow = _shadow_folder(target)
    try:
        reader = Reader(target)
        reader.open()
    except (ReaderError, OSError, ValueError, KeyError) as exc:
        if shadow is not None:
            shadow.cleanup()
        hint = (" - was the recording cut short? `rosbag reindex` can rebuild a ROS1 bag's index"
                if kind == "ros1" and "index" in str(exc).lower() else "")
        raise BagError(f"{path}: a damaged {'ROS1' if kind == 'ros1' else 'rosbag2'} bag ({exc}){hint}") from exc
    reader._evdistill_shadow = shadow  # the repaired metadata's folder lives as long as the reader
    return reader
@contextmanager
def open_bag(path: str | os.PathLike):
    """Context manager around an opened rosbags Reader (ROS1 or rosbag2)."""
    reader = _open_reader(path)
    try:
        yield reader
    finally:
        reader.close()
        if getattr(reader, "_evdistill_shadow", None) is not None:
            reader._evdistill_shadow.cleanup()


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
        self.reader = _open_reader(path)
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
