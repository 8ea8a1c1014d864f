"""segmentation_node: the distilled student on event windows (and optionally the teacher on APS).

Subscribes  embedding  (evdistill_ros/EventEmbedding from accumulator_node), or with
                       ~in_process:=true the events topic directly (no message hop)
            image      (sensor_msgs/Image, APS frames: overlay background and teacher input)
Publishes   ~labels (mono8 class ids, stamp = window end), ~overlay (rgb8) and
            ~overlay/compressed (sensor_msgs/CompressedImage, ~compressed_format jpeg | png,
            ~jpeg_quality), both rendered only while someone subscribes; ~teacher/labels,
            ~teacher/overlay, ~teacher/overlay/compressed (with ~teacher_checkpoint; stamp = the
            frame's); ~legend (rgb8, latched: the class colours and names), ~stats (JSON) and
            /diagnostics (1 Hz: ERROR without a student network, when every window is rejected
            or (~in_process) a connected event topic is silent for ~error_silence_s; WARN when more than
            ~warn_drop_fraction of the windows are dropped or latency p95 > ~warn_latency_ms)
Parameters  ~backend (auto: the fastest that agrees with torch, timed at load or on the first window;
            torch | torch-compile | onnxruntime | openvino, models.backends;
            a checkpoint may also be an .onnx file from `evdistill export`),
            ~checkpoint, ~teacher_checkpoint (a checkpoint, an exported .onnx or a teacher card .yaml
            of an image network trained elsewhere; each watched every ~checkpoint_check_s = 5 s: a
            missing one is retried, a replaced one reloaded), ~device (auto|cpu|cuda), ~fp16,
            ~in_process, ~overlay_on (events|aps), ~overlay_alpha, ~max_height / ~max_width, and
            the accumulator's window parameters, ~publish_frame (a static transform
            ~fixed_frame (map) -> ~camera_frame (camera) for rviz). dynamic_reconfigure (cfg/Segmentation.cfg):
            overlay_on, overlay_alpha, compressed_format, jpeg_quality, teacher (on/off), device
            (the networks reload), and with ~in_process the window settings (the windows restart)

Time: labels and overlays carry the window end (event time) as their stamp. latency_ms is
measured on the node's monotonic clock (input arrival -> published: what the node costs);
age_ms is ROS time now minus the stamp (the delay since the window ended: with a live camera
or `rosbag play --clock` and use_sim_time the true delay, otherwise meaningless).

A network only ever sees the input it was trained on: windows whose event input differs from
the student checkpoint's (or any window, when the "student" is an APS-frame network) are
dropped, counted in `rejected_input` and logged; with ~in_process the windows follow the
student checkpoint whenever it is (re)loaded. A window or frame holding NaN / +-inf / values
beyond +-1e6 once preprocessed (or one whose logits come out non-finite) is dropped and counted
in `rejected_nonfinite`, never published as labels; a checkpoint with a non-finite weight is
refused at load.

Inference runs in its own thread behind a one-slot mailbox: when the network is slower than
the stride, stale windows are dropped and counted, never queued. ~stats percentiles (ms):
latency_ms (input arrival to labels and overlay published), inference_ms, wait_ms (arrival to
inference start: the network was busy), overhead_ms (latency minus that window's inference).
"""
from __future__ import annotations

import functools
import json
import threading
import time
from dataclasses import dataclass

import numpy as np
import rospy
from rospy.numpy_msg import numpy_msg
from sensor_msgs.msg import CompressedImage, Image

from .. import frames
from ..classes import DDD17, ClassSet
from ..events.spec import EventInput
from ..events.windows import Window
from ..models.backends import describe
from ..models.predictor import NonFiniteError, Predictor
from ..models.reloading import Log, ReloadingPredictor
from ..msg import EventEmbedding
from ..render import event_image, legend_strip, overlay
from ..wire import CodecError, decode_image
from .common import (CallbackErrors, SizeLimits, StatusPublisher, StreamAccumulator, WindowReconfigure,
                     compressed_msg, event_input_from_ros, every, image_msg, param, reconfigure_server, ros_time)
from .health import Health, HealthLimits, accumulator_health, segmentation_health
from .latest import Counters, LatestOnly, RollingStats


@dataclass
class Job:
    data: np.ndarray  # embedding (C, H, W) or APS image
    stamp: rospy.Time
    frame_id: str
    received: float  # time.monotonic() when the input arrived
    spec: EventInput | None = None  # the event input an embedding was made with


def publish_static_frame(parent: str, child: str):
    """A latched identity transform parent -> child on /tf_static: rviz then finds its fixed
    frame (no "Fixed Frame [map] does not exist" warning) for image-only displays."""
    from geometry_msgs.msg import TransformStamped  # on use: only with ~publish_frame
    from tf2_ros import StaticTransformBroadcaster  # on use: only with ~publish_frame

    t = TransformStamped()
    t.header.stamp, t.header.frame_id, t.child_frame_id = rospy.Time(0), parent, child
    t.transform.rotation.w = 1.0
    broadcaster = StaticTransformBroadcaster()
    broadcaster.sendTransform(t)
    return broadcaster


class Outputs:
    """One network's topics: ~<prefix>labels, and ~<prefix>overlay with its /compressed twin,
    rendered only while one of them has a subscriber (as rpg_dvs_renderer)."""

    def __init__(self, prefix: str):
        self.labels = rospy.Publisher(f"~{prefix}labels", Image, queue_size=2)
        self.overlay = rospy.Publisher(f"~{prefix}overlay", Image, queue_size=2)
        self.compressed = rospy.Publisher(f"~{prefix}overlay/compressed", CompressedImage, queue_size=2)

    def wants_overlay(self) -> bool:
        return self.overlay.get_num_connections() > 0 or self.compressed.get_num_connections() > 0

    def publish_overlay(self, rgb: np.ndarray, stamp: rospy.Time, frame_id: str, fmt: str, quality: int) -> None:
        if self.overlay.get_num_connections() > 0:
            self.overlay.publish(image_msg(rgb, "rgb8", stamp, frame_id))
        if self.compressed.get_num_connections() > 0:
            self.compressed.publish(compressed_msg(rgb, fmt, quality, stamp, frame_id))


class SegmentationNode:
    def __init__(self) -> None:
        device, fp16, backend = param("device"), param("fp16"), param("backend")
        check_s = param("checkpoint_check_s")
        log = Log(info=rospy.loginfo, error=rospy.logerr)
        self.student = ReloadingPredictor("student", param("checkpoint"), device, fp16, check_s, backend, log)
        teacher_path = param("teacher_checkpoint")
        self.teacher = ReloadingPredictor("teacher", teacher_path, device, fp16, check_s, backend,
                                          log) if teacher_path else None
        self.teacher_enabled = True
        self.overlay_on = param("overlay_on")
        self.alpha = param("overlay_alpha")
        self.compressed_format = param("compressed_format")
        self.jpeg_quality = param("jpeg_quality")
        self.limits = SizeLimits.from_ros()
        self.latest_aps: np.ndarray | None = None
        self.events_box: LatestOnly[Job] = LatestOnly()
        self.aps_box: LatestOnly[Job] = LatestOnly()
        self.latency = RollingStats()  # input arrival -> labels and overlay published
        self.wait = RollingStats()  # input arrival -> inference start (network busy with the previous one)
        self.overhead = RollingStats()  # latency - inference, per window: waiting, rendering, publishing
        self.age = RollingStats()  # ROS time at publishing - window end (sim time under use_sim_time)
        self.inference_ms = RollingStats()
        self.teacher_ms = RollingStats()
        self.errors = CallbackErrors()
        self.counts = Counters("windows_in", "published", "rejected", "rejected_input", "rejected_nonfinite",
                               "frames_in", "bad_frames", "teacher_published", "overlays")
        self._student_loads = 0

        self.student_out, self.teacher_out = Outputs(""), Outputs("teacher/")
        self.pub_legend = rospy.Publisher("~legend", Image, queue_size=1, latch=True)
        self.legend_classes: ClassSet | None = None
        if param("publish_frame"):
            self.frame_broadcaster = publish_static_frame(param("fixed_frame"), param("camera_frame"))

        predictor = self.student.get()
        if self.teacher is not None:
            # loaded (and its backend chosen) before the image subscription: loaded by the first
            # frame instead, the load outlasted several frames and each was counted stale
            self.teacher.get()
        self._publish_legend()  # in the student's class set when it loaded (DDD17's until then)
        self.accumulator = None
        if param("in_process"):
            self.accumulator = StreamAccumulator(event_input_from_ros(predictor.event_input if predictor else None),
                                                 self._on_window)
        else:
            # rospy trims its queue silently; the callbacks are cheap and the mailboxes below keep
            # only the newest input, counting what they skip, so rospy itself should never drop
            self.embedding_sub = rospy.Subscriber("embedding", numpy_msg(EventEmbedding),
                                                  self.errors.guard(self._on_embedding),
                                                  queue_size=20, buff_size=1 << 26)
            self.last_embedding = time.monotonic()
        # raw bytes through the package's own decoder (io.image_msgs), as for the training data
        self.image_sub = rospy.Subscriber("image", rospy.AnyMsg, self.errors.guard(self._on_image), queue_size=20,
                                          buff_size=1 << 24)
        self.threads = [threading.Thread(target=self._student_loop, daemon=True)]
        if self.teacher is not None:
            self.threads.append(threading.Thread(target=self._teacher_loop, daemon=True))
        for t in self.threads:
            t.start()
        # the networks are (re)loaded when a window needs them and on this clock, so an idle
        # node's diagnostics tell the checkpoint's state too
        every(check_s, self._check_networks, "checkpoint watch")
        every(1.0, lambda: self.pub_legend.get_num_connections() and self._publish_legend(), "legend")
        self.status = StatusPublisher(self.stats, self.assess, "segmenting")
        if self.accumulator is not None:
            self.window_settings = WindowReconfigure(
                self.accumulator, lambda: self.student.predictor.event_input if self.student.predictor else None)
        self.reconfigure = reconfigure_server("Segmentation", self._reconfigure)
        rospy.on_shutdown(self._shutdown)

    def _publish_legend(self) -> None:
        """Latched, and again every second while watched: rviz clears its images when ROS
        time jumps back (a looping bag under use_sim_time) and latched ones are not resent."""
        predictor = self.student.predictor
        classes = predictor.class_set if predictor is not None else DDD17
        if classes != self.legend_classes:  # the legend follows the student checkpoint
            self.legend_classes = classes
            self.legend = legend_strip(220, 40, vertical=True, classes=classes)
        self.pub_legend.publish(image_msg(self.legend, "rgb8", rospy.Time.now()))

    def _check_networks(self) -> None:
        for network in (self.student, self.teacher):
            if network is not None:
                network.get()

    # ---- settings while running (dynamic_reconfigure) ---------------------------------------
    def _reconfigure(self, update, _level: int):
        """Apply what changed; a bad value is logged and put back, never half applied."""
        self.alpha = float(update.overlay_alpha)
        self.overlay_on = update.overlay_on
        self.compressed_format, self.jpeg_quality = update.compressed_format, int(update.jpeg_quality)
        if update.teacher != self.teacher_enabled:
            self.teacher_enabled = bool(update.teacher)
            rospy.loginfo("teacher %s", "on" if self.teacher_enabled else "off")
        for network in (self.student, self.teacher):
            if network is not None and update.device:
                network.set_device(update.device)
        if self.accumulator is not None:
            update = self.window_settings(update)
        return update

    # ---- inputs -------------------------------------------------------------------------
    def _on_window(self, w: Window, received: float, frame_id: str) -> None:
        self.counts.add("windows_in")
        self.events_box.put(Job(w.embedding, ros_time(w.t_end), frame_id, received, self.accumulator.spec))

    def _on_embedding(self, msg) -> None:
        received = self.last_embedding = time.monotonic()
        self.counts.add("windows_in")
        n = msg.channels * msg.height * msg.width
        if len(msg.data) != n or not self.limits.allows((msg.height, msg.width)):
            self.counts.add("rejected")
            rospy.logwarn_throttle(5.0, f"embedding of {len(msg.data)} values as {msg.channels}x{msg.height}x"
                                        f"{msg.width} is malformed or beyond ~max_height / ~max_width: dropped")
            return
        try:
            spec = self._spec_of(msg.event_input)
        except ValueError as exc:
            self.counts.add("rejected")
            rospy.logwarn_throttle(5.0, f"embedding without a readable event_input ({exc}): dropped")
            return
        if msg.representation and msg.representation != spec.representation:
            self.counts.add("rejected")
            rospy.logwarn_throttle(5.0, f"embedding says {msg.representation!r} but its event_input says "
                                        f"{spec.representation!r}: dropped (which one holds?)")
            return
        data = np.array(msg.data, dtype=np.float32).reshape(msg.channels, msg.height, msg.width)  # own, writable copy
        self.events_box.put(Job(data, msg.header.stamp, msg.header.frame_id, received, spec))

    @functools.lru_cache(maxsize=8)  # one accumulator sends one JSON for thousands of windows
    def _spec_of(self, event_input_json: str) -> EventInput:
        return EventInput.from_dict(json.loads(event_input_json))

    def _on_image(self, msg: rospy.AnyMsg) -> None:
        header = getattr(msg, "_connection_header", None) or {}
        try:
            if header.get("type") != "sensor_msgs/Image":
                raise CodecError(f"topic type {header.get('type')!r} is not sensor_msgs/Image")
            decoded = decode_image(msg._buff, max_pixels=self.limits.max_height * self.limits.max_width)
        except CodecError as exc:
            self.counts.add("bad_frames")
            rospy.logwarn_throttle(5.0, f"cannot use APS image: {exc}")
            return
        if decoded.image.size == 0:  # 0 x 0 from a faulty driver: nothing to segment or draw on
            self.counts.add("bad_frames")
            rospy.logwarn_throttle(5.0, f"empty APS image ({decoded.image.shape}) at {decoded.stamp_ns} ns: dropped")
            return
        img = frames.canonical(decoded.image, decoded.encoding)
        self.counts.add("frames_in")
        self.latest_aps = img
        if self.teacher is not None:
            self.aps_box.put(Job(img, ros_time(decoded.stamp_ns), decoded.frame_id, time.monotonic()))

    # ---- inference ------------------------------------------------------------------------
    def _student_loop(self) -> None:
        def accepts(job: Job, predictor: Predictor) -> bool:
            """A network only ever sees the input it was trained on: anything else is counted and
            logged, never segmented."""
            want = predictor.event_input
            if self.accumulator is not None and self.student.loads != self._student_loads:
                self._student_loads = self.student.loads  # a new checkpoint: the windows follow it
                if want is not None:
                    self.accumulator.set_input(event_input_from_ros(want))
            if want is None:
                why = (f"the student checkpoint {self.student.path} is an APS-frame network "
                       f"(input {predictor.representation!r}), not an event network")
            elif not want.same_embedding(job.spec):
                why = (f"the windows are {job.spec.describe()} but the student checkpoint expects "
                       f"{want.describe()} (give the accumulator the same ~checkpoint)")
            else:
                return True
            self.counts.add("rejected_input")
            rospy.logerr_throttle(10.0, f"window dropped: {why}")
            return False

        def background(job: Job, predictor: Predictor) -> np.ndarray:
            if self.overlay_on == "aps" and self.latest_aps is not None:
                return self.latest_aps
            return event_image(job.data, job.spec)

        self._serve(self.events_box, self.student, self.student_out, self.inference_ms, "published", accepts,
                    background, track_latency=True)

    def _teacher_loop(self) -> None:
        def accepts(job: Job, predictor: Predictor) -> bool:
            if not self.teacher_enabled:  # switched off by dynamic_reconfigure: frames pass unseen
                return False
            if predictor.is_event_network:
                self.counts.add("rejected_input")
                rospy.logerr_throttle(10.0, f"frame dropped: the teacher checkpoint {self.teacher.path} is an "
                                            "event network, not an APS-frame network")
                return False
            return True

        self._serve(self.aps_box, self.teacher, self.teacher_out, self.teacher_ms, "teacher_published", accepts,
                    lambda job, predictor: job.data)

    def _serve(self, box: LatestOnly, network: ReloadingPredictor, out: Outputs, timing: RollingStats, counter: str,
               accepts, background, track_latency: bool = False) -> None:
        """Newest job -> network -> labels (+ overlay while someone subscribes), until shutdown;
        failures are counted and logged."""
        while not rospy.is_shutdown():
            job = box.get(timeout=0.5)
            predictor = network.get() if job is not None else None
            if predictor is None or not accepts(job, predictor):
                continue
            t0 = time.monotonic()
            if track_latency:
                self.wait.add((t0 - job.received) * 1e3)
            try:
                labels = predictor(job.data)
            except NonFiniteError as exc:  # NaN / inf in the window or the logits: never published as labels
                self.counts.add("rejected_nonfinite")
                rospy.logerr_throttle(10.0, f"{network.role}: input dropped: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. a wrong channel count: log, keep running
                self.counts.add("rejected")
                rospy.logerr_throttle(10.0, f"{network.role} inference failed: {exc}")
                continue
            inference_ms = (time.monotonic() - t0) * 1e3
            timing.add(inference_ms)
            out.labels.publish(image_msg(labels, "mono8", job.stamp, job.frame_id))
            if out.wants_overlay():
                try:
                    rgb = overlay(labels, background(job, predictor), self.alpha, predictor.class_set.palette_array)
                    out.publish_overlay(rgb, job.stamp, job.frame_id, self.compressed_format, self.jpeg_quality)
                    self.counts.add("overlays")
                except ValueError as exc:  # e.g. a compressed_format set to neither jpeg nor png
                    rospy.logerr_throttle(10.0, f"overlay not published: {exc}")
            if track_latency:
                total_ms = (time.monotonic() - job.received) * 1e3
                self.latency.add(total_ms)
                self.overhead.add(total_ms - inference_ms)
                self.age.add((rospy.Time.now() - job.stamp).to_sec() * 1e3)
            self.counts.add(counter)

    def stats(self) -> dict:
        predictor = self.student.predictor
        running = describe(predictor.backend) if predictor else {}  # auto: what it chose, and its timings
        out = dict(self.counts.snapshot(), backend=running.get("backend", self.student.backend),
                   backend_requested=self.student.backend, backend_timings=running.get("auto"),
                   stale_dropped=self.events_box.stale, device=running.get("device"), latency_ms=self.latency.summary(),
                   inference_ms=self.inference_ms.summary(), wait_ms=self.wait.summary(),
                   overhead_ms=self.overhead.summary(), age_ms=self.age.summary(),
                   student_error=self.student.error or None, callback_errors=self.errors.count,
                   last_callback_error=self.errors.last or None)
        if self.teacher is not None:
            out.update(teacher_stale_dropped=self.aps_box.stale, teacher_ms=self.teacher_ms.summary(),
                       teacher_error=self.teacher.error or None, teacher_enabled=self.teacher_enabled)
        if self.accumulator is not None:
            out["accumulator"] = self.accumulator.stats()
        else:  # silence is judged on the embedding topic; in process, the accumulator judges the events
            out.update(publishers=self.embedding_sub.get_num_connections(),
                       silent_s=round(time.monotonic() - self.last_embedding, 3))
        return out

    @staticmethod
    def assess(stats: dict, before: dict | None, dt_s: float, limits: HealthLimits) -> Health:
        """One status for the node: the network's health, and in process the accumulator's too."""
        health = segmentation_health(stats, before, dt_s, limits)
        if "accumulator" in stats:
            health.merge(accumulator_health(stats["accumulator"], (before or {}).get("accumulator"), dt_s, limits),
                         "events: ")
        return health

    def _shutdown(self) -> None:
        self.events_box.close()
        self.aps_box.close()


def main() -> int:
    rospy.init_node("segmentation_node")
    SegmentationNode()
    rospy.spin()
    return 0
