"""Wire formats: the bytes of the ROS messages this package reads and writes, as numpy.

The ground floor beside `events`: io (bags), ros (nodes) and the tools all decode and encode
messages here, never by hand.

    ros1              std_msgs/Header, CodecError
    dvs_msgs          dvs_msgs/EventArray (rpg_dvs_ros, MVSEC): definition, md5, codec, summary
    event_camera_msgs event_camera_msgs/EventPacket (libcaer_driver, metavision_driver):
                      definition, decoders per encoding, decoder_for(type, md5)
    sensor_msgs       sensor_msgs/Image and CameraInfo
    warmup()          compile (or load) the numba kernels the decoders use
"""
from __future__ import annotations

import numpy as np

from ..events.types import Events
from .dvs_msgs import EventArrayMsg, decode_event_array, encode_event_array
from .event_camera_msgs import decoder_for
from .ros1 import CodecError
from .sensor_msgs import ImageMsg, decode_image, encode_image

__all__ = ["CodecError", "EventArrayMsg", "ImageMsg", "decode_event_array", "decode_image", "decoder_for",
           "encode_event_array", "encode_image", "warmup"]


def warmup() -> None:
    """Load the EventArray decoder's kernel before the first message waits for it (~0.3 s cold)."""
    ev = Events(np.array([0, 3], np.uint16), np.array([0, 9], np.uint16), np.array([0, 1000], np.int64),
                np.array([1, 0], np.int8))
    decode_event_array(encode_event_array(ev, 10, 10))
