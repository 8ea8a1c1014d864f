"""Fault injection into the live nodes under a real roscore.

Each test starts the nodes with `rosrun`, feeds them what a hostile or unlucky publisher or
user would (messages built here in the exact wire format, checkpoints that are missing,
truncated, replaced or of the wrong kind) and checks afterwards that the nodes are alive,
their counters exact and monotonic, memory bounded, and labels published only from a
network that matches its input.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import event_publisher, stop_group

pytestmark = pytest.mark.ros

EV = "/faults/events"
T0 = 1_700_000_000_000_000_000


def _node(env: dict, node: str, *params: str) -> subprocess.Popen:
    return subprocess.Popen(["rosrun", "evdistill_ros", node, f"events:={EV}", *params], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _stop(proc: subprocess.Popen) -> str:
    alive = proc.poll() is None
    err = stop_group(proc)
    assert alive, f"the node died during the test:\n{err[-3000:]}"
    return err


def _stats(env: dict, node: str, timeout: float = 30) -> dict:
    from evdistill_ros.ros.probe import node_stats

    s = node_stats(env, f"/{node}/stats", timeout)
    assert s is not None, f"no stats from {node}"
    return s


def _wait(env: dict, node: str, pred, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    s: dict = {}
    while time.time() < deadline:
        s = _stats(env, node)
        if pred(s):
            return s
        time.sleep(0.5)
    raise AssertionError(f"{node} never reached the expected state; last stats: {s}")


def _publish(env: dict, plan: list[tuple], msg_type: str = "dvs_msgs/EventArray", encoding: str = "") -> None:
    proc = event_publisher(env, EV, plan, msg_type, encoding)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def _rss_mb(pid: int) -> float:
    """Resident memory of the node's python process (rosrun execs it under its own pid)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in text.splitlines() if ln.startswith("VmRSS:"))) / 1024


def test_accumulator_bounds_sizes_keeps_counters_monotonic_and_lag_honest(roscore):
    acc = _node(roscore, "accumulator_node", "_max_height:=1024", "_max_width:=1024")
    try:
        _wait(roscore, "accumulator_node", lambda s: "messages" in s)
        ms = 1_000_000
        # 1) 400 ms of events on a 173x130 sensor: windows of 50 ms
        _publish(roscore, [(130, 173, 4000, T0, T0 + 400 * ms)])
        s1 = _wait(roscore, "accumulator_node", lambda s: s["messages"] == 1)
        assert s1["windows_emitted"] >= 7 and s1["events_in"] == 4000
        rss_before = _rss_mb(acc.pid)
        # 2) a message declaring a 20000x20000 sensor (4.8 GB of float32 maps): dropped, counted
        # 3) a size change to 200x150: the windows restart, the totals keep counting
        # 4) time jumps back by 10 s (a looping bag): the stream resets, lag is the new stream's
        _publish(roscore, [(20000, 20000, 10, T0 + 400 * ms, T0 + 401 * ms),
                           (150, 200, 3000, T0 + 400 * ms, T0 + 700 * ms),
                           (150, 200, 2000, T0 - 10_000 * ms, T0 - 9_900 * ms)])
        s2 = _wait(roscore, "accumulator_node", lambda s: s["messages"] == 4)  # oversize ones included
        rss_after = _rss_mb(acc.pid)
    finally:
        err = _stop(acc)
    assert s2["oversize_messages"] == 1 and s2["size_changes"] == 1
    assert s2["events_in"] == 4000 + 3000 + 2000  # monotonic: nothing lost at the restart
    assert s2["windows_emitted"] >= s1["windows_emitted"] + 5
    assert s2["resets"] == 1
    assert s2["lag_ms"] is not None and s2["lag_ms"] < 100, s2  # not the old stream's 10 s
    assert rss_after - rss_before < 200, (rss_before, rss_after)
    assert "Traceback" not in err, err


def test_accumulator_counts_stream_faults_exactly(roscore):
    """Out-of-bounds and out-of-order events, an empty message, a 10 s forward jump and a
    million-event message: the node stays up and every event is accounted for."""
    acc = _node(roscore, "accumulator_node")
    ms = 1_000_000
    plan = [(130, 173, 3000, T0, T0 + 200 * ms, "oob"),
            (130, 173, 3000, T0 + 200 * ms, T0 + 400 * ms, "unsorted"),
            (130, 173, 0, T0 + 400 * ms, T0 + 401 * ms),
            (130, 173, 2000, T0 + 10_400 * ms, T0 + 10_500 * ms),
            (130, 173, 1_000_000, T0 + 10_500 * ms, T0 + 10_700 * ms)]
    try:
        _wait(roscore, "accumulator_node", lambda s: "messages" in s)
        _publish(roscore, plan)
        s = _wait(roscore, "accumulator_node", lambda s: s["messages"] == len(plan))
    finally:
        err = _stop(acc)
    sent = sum(p[2] for p in plan)
    assert s["dropped_out_of_bounds"] == 100 and s["dropped_out_of_order"] == 50, s
    assert s["events_in"] + s["dropped_out_of_bounds"] == sent, s
    assert s["events_accepted"] == sent - 150, s
    assert s["windows_skipped"] > 0 and s["resets"] == 0, s  # the forward jump skips, never resets
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    import torch

    from evdistill_ros.events import ByTime, EventInput
    from evdistill_ros.models import build_model, save_checkpoint

    d = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)

    def net(c: int):
        return build_model("deeplabv3plus", "mobilenetv2", in_channels=c, num_classes=6, width_mult=0.25,
                           aspp_channels=16, decoder_channels=16).eval()

    voxel = EventInput("voxel_grid", {"bins": 3}, ByTime(50_000_000))
    return {
        "voxel": save_checkpoint(d / "voxel.pth", net(3), {"representation": voxel.to_dict()}),
        "count": save_checkpoint(d / "count.pth", net(2), {"representation": {"name": "count", "params": {},
                                                                            "window_ns": 50_000_000}}),
        "aps": save_checkpoint(d / "teacher.pth", net(1), {"representation": "aps"}),
    }


def test_an_aps_network_never_labels_event_windows(roscore, checkpoints):
    seg = _node(roscore, "segmentation_node", f"_checkpoint:={checkpoints['aps']}", "_in_process:=true",
                "_device:=cpu")
    try:
        _wait(roscore, "segmentation_node", lambda s: "published" in s and s.get("accumulator"), timeout=90)
        _publish(roscore, [(130, 173, 3000, T0 + k * 100_000_000, T0 + (k + 1) * 100_000_000) for k in range(5)])
        s = _wait(roscore, "segmentation_node", lambda s: s["accumulator"]["messages"] == 5 and s["rejected_input"] > 0)
    finally:
        err = _stop(seg)
    assert s["published"] == 0, s
    assert s["rejected_input"] + s["stale_dropped"] == s["windows_in"] > 0, s
    assert "APS-frame network" in err


def test_pipeline_heals_missing_truncated_and_replaced_checkpoints(roscore, checkpoints, tmp_path):
    path = tmp_path / "student.pth"  # missing at start
    params = (f"_checkpoint:={path}", "_checkpoint_check_s:=0.5")
    acc = _node(roscore, "accumulator_node", *params)
    seg = _node(roscore, "segmentation_node", *params, "_device:=cpu", "embedding:=/accumulator_node/embedding")
    ms = 1_000_000

    def feed(k0: int, k1: int) -> None:
        _publish(roscore, [(130, 173, 2000, T0 + k * 100 * ms, T0 + (k + 1) * 100 * ms) for k in range(k0, k1)])

    try:
        _wait(roscore, "segmentation_node", lambda s: "published" in s, timeout=90)
        feed(0, 3)  # default windows, no network: nothing is labelled
        s = _wait(roscore, "accumulator_node", lambda s: s["messages"] == 3)
        assert s["checkpoint_error"] and s["event_input"]["name"] == "evdistill_2ch"
        path.write_bytes(checkpoints["voxel"].read_bytes()[:300])  # truncated: an error, not a crash
        time.sleep(2)
        assert _stats(roscore, "accumulator_node")["checkpoint_error"]
        path.write_bytes(checkpoints["voxel"].read_bytes())
        _wait(roscore, "accumulator_node", lambda s: s["event_input"]["name"] == "voxel_grid" and
              not s["checkpoint_error"])
        feed(3, 8)
        s = _wait(roscore, "segmentation_node", lambda s: s["published"] >= 3, timeout=90)
        published_voxel = s["published"]
        # replaced by a network of another event input: both follow it, no window mismatches
        tmp = path.with_suffix(".new")
        tmp.write_bytes(checkpoints["count"].read_bytes())
        os.replace(tmp, path)
        _wait(roscore, "accumulator_node", lambda s: s["event_input"]["name"] == "count")
        time.sleep(1.5)  # the segmentation node's next look at the file
        feed(8, 14)
        s2 = _wait(roscore, "segmentation_node", lambda s: s["published"] >= published_voxel + 3, timeout=90)
        acc_s = _stats(roscore, "accumulator_node")
    finally:
        err_seg = _stop(seg)
        err_acc = _stop(acc)
    assert acc_s["input_changes"] == 2, acc_s
    # nobody subscribed to ~overlay here: labels were published, no overlay was ever rendered
    assert s2["published"] > 0 and s2["overlays"] == 0, s2
    # at most the windows in flight while the two nodes switched were refused, never labelled
    assert s2["rejected_input"] <= 4, s2
    assert "Traceback" not in err_seg + err_acc


@pytest.mark.parametrize("msg_type,encoding", [("event_camera_msgs/EventPacket", "libcaer_cmp"),
                                               ("event_array_msgs/EventArray", "libcaer")])
def test_live_event_packets_of_libcaer_driver(roscore, msg_type, encoding):
    """libcaer_driver's topics (EventPacket libcaer_cmp by default; the pre-2023 event_array_msgs
    name) are subscribed by connection header and decoded like dvs_msgs."""
    acc = _node(roscore, "accumulator_node")
    try:
        _wait(roscore, "accumulator_node", lambda s: "messages" in s)
        _publish(roscore, [(130, 173, 3000, T0 + k * 100_000_000, T0 + (k + 1) * 100_000_000) for k in range(6)],
                 msg_type, encoding)
        s = _wait(roscore, "accumulator_node", lambda s: s["messages"] == 6)
    finally:
        err = _stop(acc)
    assert s["events_in"] == 6 * 3000 and s["wrong_type_messages"] == 0 and s["bad_messages"] == 0
    assert s["windows_emitted"] >= 10
    assert "Traceback" not in err


def test_nonfinite_windows_are_rejected_and_counted_never_labelled(roscore, checkpoints, tmp_path):
    """NaN, +-inf and 3e38 embeddings (a broken accumulator or publisher) are counted in
    rejected_nonfinite and never published as labels (they were all-class-0 labels, status OK);
    a checkpoint with one NaN weight is refused at load, the node reporting why."""
    import torch

    from evdistill_ros.models import load_checkpoint, save_checkpoint

    seg = _node(roscore, "segmentation_node", f"_checkpoint:={checkpoints['count']}", "_device:=cpu",
                "embedding:=/fake/embedding")
    script = """
import json, time, numpy as np, rospy
from rospy.numpy_msg import numpy_msg
from evdistill_ros.msg import EventEmbedding
rospy.init_node("fake_accumulator", anonymous=True)
pub = rospy.Publisher("/fake/embedding", numpy_msg(EventEmbedding), queue_size=20)
deadline = time.time() + 20
while pub.get_num_connections() == 0 and time.time() < deadline:
    time.sleep(0.1)
spec = json.dumps({"name": "count", "params": {}, "window_ns": 50000000})
for k, value in enumerate([np.nan, np.inf, -np.inf, 3e38, 1.0, np.nan, 2.0, 3.0]):
    data = np.zeros((2, 40, 60), np.float32) + np.float32(value)
    # the last one's representation field contradicts its event_input: which one holds? refused
    msg = numpy_msg(EventEmbedding)(representation="count" if k < 7 else "voxel_grid", event_input=spec, channels=2,
                                    height=40, width=60, data=data.reshape(-1), num_events=10)
    msg.header.stamp = rospy.Time(1000 + k)
    pub.publish(msg)
    time.sleep(0.6)
"""
    try:
        _wait(roscore, "segmentation_node", lambda s: "inference_ms" in s and not s.get("student_error"), timeout=90)
        r = subprocess.run(["python3" if not os.environ.get("VIRTUAL_ENV") else os.path.join(
            os.environ["VIRTUAL_ENV"], "bin", "python"), "-c", script], env=roscore, capture_output=True, text=True,
            timeout=60)
        assert r.returncode == 0, r.stderr
        s = _wait(roscore, "segmentation_node", lambda s: s["windows_in"] == 8)
        time.sleep(1.0)
        s = _stats(roscore, "segmentation_node")
    finally:
        err = _stop(seg)
    assert s["rejected_nonfinite"] == 5 and s["published"] == 2 and s["rejected"] == 1, s
    assert "NaN, infinite or absurd" in err

    model, meta = load_checkpoint(checkpoints["count"])
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("bias")).fill_(float("nan"))
    bad = save_checkpoint(tmp_path / "nan.pth", model, meta)
    seg = _node(roscore, "segmentation_node", f"_checkpoint:={bad}", "_device:=cpu", "embedding:=/fake/embedding")
    try:
        s = _wait(roscore, "segmentation_node", lambda s: s.get("student_error"), timeout=90)
    finally:
        _stop(seg)
    assert "NaN or infinite" in s["student_error"] and "bias" in s["student_error"]


def test_an_empty_aps_image_is_a_counted_bad_frame(roscore, checkpoints):
    """A 0x0 sensor_msgs/Image became "teacher inference failed: OpenCV ..."; now bad_frames."""
    seg = _node(roscore, "segmentation_node", f"_checkpoint:={checkpoints['count']}",
                f"_teacher_checkpoint:={checkpoints['aps']}", "_device:=cpu", "image:=/fake/image")
    script = """
import time, numpy as np, rospy
from sensor_msgs.msg import Image
rospy.init_node("fake_camera", anonymous=True)
pub = rospy.Publisher("/fake/image", Image, queue_size=5)
deadline = time.time() + 20
while pub.get_num_connections() == 0 and time.time() < deadline:
    time.sleep(0.1)
for h, w in ((0, 0), (20, 30), (0, 30)):
    pub.publish(Image(height=h, width=w, encoding="mono8", step=w, data=bytes(h * w)))
    time.sleep(0.6)
"""
    try:
        _wait(roscore, "segmentation_node", lambda s: "teacher_ms" in s and not s.get("teacher_error"), timeout=90)
        py = os.path.join(os.environ["VIRTUAL_ENV"], "bin", "python") if os.environ.get("VIRTUAL_ENV") else "python3"
        r = subprocess.run([py, "-c", script], env=roscore, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        s = _wait(roscore, "segmentation_node", lambda s: s["bad_frames"] + s["frames_in"] == 3)
        time.sleep(1.0)
        s = _stats(roscore, "segmentation_node")
    finally:
        err = _stop(seg)
    assert s["bad_frames"] == 2 and s["frames_in"] == 1 and s["teacher_published"] == 1, s
    assert "inference failed" not in err and "empty APS image" in err


_RECONFIGURE = """
import json, sys, rospy
from dynamic_reconfigure.client import Client
rospy.init_node("reconfigure_client", anonymous=True)
acc = Client("/accumulator_node", timeout=30)
out = []
for update in json.loads(sys.argv[1]):
    out.append(acc.update_configuration(update))
print(json.dumps(out, default=str))
"""


def test_dynamic_reconfigure_refuses_unbounded_invalid_and_unknown_inputs_whole(roscore):
    """stride_ms 0.001 and bins 100000 took the node past 3 GB; bins -3 was accepted and every
    message then raised in the callback with status OK; {nonexistent_param: 1} was applied. Each
    is now refused whole (the client and the parameter server get the settings in force), the
    windows never restart for it, the node's memory stays put, and a start-up parameter beyond
    the bounds is refused too."""
    start = _node(roscore, "accumulator_node", "_stride_ms:=0.001")
    try:
        s0 = _wait(roscore, "accumulator_node", lambda s: "messages" in s)
    finally:
        err0 = _stop(start)
    assert s0["event_input"].get("stride_ns") is None and "window parameters refused" in err0, s0
    acc = _node(roscore, "accumulator_node", "_representation:=voxel_grid")
    ms = 1_000_000
    bad = [{"stride_ms": 0.001}, {"representation_params": "{bins: 100000}"}, {"window_ms": 10000.0,
           "representation_params": "{bins: 100000}"}, {"representation_params": "{bins: -3}"},
           {"representation_params": "{nonexistent_param: 1}"}]
    try:
        _wait(roscore, "accumulator_node", lambda s: "messages" in s)
        _publish(roscore, [(130, 173, 4000, T0, T0 + 400 * ms)])
        s1 = _wait(roscore, "accumulator_node", lambda s: s["messages"] == 1)
        rss_before = _rss_mb(acc.pid)
        py = os.path.join(os.environ["VIRTUAL_ENV"], "bin", "python") if os.environ.get("VIRTUAL_ENV") else "python3"
        import json

        r = subprocess.run([py, "-c", _RECONFIGURE, json.dumps(bad + [{"stride_ms": 25.0}])], env=roscore,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        answers = json.loads(r.stdout.strip().splitlines()[-1])
        _publish(roscore, [(130, 173, 4000, T0 + 400 * ms, T0 + 800 * ms)])
        s2 = _wait(roscore, "accumulator_node", lambda s: s["messages"] == 2)
        rss_after = _rss_mb(acc.pid)
        params = subprocess.run(["rosparam", "get", "/accumulator_node"], env=roscore, capture_output=True,
                                text=True, timeout=30).stdout
    finally:
        err = _stop(acc)
    for a in answers[:-1]:  # refused whole: the client gets the settings in force
        assert a["representation_params"] == "" and a["stride_ms"] in (0.0, "0.0") and a["window_ms"] in (0.0, "0.0")
    assert float(answers[-1]["stride_ms"]) == 25.0
    assert s2["input_changes"] == s1["input_changes"] + 1, s2  # only the good update restarted the windows
    assert s2["event_input"]["name"] == "voxel_grid" and s2["event_input"]["params"] == {}, s2
    assert s2["event_input"]["stride_ns"] == 25 * ms, s2
    assert s2["callback_errors"] == 0 and s2["bad_messages"] == 0 and s2["windows_emitted"] > s1["windows_emitted"]
    assert "nonexistent_param" not in params and "100000" not in params and "stride_ms: 25.0" in params, params
    assert rss_after - rss_before < 200, (rss_before, rss_after)
    assert err.count("reconfigure refused") == len(bad), err[-3000:]
    assert "beyond the bound" in err and "bins" in err and "Traceback" not in err


def test_glitched_timestamps_are_dropped_and_counted_live(roscore):
    """One event stamped 2**31 s every 20th message gave 10 resets, 7e10 windows_skipped, empty
    windows stamped in 2038 and status OK; now each is dropped and counted, nothing resets."""
    from evdistill_ros.ros.health import WARN, HealthLimits, accumulator_health

    acc = _node(roscore, "accumulator_node")
    ms = 1_000_000
    plan = [(130, 173, 2000, T0 + k * 50 * ms, T0 + (k + 1) * 50 * ms, *(["glitch"] if k % 20 == 5 else []))
            for k in range(40)]
    try:
        s0 = _wait(roscore, "accumulator_node", lambda s: "messages" in s)
        _publish(roscore, plan)
        s = _wait(roscore, "accumulator_node", lambda s: s["messages"] == 40)
    finally:
        err = _stop(acc)
    assert s["dropped_time_outlier"] == 2 and s["resets"] == 0 and s["windows_skipped"] == 0, s
    assert 38 <= s["windows_emitted"] <= 40, s
    assert s["events_in"] == 40 * 2000 - 2
    health = accumulator_health(s, s0, 10.0, HealthLimits())
    assert health.level == WARN and "glitched timestamp" in health.message("ok")
    assert "Traceback" not in err
