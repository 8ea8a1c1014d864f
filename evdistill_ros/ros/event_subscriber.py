"""Event topic subscription that skips rospy's typed deserialisation.

A typed dvs_msgs subscriber deserialises each event as a Python object and drops most
messages above ~0.4 Mev/s (DESIGN.md). Here the topic is subscribed as `rospy.AnyMsg`
with a large receive buffer; the connection header's type and md5 pick the numpy
decoder, so decoding runs at hundreds of Mev/s. Bad messages are counted and logged,
never raised into rospy.
"""
from __future__ import annotations

import time
from typing import Callable

import rospy

from ..wire import CodecError, EventArrayMsg, event_camera_msgs
from ..wire.dvs_msgs import screen_time_outliers
from .params import declared

Decoder = Callable[[bytes], EventArrayMsg]


def decoder_for(msg_type: str, md5: str) -> Decoder | None:
    """The numpy decoder for a connection's type and md5, or None for a type we do not speak."""
    try:
        return event_camera_msgs.decoder_for(msg_type, md5)
    except ValueError:
        return None


class EventSubscriber:
    """Subscribe to an event topic and call `callback(EventArrayMsg)` for each good message.

    Counters: `messages`, `bad_messages`, `wrong_type`, `dropped_out_of_bounds`,
    `dropped_time_outlier` (events more than ~time_outlier_s, default 10 s, from their message's
    own time: a glitched clock, wire.screen_time_outliers), and `busy_s`,
    the seconds spent decoding and in the callback (events / busy_s = what the node can take);
    `silent_s()` and `publishers()` tell whether a connected input has gone quiet.
    """

    def __init__(self, topic: str, callback: Callable[[EventArrayMsg], None], queue_size: int = 200,
                 buff_size: int = 1 << 26):
        self.callback = callback
        self.messages = self.bad_messages = self.wrong_type = self.dropped_out_of_bounds = 0
        self.dropped_time_outlier = 0
        self.time_outlier_ns = int(float(rospy.get_param("~time_outlier_s", declared("time_outlier_s").default)) * 1e9)
        self.busy_s = 0.0
        self.last_message = time.monotonic()  # silence counts from the subscription on
        self._decoders: dict[tuple[str, str], Decoder | None] = {}
        self.sub = rospy.Subscriber(topic, rospy.AnyMsg, self._on_message, queue_size=queue_size, buff_size=buff_size)

    def _on_message(self, msg: rospy.AnyMsg) -> None:
        start = self.last_message = time.monotonic()
        header = getattr(msg, "_connection_header", None) or {}
        key = (header.get("type", "?"), header.get("md5sum", "?"))
        if key not in self._decoders:
            self._decoders[key] = decoder_for(*key)
            if self._decoders[key] is None:
                rospy.logerr(
                    "%s: publisher %s sends %s (md5 %s); expected one of %s - ignoring its messages",
                    self.sub.resolved_name, header.get("callerid", "?"), *key, ", ".join(event_camera_msgs.EVENT_TYPES))
        decoder = self._decoders[key]
        if decoder is None:
            self.wrong_type += 1
            return
        try:
            decoded = decoder(msg._buff)
        except (CodecError, ValueError) as exc:
            self.bad_messages += 1
            rospy.logwarn_throttle(5.0, f"{self.sub.resolved_name}: dropping a malformed message ({exc})")
            return
        decoded = screen_time_outliers(decoded, self.time_outlier_ns)
        self.dropped_time_outlier += decoded.time_outliers
        self.callback(decoded)
        # counted after the callback, so a stats snapshot never shows a message whose windows are pending
        self.busy_s += time.monotonic() - start
        self.messages += 1
        self.dropped_out_of_bounds += decoded.dropped

    def silent_s(self) -> float:
        """Seconds since the last message (of any kind), or since a publisher was first seen
        connected: waiting without a publisher is not silence (asked once a second)."""
        now = time.monotonic()
        if self.publishers() == 0:
            self.last_message = now
        return now - self.last_message

    def publishers(self) -> int:
        return self.sub.get_num_connections()
