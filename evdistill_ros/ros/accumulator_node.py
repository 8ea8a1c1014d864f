"""accumulator_node: events -> sliding-window embeddings.

Subscribes  events     (dvs_msgs/EventArray or event_camera_msgs/EventPacket, as raw bytes)
Publishes   ~embedding (evdistill_ros/EventEmbedding, header.stamp = window end, event_input =
                       the EventInput as JSON) at every stride
            ~stats     (std_msgs/String, JSON: events in / dropped, windows, resets, lag)
            /diagnostics (diagnostic_msgs/DiagnosticArray, 1 Hz: OK / WARN on drops or lag above
                       ~warn_drop_fraction (0.05) / ~warn_latency_ms (500), ERROR when a connected
                       event topic is silent for ~error_silence_s (5) or ~checkpoint is unreadable)
Parameters  ~checkpoint (the event input from its metadata; the file is watched every
            ~checkpoint_check_s = 5 s, and a new or replaced checkpoint restarts the windows
            with its input), ~representation, ~representation_params, ~window_ms, ~stride_ms,
            ~window_events, ~stride_events (override the checkpoint), ~height / ~width (only
            when messages carry no size), ~max_height / ~max_width (largest sensor a message may
            declare, default 2048), ~queue_size (event messages buffered while busy, default 200;
            the oldest are dropped beyond it). dynamic_reconfigure (cfg/Accumulator.cfg): the
            window settings; a change restarts the windows cleanly and is logged

    rosrun evdistill_ros accumulator_node events:=/davis/left/events _stride_ms:=10
"""
from __future__ import annotations

import json

import rospy
from rospy.numpy_msg import numpy_msg

from ..events.windows import Window
from ..models.reloading import FileWatch
from ..msg import EventEmbedding
from .common import (StatusPublisher, StreamAccumulator, WindowReconfigure, checkpoint_event_input,
                     event_input_from_ros, every, param, reconfigure_server, ros_time)
from .health import accumulator_health


class CheckpointFollower:
    """Keeps the accumulator on the event input of ~checkpoint, however late it appears."""

    def __init__(self, path: str, accumulator: StreamAccumulator | None = None):
        self.path = path
        self.accumulator = accumulator
        self.watch = FileWatch(path)
        self.base, self.error = checkpoint_event_input(path)
        if path and self.base is None:
            rospy.logerr("%s: using ~representation / the default until it can be read (checked every %g s)",
                         self.error, param("checkpoint_check_s"))

    def check(self) -> None:
        if not self.path or not self.watch.changed():
            return
        spec, self.error = checkpoint_event_input(self.path)
        if spec is None:
            rospy.logerr("checkpoint %s changed but cannot be used: %s", self.path, self.error)
            return
        self.base = spec
        if self.accumulator is not None:
            self.accumulator.set_input(event_input_from_ros(spec))


def main() -> int:
    rospy.init_node("accumulator_node")
    follower = CheckpointFollower(param("checkpoint"))
    pub = rospy.Publisher("~embedding", numpy_msg(EventEmbedding), queue_size=10)
    published = [0]

    def publish(w: Window, _received: float, frame_id: str) -> None:
        c, h, wd = w.embedding.shape
        spec = acc.spec
        msg = numpy_msg(EventEmbedding)(
            window_start=ros_time(w.t_start), window_end=ros_time(w.t_end), num_events=w.num_events,
            representation=spec.representation, event_input=json.dumps(spec.to_dict()), channels=c, height=h,
            width=wd, data=w.embedding.reshape(-1))
        msg.header.stamp, msg.header.frame_id = msg.window_end, frame_id
        pub.publish(msg)
        published[0] += 1

    acc = StreamAccumulator(event_input_from_ros(follower.base), publish)
    follower.accumulator = acc

    windows = WindowReconfigure(acc, lambda: follower.base)
    reconfigure_server("Accumulator", lambda config, _level: windows(config))
    every(param("checkpoint_check_s"), follower.check, "checkpoint watch")
    StatusPublisher(lambda: dict(acc.stats(), published=published[0], checkpoint_error=follower.error or None),
                    accumulator_health, "accumulating")
    rospy.spin()
    return 0
