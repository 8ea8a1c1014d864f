"""The `dvs_msgs` (rpg_dvs_ros) message definitions, without needing the package.

rpg_dvs_ros is not packaged for Debian, yet MVSEC bags, DAVIS drivers and rqt tools all
speak `dvs_msgs/EventArray`. The definition text below is the package's own; its md5 sums
are what every bag and publisher carries. `message_classes()` returns the real classes when
dvs_msgs is installed and otherwise generates identical ones with genpy at run time.
"""
from __future__ import annotations

from typing import Any, Tuple

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
