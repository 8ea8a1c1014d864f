"""Moved to evdistill_ros.wire.event_camera_msgs; this name stays for code written against it
(DESIGN.md names ``evdistill_ros.events.event_camera_msgs.decoder_for``)."""
from ..wire.event_camera_msgs import *  # noqa: F401,F403
from ..wire.event_camera_msgs import __all__  # noqa: F401
