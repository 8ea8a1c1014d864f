"""segmentation_node: the distilled student on event windows (and optionally the teacher on APS).

Subscribes  embedding  (evdistill_ros/EventEmbedding from accumulator_node), or with
                       ~in_process:=true the events topic directly (no message hop)
            image      (sensor_msgs/Image, APS frames: overlay background and teacher input)
Publishes   ~labels (mono8 class ids, stamp = window end), ~overlay (rgb8),
            ~teacher/labels, ~teacher/overlay (with ~teacher_checkpoint), ~stats (JSON)
Parameters  ~checkpoint, ~teacher_checkpoint, ~device (auto|cpu|cuda), ~fp16, ~in_process,
            ~overlay_on (events|aps), ~overlay_alpha, and the accumulator's window parameters

Inference runs in its own thread behind a one-slot mailbox: when the network is slower than
the stride, stale windows are dropped and counted, never queued. ~stats percentiles (ms):
latency_ms (input arrival to labels and overlay published), inference_ms, wait_ms (arrival to
inference start: the network was busy), overhead_ms (latency minus that window's inference).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import rospy
from rospy.numpy_msg import numpy_msg
from sensor_msgs.msg import Image

from ..events.windows import Window
from ..render import event_image, overlay
from .common import StatsPublisher, StreamAccumulator, WindowConfig, image_msg, param, ros_time
from .latest import LatestOnly, RollingStats


@dataclass
class Job:
    data: np.ndarray  # embedding (C, H, W) or APS image
    stamp: rospy.Time
    frame_id: str
    received: float  # time.monotonic() when the input arrived


class Network:
    """A Predictor loaded lazily: a missing checkpoint is logged and retried, never fatal."""

    def __init__(self, role: str, path: str, device: str, fp16: bool):
        self.role, self.path, self.device, self.fp16 = role, path, device, fp16
        self.predictor = None
        self.error = ""
        self._next_try = 0.0

    def get(self):
        if self.predictor is None and time.monotonic() >= self._next_try:
            self._next_try = time.monotonic() + 5.0
            if not os.path.isfile(self.path):
                self.error = f"{self.role} checkpoint {self.path!r} not found (retrying every 5 s)"
                rospy.logerr_throttle(30.0, self.error)
                return None
            try:
                from ..models.predictor import Predictor

                self.predictor = Predictor(self.path, self.device, self.fp16)
                self.error = ""
                rospy.loginfo("%s: %s on %s (%s)", self.role, self.path, self.predictor.device,
                              self.predictor.meta.get("backbone"))
            except Exception as exc:  # noqa: BLE001 - a bad checkpoint must not kill the node
                self.error = f"{self.role} checkpoint {self.path} cannot be used: {exc}"
                rospy.logerr(self.error)
        return self.predictor


class SegmentationNode:
    def __init__(self) -> None:
        from cv_bridge import CvBridge

        from ..msg import EventEmbedding

        self.bridge = CvBridge()

        device, fp16 = param("device", "auto"), param("fp16", False)
        self.student = Network("student", param("checkpoint", ""), device, fp16)
        teacher_path = param("teacher_checkpoint", "")
        self.teacher = Network("teacher", teacher_path, device, fp16) if teacher_path else None
        self.overlay_on = param("overlay_on", "events")
        self.alpha = param("overlay_alpha", 0.5)
        self.latest_aps: np.ndarray | None = None
        self.events_box: LatestOnly[Job] = LatestOnly()
        self.aps_box: LatestOnly[Job] = LatestOnly()
        self.latency = RollingStats()  # input arrival -> labels and overlay published
        self.wait = RollingStats()  # input arrival -> inference start (network busy with the previous one)
        self.overhead = RollingStats()  # latency - inference, per window: waiting, rendering, publishing
        self.inference_ms = RollingStats()
        self.teacher_ms = RollingStats()
        self.counts = {"windows_in": 0, "published": 0, "rejected": 0, "frames_in": 0, "teacher_published": 0}
        self.rep_name: str | None = None

        pub = lambda name, q=2: rospy.Publisher("~" + name, Image, queue_size=q)  # noqa: E731
        self.pub_labels, self.pub_overlay = pub("labels"), pub("overlay")
        self.pub_t_labels, self.pub_t_overlay = pub("teacher/labels"), pub("teacher/overlay")

        predictor = self.student.get()
        rep = predictor.representation if predictor is not None else None
        self.accumulator = None
        if param("in_process", False):
            cfg = WindowConfig.from_ros(rep)
            self.rep_name = cfg.representation
            self.accumulator = StreamAccumulator(cfg, self._on_window)
        else:
            # rospy trims its queue silently; the callbacks are cheap and the mailboxes below keep
            # only the newest input, counting what they skip, so rospy itself should never drop
            rospy.Subscriber("embedding", numpy_msg(EventEmbedding), self._on_embedding, queue_size=20,
                             buff_size=1 << 26)
        rospy.Subscriber("image", Image, self._on_image, queue_size=20, buff_size=1 << 24)
        self.threads = [threading.Thread(target=self._student_loop, daemon=True)]
        if self.teacher is not None:
            self.threads.append(threading.Thread(target=self._teacher_loop, daemon=True))
        for t in self.threads:
            t.start()
        StatsPublisher(self.stats)
        rospy.on_shutdown(self._shutdown)

    # ---- inputs -------------------------------------------------------------------------
    def _on_window(self, w: Window, received: float, frame_id: str) -> None:
        self.counts["windows_in"] += 1
        self.events_box.put(Job(w.embedding, ros_time(w.t_end), frame_id, received))

    def _on_embedding(self, msg) -> None:
        received = time.monotonic()
        self.counts["windows_in"] += 1
        n = msg.channels * msg.height * msg.width
        if len(msg.data) != n:
            self.counts["rejected"] += 1
            rospy.logwarn_throttle(5.0, f"embedding of {len(msg.data)} values does not match "
                                        f"{msg.channels}x{msg.height}x{msg.width}: dropped")
            return
        self.rep_name = msg.representation
        data = np.array(msg.data, dtype=np.float32).reshape(msg.channels, msg.height, msg.width)  # own, writable copy
        self.events_box.put(Job(data, msg.header.stamp, msg.header.frame_id, received))

    def _on_image(self, msg: Image) -> None:
        try:
            img = self.bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")
            if msg.encoding == "bgr8":
                img = img[..., ::-1]
        except Exception as exc:  # noqa: BLE001 - cv_bridge raises its own error types
            rospy.logwarn_throttle(5.0, f"cannot use APS image ({msg.encoding}): {exc}")
            return
        self.counts["frames_in"] += 1
        self.latest_aps = img
        if self.teacher is not None:
            self.aps_box.put(Job(np.ascontiguousarray(img), msg.header.stamp, msg.header.frame_id, time.monotonic()))

    # ---- inference ------------------------------------------------------------------------
    def _student_loop(self) -> None:
        def matches(predictor) -> bool:
            rep = predictor.representation
            if isinstance(rep, dict) and self.rep_name and rep["name"] != self.rep_name:
                self.counts["rejected"] += 1
                rospy.logerr_throttle(10.0, f"embedding is {self.rep_name} but the checkpoint expects {rep['name']}: "
                                            "dropped (set the accumulator's ~checkpoint or ~representation)")
                return False
            return True

        def background(job: Job, predictor) -> np.ndarray:
            if self.overlay_on == "aps" and self.latest_aps is not None:
                return self.latest_aps
            return event_image(job.data, self.rep_name or predictor.representation.get("name", ""))

        self._serve(self.events_box, self.student, self.pub_labels, self.pub_overlay, self.inference_ms, "published",
                    matches, background, track_latency=True)

    def _teacher_loop(self) -> None:
        self._serve(self.aps_box, self.teacher, self.pub_t_labels, self.pub_t_overlay, self.teacher_ms,
                    "teacher_published", lambda predictor: True, lambda job, predictor: job.data)

    def _serve(self, box: LatestOnly, network: Network, pub_labels, pub_overlay, timing: RollingStats, counter: str,
               accepts, background, track_latency: bool = False) -> None:
        """Newest job -> network -> labels + overlay, until shutdown; failures are counted and logged."""
        while not rospy.is_shutdown():
            job = box.get(timeout=0.5)
            predictor = network.get() if job is not None else None
            if predictor is None or not accepts(predictor):
                continue
            t0 = time.monotonic()
            if track_latency:
                self.wait.add((t0 - job.received) * 1e3)
            try:
                labels = predictor(job.data)
            except Exception as exc:  # noqa: BLE001 - e.g. a wrong channel count: log, keep running
                self.counts["rejected"] += 1
                rospy.logerr_throttle(10.0, f"{network.role} inference failed: {exc}")
                continue
            inference_ms = (time.monotonic() - t0) * 1e3
            timing.add(inference_ms)
            pub_labels.publish(image_msg(labels, "mono8", job.stamp, job.frame_id))
            pub_overlay.publish(image_msg(overlay(labels, background(job, predictor), self.alpha), "rgb8",
                                          job.stamp, job.frame_id))
            if track_latency:
                total_ms = (time.monotonic() - job.received) * 1e3
                self.latency.add(total_ms)
                self.overhead.add(total_ms - inference_ms)
            self.counts[counter] += 1

    def stats(self) -> dict:
        out = dict(self.counts, stale_dropped=self.events_box.stale, latency_ms=self.latency.summary(),
                   inference_ms=self.inference_ms.summary(), wait_ms=self.wait.summary(),
                   overhead_ms=self.overhead.summary(), student_error=self.student.error or None)
        if self.teacher is not None:
            out.update(teacher_stale_dropped=self.aps_box.stale, teacher_ms=self.teacher_ms.summary(),
                       teacher_error=self.teacher.error or None)
        if self.accumulator is not None:
            out["accumulator"] = self.accumulator.stats()
        return out

    def _shutdown(self) -> None:
        self.events_box.close()
        self.aps_box.close()


def main() -> int:
    rospy.init_node("segmentation_node")
    SegmentationNode()
    rospy.spin()
    return 0
