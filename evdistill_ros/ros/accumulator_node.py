"""accumulator_node: events -> sliding-window embeddings.

Subscribes  events     (dvs_msgs/EventArray or event_camera_msgs/EventPacket, as raw bytes)
Publishes   ~embedding (evdistill_ros/EventEmbedding, header.stamp = window end) at every stride
            ~stats     (std_msgs/String, JSON: events in / dropped, windows, resets, lag)
Parameters  ~checkpoint (representation and window from its metadata), ~representation,
            ~representation_params, ~window_ms, ~stride_ms, ~window_events, ~stride_events,
            ~height / ~width (only when messages carry no size), ~queue_size (event messages
            buffered while busy, default 200; the oldest are dropped beyond it)

    rosrun evdistill_ros accumulator_node events:=/davis/left/events _stride_ms:=10
"""
from __future__ import annotations

import rospy
from rospy.numpy_msg import numpy_msg

from ..events.windows import Window
from .common import StatsPublisher, StreamAccumulator, WindowConfig, param, ros_time


def checkpoint_representation(path: str):
    """The representation stored in a checkpoint's metadata, or None (logged) when it cannot be read."""
    if not path:
        return None
    try:
        from ..models import load_checkpoint

        _, meta = load_checkpoint(path)
        rep = meta.get("representation")
        if not isinstance(rep, dict):
            rospy.logerr("checkpoint %s is an APS network (representation %r): using the default representation",
                         path, rep)
            return None
        return rep
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint: say so, run with defaults
        rospy.logerr("cannot read checkpoint %s (%s): using ~representation / defaults", path, exc)
        return None


def main() -> int:
    rospy.init_node("accumulator_node")
    from ..msg import EventEmbedding

    cfg = WindowConfig.from_ros(checkpoint_representation(param("checkpoint", "")))
    pub = rospy.Publisher("~embedding", numpy_msg(EventEmbedding), queue_size=10)
    published = [0]

    def publish(w: Window, _received: float, frame_id: str) -> None:
        c, h, wd = w.embedding.shape
        msg = numpy_msg(EventEmbedding)(
            window_start=ros_time(w.t_start), window_end=ros_time(w.t_end), num_events=w.num_events,
            representation=cfg.representation, channels=c, height=h, width=wd, data=w.embedding.reshape(-1))
        msg.header.stamp, msg.header.frame_id = msg.window_end, frame_id
        pub.publish(msg)
        published[0] += 1

    acc = StreamAccumulator(cfg, publish)
    StatsPublisher(lambda: dict(acc.stats(), published=published[0]))
    rospy.spin()
    return 0
