"""`make demo`: the whole job end to end on synthetic data, headless.

1. simulate day and night driving bags (train, and held-out test seeds),
2. train the APS teacher and the students (supervised, kd, EvDistill without and with labels),
3. evaluate every network on the held-out bags (teacher on frames, students on events),
4. run the live ROS pipeline (roscore, roslaunch segment.launch, rosbag play of a test bag,
   rosbag record of the outputs),
5. make an overlay video and an image strip from the recorded ROS topics.

Everything lands in demo_output/: report.json, report.md, checkpoints/, segmentation.bag,
overlay.mp4, overlay_strip.png, panels.png. A second run reuses data and trained networks.

    python -m evdistill_ros.demo [--config config/demo.yaml] [--out demo_output]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .distill.compare import run_compare
from .distill.config import load_config
from .eval.figures import write_video
from .eval.visualize import visualize_samples
from .io.bag import iter_images, topics
from .io.presets import PRESETS
from .ros.probe import RosMaster, node_stats

REPO = Path(__file__).resolve().parents[1]
EV_TOPIC, IMAGE_TOPIC = PRESETS["sim"].events, PRESETS["sim"].image


def log(msg: str) -> None:
    print(f"\033[1m[demo]\033[0m {msg}", flush=True)


def run_ros_pipeline(student: Path, teacher: Path, bag: Path, record: Path) -> dict:
    """roscore + segment.launch + rosbag play of `bag`; returns the nodes' final stats."""
    with RosMaster() as env:
        procs: list[subprocess.Popen] = []
        try:
            record.unlink(missing_ok=True)
            procs.append(subprocess.Popen(
                ["roslaunch", "evdistill_ros", "segment.launch", f"checkpoint:={student}", f"teacher_checkpoint:={teacher}",
                 "preset:=sim", "record:=true", f"record_path:={record}", "device:=auto"],
                env=env, stdout=subprocess.DEVNULL, start_new_session=True))
            log("waiting for the nodes to load their networks")
            deadline = time.time() + 180
            while time.time() < deadline:
                s = node_stats(env, "/segmentation_node/stats", 10)
                if s and s.get("student_error") is None and "inference_ms" in s and node_stats(env, "/accumulator_node/stats", 5):
                    break
                time.sleep(1)
            else:
                raise RuntimeError("the ROS nodes did not come up within 3 minutes (see ~/.ros/log/latest)")
            n_msgs = topics(bag)[EV_TOPIC].count
            log(f"rosbag play {bag.name} ({n_msgs} event messages) at half rate; recording to {record.name}")
            procs.append(subprocess.Popen(["rosbag", "play", "--quiet", "-k", "--rate=0.5", "--delay=1", str(bag)],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
            deadline = time.time() + 300
            acc: dict = {}
            while time.time() < deadline:
                time.sleep(2)
                acc = node_stats(env, "/accumulator_node/stats", 10) or acc
                if acc.get("messages", 0) >= n_msgs:
                    break
            time.sleep(3)  # the last windows' inference and the recorder's flush
            return {"accumulator": acc, "segmentation": node_stats(env, "/segmentation_node/stats", 10) or {}}
        finally:
            for p in reversed(procs):
                try:
                    os.killpg(p.pid, signal.SIGINT)
                    p.wait(30)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(p.pid, signal.SIGKILL)


def overlay_outputs(record: Path, out: Path) -> list[Path]:
    """overlay.mp4 (student overlay | APS with the teacher's overlay) and a 4-frame PNG strip."""
    import cv2

    have = topics(record)
    if "/segmentation_node/overlay" not in have:
        raise RuntimeError(f"{record} holds no /segmentation_node/overlay messages: the live run produced nothing")
    teacher = {m.stamp_ns: m.image for m in iter_images(record, "/segmentation_node/teacher/overlay")} \
        if "/segmentation_node/teacher/overlay" in have else {}
    t_stamps = np.array(sorted(teacher), dtype=np.int64)
    frames = []
    for m in iter_images(record, "/segmentation_node/overlay"):
        student = m.image
        if len(t_stamps):  # the teacher frame closest in time
            t = t_stamps[np.clip(np.searchsorted(t_stamps, m.stamp_ns), 0, len(t_stamps) - 1)]
            right = cv2.resize(teacher[int(t)], student.shape[1::-1])
            frame = np.concatenate([student, np.full((student.shape[0], 4, 3), 255, np.uint8), right], axis=1)
        else:
            frame = student
        frames.append(frame)
    video = write_video(frames, out / "overlay.mp4", fps=10)
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, min(4, len(frames))).astype(int)]
    strip = np.concatenate([np.pad(f, ((2, 2), (0, 0), (0, 0)), constant_values=255) for f in picks], axis=0)
    cv2.imwrite(str(out / "overlay_strip.png"), cv2.resize(strip[..., ::-1], None, fx=2, fy=2,
                                                             interpolation=cv2.INTER_NEAREST))
    return [video, out / "overlay_strip.png"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "config" / "demo.yaml"))
    ap.add_argument("--out", default=str(REPO / "demo_output"))
    ap.add_argument("--all-methods", action="store_true", help="also train kd and evdistill+labels students")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.time()

    # the demo's budget: teacher, baseline and EvDistill; `--all-methods` adds kd and evdistill+labels
    cfg = load_config(args.config, [] if args.all_methods else [{"compare": {"methods": ["supervised", "evdistill"]}}])
    log("1-3/5 simulate, train and evaluate (reuses what an earlier run made)")
    stages: dict[str, float] = {}
    # retrain_changed: after an upgrade that changed a network, the demo's earlier runs are trained again
    result = run_compare(cfg, out_dir=out / "compare", progress=True, log=log, retrain_changed=True)
    stages["1-3 simulate, train, evaluate"] = time.time() - t0
    ckpts = out / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    runs = {name: out / "compare" / name / "checkpoint.pt" for name in result["networks"]}
    for name, path in runs.items():
        shutil.copy2(path, ckpts / f"{name}.pth")
    student, teacher = ckpts / "student_evdistill.pth", ckpts / "teacher.pth"
    test_bag = Path(result["settings"]["test_bags"]["normal"][0])

    log("4/5 live ROS pipeline: roscore, segment.launch, rosbag play, rosbag record")
    record = out / "segmentation.bag"
    live = run_ros_pipeline(student, teacher, test_bag, record)
    stages["4 live ROS run"] = time.time() - t0 - sum(stages.values())
    log("5/5 overlay video and strip from the recorded topics, five-panel figure")
    files = overlay_outputs(record, out)
    files += visualize_samples(test_bag, aps_ckpt=teacher, event_ckpt=student, out=out, num=3, progress=False)
    stages["5 figures"] = time.time() - t0 - sum(stages.values())

    report = {name: {"miou": r.get("normal", {}).get("miou"), "miou_night": r.get("night", {}).get("miou"),
                     "miou_fast": r.get("fast", {}).get("miou"),
                     "miou_all": r.get("normal", {}).get("miou_all"), "input": "aps" if name == "teacher" else "events"}
              for name, r in result["networks"].items()}
    seg = live["segmentation"]
    report_all = {**report, "checks": result["checks"], "live": live, "seconds": round(time.time() - t0, 1),
                  "stage_seconds": {k: round(v, 1) for k, v in stages.items()}}
    (out / "report.json").write_text(json.dumps(report_all, indent=1, default=float))
    md = (out / "compare" / "compare.md").read_text()
    lat = seg.get("latency_ms", {})
    md = ("# evdistill_ros demo\n\nmIoU (%) on held-out simulated sequences (EvDistill convention; "
          "absent=0 convention beside it).\n\n" + md +
          f"\n## Live ROS run ({test_bag.name})\n\n"
          f"- windows: {seg.get('windows_in')} in, {seg.get('published')} segmented, {seg.get('stale_dropped')} "
          f"stale dropped\n- latency (input arrival to publish) ms: p50 {lat.get('p50', float('nan')):.1f}, "
          f"p95 {lat.get('p95', float('nan')):.1f}\n- student inference ms: p50 "
          f"{seg.get('inference_ms', {}).get('p50', float('nan')):.1f} ({seg.get('backend')}, chosen by "
          f"{seg.get('backend_requested')})\n"
          f"- APS frames: {seg.get('frames_in')} in, {seg.get('teacher_published')} segmented by the teacher, "
          f"{seg.get('teacher_stale_dropped')} stale dropped\n"
          "\n## Where the time went (s; a stage reused from an earlier run counts ~0)\n\n"
          + "".join(f"- {k}: {v:.0f}\n" for k, v in stages.items())
          + "".join(f"  - training {name}: {r.get('train_seconds', 0):.0f}\n"
                    for name, r in result["runs"].get("0", {}).items() if isinstance(r, dict))
          + f"- total: {time.time() - t0:.0f}\n")
    (out / "report.md").write_text(md)
    print(md)
    log(f"done in {time.time() - t0:.0f} s. Results in {out}/: report.md, report.json, overlay.mp4, "
        f"overlay_strip.png, panels.png, segmentation.bag, checkpoints/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
