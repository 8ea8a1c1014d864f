"""Recordings that are not bags, read as a Bag is: DV's AEDAT4 and Prophesee RAW files.

    Aedat4Recording(path), RawRecording(path)   FileRecording: Bag's reading interface
    BagError, TopicInfo                          the vocabulary both share (io.bag re-exports them)

`io.bag.open_recording(path)` is the one way in: a Bag for ROS1 / rosbag2, one of these for
.aedat4 / .raw. Every offline command (info, train, evaluate, visualize, convert) reads through
it, so an .aedat4 or a .raw works wherever a bag does. A file recording
presents the topics of rpg_dvs_ros' DAVIS driver:

    /dvs/events     dvs_msgs/EventArray   one message per AEDAT4 event packet / RAW data chunk
    /dvs/image_raw  sensor_msgs/Image     AEDAT4 frames (mono8; rgb8 / rgba8 for colour sensors)
    /dvs/exposure   std_msgs/Int32        each frame's exposure in µs (rpg_dvs_ros publishes it too)
    /dvs/imu        sensor_msgs/Imu       AEDAT4 IMU samples: m/s² and rad/s (DV stores g and °/s)

and `other_streams` counts what has no ROS1 form here (AEDAT4 triggers).

Time. AEDAT4 times are µs since the epoch (DV's clock) -> ns. A frame is stamped at the middle
of its exposure, (exposure begin + exposure end) / 2: the instant libcaer's
caerFrameEventGetTimestamp64 gives and rpg_dvs_ros' davis driver stamps its images with, so a
frame meets the same events in a converted bag and in the AEDAT4 file (aedat reports this
instant as the frame's `t`; dv-processing reports the exposure start). RAW times are the
sensor's µs clock -> ns (a RAW file carries no epoch).

AEDAT4 is read with `aedat` (neuromorphicsystems, PyPI), one decoder per pass: streams are read
in file order and each iterator makes its own pass, so several may be open at once (samples
walk events and frames side by side). RAW files are decoded by wire.prophesee in chunks of
CHUNK_BYTES (bounded memory whatever the file's size), one /dvs/events message per 10 ms of
sensor time (RAW_MESSAGE_NS), as a driver publishes.
"""
from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..events.types import Events
from ..wire import dvs_msgs
from ..wire.dvs_msgs import EventArrayMsg, encode_event_array, screen_time_outliers
from ..wire.prophesee import decoder_for_encoding, read_raw_header, word_bytes
from ..wire.ros1 import CodecError, serialize_header
from ..wire.sensor_msgs import ImageMsg, encode_image

EVENTS_TOPIC, IMAGE_TOPIC, EXPOSURE_TOPIC, IMU_TOPIC = "/dvs/events", "/dvs/image_raw", "/dvs/exposure", "/dvs/imu"
AEDAT4_SUFFIXES = (".aedat4",)
RAW_SUFFIXES = (".raw",)
CHUNK_BYTES = 1 << 20
RAW_MESSAGE_NS = 10_000_000  # RAW files are sliced into /dvs/events messages of 10 ms of sensor time
STANDARD_GRAVITY = 9.80665
IMU_TYPE, INT32_TYPE, IMAGE_TYPE = "sensor_msgs/Imu", "std_msgs/Int32", "sensor_msgs/Image"
# ROS1 definitions of the two standard types written here beside events and images
_IMU_MD5, _INT32_MD5 = "6a62c6daae103f4ff57a132d6f95cec2", "da5909fbe378aeaf85e547e830cc1bb7"


class BagError(RuntimeError):
    """A recording cannot be read as asked (missing file, topic or type, corrupt data)."""


@dataclass(frozen=True)
class TopicInfo:
    topic: str
    msgtype: str  # ROS1 style, e.g. dvs_msgs/EventArray (the first, where a topic carries several)
    md5: str  # ROS1 md5 sum; "" in rosbag2 bags (they carry none)
    count: int
    types: tuple[str, ...] = ()  # every type recorded on the topic

    def __post_init__(self) -> None:
        if not self.types:
            object.__setattr__(self, "types", (self.msgtype,))


@dataclass(frozen=True)
class _Item:
    topic: str
    t_ns: int
    value: Any  # EventArrayMsg | ImageMsg | (exposure µs) int | IMU record


class Recording:
    """What every recording reader shares (io.bag.Bag and the FileRecordings): the events of a
    topic, and the glitched-clock screen on every decoded event message."""

    time_outliers = 0  # events dropped by `screen`, over every pass made so far

    def event_messages(self, topic: str | None = None, start_ns: int | None = None,
                       stop_ns: int | None = None) -> Iterator[tuple[int, EventArrayMsg]]:
        raise NotImplementedError

    def screen(self, msg: EventArrayMsg) -> EventArrayMsg:
        """Events with a glitched clock out of a decoded message (wire.screen_time_outliers),
        counted in `time_outliers` (every pass over the recording counts again)."""
        msg = screen_time_outliers(msg)
        self.time_outliers += msg.time_outliers
        return msg

    def events(self, topic: str | None = None, start_ns: int | None = None,
               stop_ns: int | None = None) -> Iterator[Events]:
        """Events per non-empty message of an event topic, in recording order."""
        for _, msg in self.event_messages(topic, start_ns, stop_ns):
            if len(msg.events):
                yield msg.events


class FileRecording(Recording):
    """Bag's reading interface over a file that is not a bag (see the module doc)."""

    kind = "?"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BagError(f"no such recording: {self.path}")

    # one pass over the file, in file order; `counting` adds "(name)" items (value: a count) for
    # the streams without a ROS1 form
    def _items(self, topics: set[str] | None = None, counting: bool = False) -> Iterator[_Item]:
        raise NotImplementedError

    def __enter__(self) -> "FileRecording":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def _declared_topics(self) -> list[str]:
        """Topics the file declares (listed with 0 messages when it holds none)."""
        return []

    @functools.cached_property
    def _scan(self) -> tuple[dict[str, TopicInfo], int, int, dict[str, int]]:
        """One pass: messages per topic, first and last time, and what has no ROS1 form (counted)."""
        counts: dict[str, int] = {t: 0 for t in self._declared_topics()}
        others: dict[str, int] = {}
        start, end = None, None
        for item in self._items(counting=True):
            if item.topic.startswith("("):  # "(triggers)": a stream without a ROS1 form here
                others[item.topic.strip("()")] = others.get(item.topic.strip("()"), 0) + int(item.value)
                continue
            counts[item.topic] = counts.get(item.topic, 0) + 1
            start = item.t_ns if start is None else min(start, item.t_ns)
            end = item.t_ns if end is None else max(end, item.t_ns)
        info = {t: TopicInfo(t, self._type(t), self._md5(t), n) for t, n in counts.items()}
        return info, start or 0, end or 0, others

    @staticmethod
    def _type(topic: str) -> str:
        return {EVENTS_TOPIC: dvs_msgs.EVENT_ARRAY_TYPE, IMAGE_TOPIC: IMAGE_TYPE, EXPOSURE_TOPIC: INT32_TYPE,
                IMU_TOPIC: IMU_TYPE}[topic]

    def _md5(self, topic: str) -> str:
        return self.ros1_definition(topic)[1]

    @property
    def topics(self) -> dict[str, TopicInfo]:
        return self._scan[0]

    @property
    def start_ns(self) -> int:
        return self._scan[1]

    @property
    def end_ns(self) -> int:
        return self._scan[2]

    @property
    def other_streams(self) -> dict[str, int]:
        return self._scan[3]

    def event_topics(self) -> list[str]:
        return [t for t in self.topics if t == EVENTS_TOPIC]

    def _check(self, topic: str | None, wanted: str) -> str:
        topic = topic or EVENTS_TOPIC
        if topic not in self.topics:
            raise BagError(f"{self.path}: no topic {topic!r}; topics: {sorted(self.topics)}")
        if self._type(topic) != wanted:
            raise BagError(f"{self.path}: topic {topic} has type {self._type(topic)}, expected {wanted}")
        return topic

    def _between(self, items: Iterable[_Item], start_ns: int | None, stop_ns: int | None) -> Iterator[_Item]:
        for item in items:
            if (start_ns is None or item.t_ns >= start_ns) and (stop_ns is None or item.t_ns < stop_ns):
                yield item

    def event_messages(self, topic: str | None = None, start_ns: int | None = None,
                       stop_ns: int | None = None) -> Iterator[tuple[int, EventArrayMsg]]:
        topic = self._check(topic, dvs_msgs.EVENT_ARRAY_TYPE)
        for item in self._between(self._items({topic}), start_ns, stop_ns):
            yield item.t_ns, self.screen(item.value)

    def images(self, topic: str, start_ns: int | None = None, stop_ns: int | None = None) -> Iterator[ImageMsg]:
        topic = self._check(topic, IMAGE_TYPE)
        for item in self._between(self._items({topic}), start_ns, stop_ns):
            yield item.value

    def raw_messages(self, topics: Iterable[str] | None = None, start_ns: int | None = None,
                     stop_ns: int | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, ROS1 type, time ns, ROS1 wire bytes): what `evdistill convert ros1` writes."""
        wanted = set(self.topics) if topics is None else set(topics)
        for item in self._between(self._items(wanted), start_ns, stop_ns):
            yield item.topic, self._type(item.topic), item.t_ns, self._encode(item)

    def _encode(self, item: _Item) -> bytes:
        v = item.value
        if item.topic == EVENTS_TOPIC:
            return encode_event_array(v.events, v.height, v.width, v.stamp_ns, v.frame_id)
        if item.topic == IMAGE_TOPIC:
            return encode_image(v.image, v.stamp_ns, v.encoding, v.frame_id)
        if item.topic == EXPOSURE_TOPIC:
            return struct.pack("<i", int(v))
        if item.topic == IMU_TOPIC:
            return encode_imu(item.t_ns, v)
        raise BagError(f"{self.path}: no ROS1 form for {item.topic}")

    def ros1_definition(self, topic: str) -> tuple[str, str]:
        name = self._type(topic)
        if name == dvs_msgs.EVENT_ARRAY_TYPE:
            return dvs_msgs.event_array_definition(), dvs_msgs.EVENT_ARRAY_MD5
        from rosbags.typesys import Stores, get_typestore  # on use: only a copy to a ROS1 bag needs it

        msgdef, md5 = get_typestore(Stores.ROS1_NOETIC).generate_msgdef(name.replace("/", "/msg/", 1))
        return msgdef, md5


def encode_imu(stamp_ns: int, imu: Any) -> bytes:
    """sensor_msgs/Imu ROS1 bytes of one DV IMU sample (g -> m/s², °/s -> rad/s; no orientation:
    orientation_covariance[0] = -1, as REP 145 says for an IMU without an orientation estimate)."""
    deg = np.pi / 180.0
    cov_unknown = [-1.0] + [0.0] * 8
    return b"".join((
        serialize_header(stamp_ns, "imu"),
        struct.pack("<4d", 0.0, 0.0, 0.0, 1.0), struct.pack("<9d", *cov_unknown),
        struct.pack("<3d", imu["gyroscope_x"] * deg, imu["gyroscope_y"] * deg, imu["gyroscope_z"] * deg),
        struct.pack("<9d", *[0.0] * 9),
        struct.pack("<3d", imu["accelerometer_x"] * STANDARD_GRAVITY, imu["accelerometer_y"] * STANDARD_GRAVITY,
                    imu["accelerometer_z"] * STANDARD_GRAVITY),
        struct.pack("<9d", *[0.0] * 9),
    ))


_FRAME_ENCODINGS = {"L": "mono8", "RGB": "rgb8", "RGBA": "rgba8"}


class Aedat4Recording(FileRecording):
    """An AEDAT4 file written by iniVation's DV (events, frames, IMU; triggers counted)."""

    kind = "aedat4"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        try:
            import aedat
        except ImportError:
            raise BagError("reading .aedat4 needs the Python package aedat: pip install aedat (in the project venv)"
                           ) from None
        self._aedat = aedat
        try:
            streams = aedat.Decoder(str(self.path)).id_to_stream()
        except Exception as exc:  # noqa: BLE001 - the decoder raises its own kinds on a broken file
            raise BagError(f"{self.path}: not a readable AEDAT4 file ({type(exc).__name__}: {exc})") from None
        self.streams = {int(k): dict(v) for k, v in streams.items()}
        self.event_streams = [k for k, v in self.streams.items() if v.get("type") == "events"]
        self.size = {k: (int(v.get("height", 0)), int(v.get("width", 0))) for k, v in self.streams.items()}

    def _declared_topics(self) -> list[str]:
        kinds = {v.get("type") for v in self.streams.values()}
        return ([EVENTS_TOPIC] if "events" in kinds else []) + ([IMAGE_TOPIC, EXPOSURE_TOPIC] if "frame" in kinds
                                                                 else []) + ([IMU_TOPIC] if "imus" in kinds else [])

    def _packets(self) -> Iterator[dict]:
        try:
            for packet in self._aedat.Decoder(str(self.path)):
                yield packet
        except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file: one line, never a traceback
            raise BagError(f"{self.path}: damaged AEDAT4 data ({type(exc).__name__}: {exc})") from None

    def _items(self, topics: set[str] | None = None, counting: bool = False) -> Iterator[_Item]:
        def want(t: str) -> bool:
            return topics is None or t in topics

        first_events = self.event_streams[0] if self.event_streams else None
        for packet in self._packets():
            sid = int(packet["stream_id"])
            if "events" in packet and sid == first_events and want(EVENTS_TOPIC):
                ev = packet["events"]
                if not len(ev):
                    continue
                h, w = self.size[sid]
                events = Events(ev["x"], ev["y"], ev["t"].astype(np.int64) * 1000, ev["on"].astype(np.int8))
                inside = events.in_bounds(h, w)
                dropped = int(len(events) - inside.sum())
                if dropped:
                    events = events[inside]
                stamp = int(events.t[-1]) if len(events) else int(ev["t"][-1]) * 1000
                yield _Item(EVENTS_TOPIC, stamp, EventArrayMsg(events, h, w, stamp, "dvs", dropped=dropped))
            elif "frame" in packet and (want(IMAGE_TOPIC) or want(EXPOSURE_TOPIC)):
                f = packet["frame"]
                stamp = (int(f["exposure_begin_t"]) + int(f["exposure_end_t"])) * 500  # µs midpoint -> ns
                if want(IMAGE_TOPIC):
                    yield _Item(IMAGE_TOPIC, stamp, ImageMsg(stamp, *self._frame(sid, f), "dvs"))
                if want(EXPOSURE_TOPIC):
                    yield _Item(EXPOSURE_TOPIC, stamp, int(f["exposure_end_t"]) - int(f["exposure_begin_t"]))
            elif "imus" in packet and want(IMU_TOPIC):
                for imu in packet["imus"]:
                    yield _Item(IMU_TOPIC, int(imu["t"]) * 1000, imu)
            elif "triggers" in packet and counting and len(packet["triggers"]):
                yield _Item("(triggers)", int(packet["triggers"]["t"][0]) * 1000, len(packet["triggers"]))

    def _frame(self, sid: int, f: dict) -> tuple[str, np.ndarray]:
        encoding = _FRAME_ENCODINGS.get(str(f["format"]))
        if encoding is None:
            raise BagError(f"{self.path}: frame format {f['format']!r} is not supported "
                           f"({', '.join(_FRAME_ENCODINGS)})")
        pixels = np.asarray(f["pixels"])
        h, w = self.size.get(sid) or pixels.shape[:2]
        ox, oy = int(f.get("offset_x", 0)), int(f.get("offset_y", 0))
        if (ox, oy) != (0, 0) or pixels.shape[:2] != (h, w):  # a region of interest: placed on the full sensor
            canvas = np.zeros((h, w) + pixels.shape[2:], pixels.dtype)
            ph, pw = min(pixels.shape[0], h - oy), min(pixels.shape[1], w - ox)
            canvas[oy:oy + ph, ox:ox + pw] = pixels[:ph, :pw]
            pixels = canvas
        return encoding, np.ascontiguousarray(pixels)


class RawRecording(FileRecording):
    """A Prophesee RAW file (EVT 2.0 / EVT 3.0): events only."""

    kind = "raw"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        with open(self.path, "rb") as f:
            try:
                self.header = read_raw_header(f, str(self.path))
            except CodecError as exc:
                raise BagError(str(exc)) from None
        self.width, self.height = self.header.width, self.header.height

    def _declared_topics(self) -> list[str]:
        return [EVENTS_TOPIC]

    def _items(self, topics: set[str] | None = None, counting: bool = False) -> Iterator[_Item]:
        if topics is not None and EVENTS_TOPIC not in topics:
            return
        decode = decoder_for_encoding(self.header.encoding)
        size = word_bytes(self.header.encoding)
        with open(self.path, "rb") as f:
            f.seek(self.header.data_offset)
            seq = 0
            while True:
                data = f.read(CHUNK_BYTES)
                if not data:
                    break
                usable = len(data) - len(data) % size  # a partial last word (a cut file) is dropped
                try:
                    events, dropped, skipped = decode(data[:usable], self.width, self.height)
                except CodecError as exc:
                    raise BagError(f"{self.path}: corrupt {self.header.encoding.upper()} data near byte "
                                   f"{f.tell() - len(data)}: {exc}") from None
                # one message per RAW_MESSAGE_NS of sensor time, as a driver publishes (a chunk of a
                # sparse recording can span minutes; a message should not)
                if not len(events):
                    continue
                cuts = np.flatnonzero(np.diff(events.t // RAW_MESSAGE_NS)) + 1
                for k, (a, b) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, len(events)])):
                    part = events[int(a):int(b)]
                    stamp = int(part.t[-1])
                    yield _Item(EVENTS_TOPIC, stamp, EventArrayMsg(part, self.height, self.width, stamp, "prophesee",
                                                                   seq, dropped if k == 0 else 0,
                                                                   skipped if k == 0 else 0))
                    seq += 1
