"""Which kind of bag a path is, and how `rosbags` opens it.

ROS1 bags are files; rosbag2 bags are folders with a metadata.yaml, or a lone .db3 / .mcap. Real
recorders leave bags rosbags refuses as written: a metadata.yaml with an empty storage_identifier
(taken here from the file's magic bytes) or a lone storage file with no metadata.yaml (topics, types
and counts read from the file itself: SQLite tables, MCAP summary / chunk indexes). Such a bag is
opened through a temporary folder of links and a repaired metadata.yaml; the user's files are never
written. rosbag2's event types are registered on one ROS2 typestore so bags without message
definitions (older sqlite3 ones) still read.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..wire.event_camera_msgs import EVENT_ARRAY_MSGS_TYPE, EVENT_PACKET_MSG, EVENT_PACKET_TYPE
from .recordings import BagError

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


def open_reader(path: str | os.PathLike):
    """An opened rosbags Reader for a ROS1 bag or rosbag2 bag (repaired in a shadow folder when its
    metadata cannot be used as written); BagError naming the file when it is not a readable bag."""
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
    reader = open_reader(path)
    try:
        yield reader
    finally:
        reader.close()
        if getattr(reader, "_evdistill_shadow", None) is not None:
            reader._evdistill_shadow.cleanup()
