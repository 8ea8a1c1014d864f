"""ROS1 bags written without ROS (over `rosbags`): events, images, camera info and raw messages.

Bags written here carry the standard type names and md5 sums, so `rosbag info`, `rosbag play` and
other tools read them; a bag is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import PendingFile
from ..events.types import Events
from ..wire import dvs_msgs
from ..wire.dvs_msgs import encode_event_array
from ..wire.sensor_msgs import encode_camera_info, encode_image
from .recordings import BagError

# Image and CameraInfo definitions with their md5 sums come from the ROS1 Noetic typestore.
_SENSOR_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo")
EVENT_ARRAY_ROS2_NAME = "dvs_msgs/msg/EventArray"


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
