#!/usr/bin/env python3
"""Live pipeline throughput and latency under a real roscore.

1. Throughput: `rosbag play` of a dense events bag at rising rates into accumulator_node
   (evdistill_2ch, 50 ms windows, 10 ms stride). The node's subscriber queue and rosbag play's
   publisher queue are cut to QUEUE messages (1/3 s at 30 Hz), so a node slower than the offered
   rate loses messages within a second instead of buffering the whole bag; a rate is sustained
   when every event message was processed (accumulator ~stats `messages`). The highest
   sustained event rate is reported, beside the node's capacity from ~stats `busy_s`, its CPU
   share while the bag played (1.0 = one core; /proc), and a reference: the same bag decoded and
   windowed offline in one process.
2. The whole pipeline: segment.launch in process (accumulator + the demo's student, config/demo.yaml,
   as the node runs it: default backend) on the same bag at rising rates, a window every 50 ms
   (20 Hz): sustained = every event message processed and every window segmented (no stale
   drops); window -> labels p50 / p95 and the node's CPU share.
3. Latency: segment.launch (message hop and in-process) with the demo's student on the
   simulated bag; the segmentation node's ~stats give latency (input arrival to publish)
   p50 / p95 and inference time p50: the pipeline adds latency - inference. The stride is 1.5x
   the inference time measured first on this machine (--latency-stride-ms overrides; --backend
   picks what runs the network), so a window finds the network idle on any machine: with a shorter stride windows wait for the running inference
   (up to one inference time, the latest-only mailbox drops the rest as stale), and that
   wait is the price of the model, not of the pipeline.

    python bench/bench_live.py [--quick] [--backend onnxruntime]     (needs `source scripts/env.sh`)
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evdistill_ros.events import Events  # noqa: E402
from evdistill_ros.io.bag import iter_event_messages, topics  # noqa: E402
from evdistill_ros.io.bag_writer import BagWriter  # noqa: E402
from evdistill_ros.ros.probe import RosMaster, node_stats  # noqa: E402

TOPIC = "/davis/left/events"
QUEUE = 10  # accumulator_node ~queue_size during the throughput runs


def dense_bag(path: Path, rate_hz: float, seconds: float, packet_hz: float = 30.0) -> int:
    rng = np.random.default_rng(0)
    t0 = 1_600_000_000_000_000_000
    per = int(rate_hz / packet_hz)
    n_msgs = int(seconds * packet_hz)
    with BagWriter(path) as w:
        for i in range(n_msgs):
            start = t0 + int(i * 1e9 / packet_hz)
            t = start + np.sort(rng.integers(0, int(1e9 / packet_hz), per))
            w.write_events(TOPIC, Events(rng.integers(0, 346, per), rng.integers(0, 260, per), t,
                                         rng.integers(0, 2, per)), 260, 346)
    return n_msgs


def offline_rate(bag: Path) -> float:
    from evdistill_ros.events.windows import SlidingWindow

    def window() -> SlidingWindow:
        return SlidingWindow("evdistill_2ch", height=260, width=346, window_ns=50_000_000, stride_ns=10_000_000)

    for _, msg in iter_event_messages(bag, TOPIC):  # warm-up: numba kernels and the page cache
        window().push(msg.events)
        break
    sw = window()
    n, t = 0, time.perf_counter()
    for _, msg in iter_event_messages(bag, TOPIC):
        sw.push(msg.events)
        n += len(msg.events)
    return n / (time.perf_counter() - t)


class Ros:
    def __init__(self) -> None:
        self.master = RosMaster()
        self.env = self.master.__enter__()
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str]) -> subprocess.Popen:
        p = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        try:
            os.killpg(p.pid, signal.SIGINT)
            p.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(p.pid, signal.SIGKILL)

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                self.stop(p)
        self.master.__exit__()

    def wait_stats(self, topic: str, pred, timeout: float = 120) -> dict:
        deadline, s = time.time() + timeout, {}
        while time.time() < deadline:
            s = node_stats(self.env, topic, 10) or s
            if s and pred(s):
                return s
            time.sleep(1)
        return s


def cpu_seconds(pattern: str) -> float:
    """CPU time (user + system, s) so far of the processes whose command line matches `pattern`."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in out:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)
    return total


def play(ros: Ros, bag: Path, rate: float, n_msgs: int, node: str) -> float:
    """Play the bag to its end at `rate`; the CPU share (cores) `node` used meanwhile."""
    # played to the end before the stats are read: a stats probe is a Python process, and polling
    # during playback would take CPU from the node being measured. --queue: rosbag play's outgoing
    # queue (default 100 messages) would otherwise absorb a backlog as well as the node's own queue
    cpu0 = cpu_seconds(node)
    subprocess.run(["rosbag", "play", "--quiet", f"--rate={rate}", "--delay=1", f"--queue={QUEUE}", str(bag)],
                   env=ros.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60 + 3 * n_msgs / 30 / rate)
    time.sleep(1.0)  # the last messages' windows
    # per second of playback (the bag's span / rate): rosbag's start-up, its --delay and the second
    # above are idle for the node and would dilute the share more the faster the bag plays
    return (cpu_seconds(node) - cpu0) / (n_msgs / 30 / rate)


def throughput(ros: Ros, bag: Path, n_msgs: int, bag_rate: float, rates: list[float]) -> list[tuple]:
    acc = ros.start(["rosrun", "evdistill_ros", "accumulator_node", f"events:={TOPIC}", "_stride_ms:=10",
                     "_window_ms:=50", "_representation:=evdistill_2ch", f"_queue_size:={QUEUE}"])
    rows = []
    try:
        base = ros.wait_stats("/accumulator_node/stats", lambda s: "messages" in s, 120)
        for r in rates:
            share = play(ros, bag, r, n_msgs, "accumulator_node")
            s = ros.wait_stats("/accumulator_node/stats", lambda s: s.get("messages", 0) > base.get("messages", 0), 10)
            got = s.get("messages", 0) - base.get("messages", 0)
            busy = s.get("busy_s", 0.0) - base.get("busy_s", 0.0)  # decode + windows, this run
            events = s.get("events_in", 0) - base.get("events_in", 0)
            rows.append((r, bag_rate * r / 1e6, got, n_msgs, got == n_msgs, events / busy / 1e6 if busy > 0 else 0.0,
                         share))
            base = s
            if got < n_msgs:
                break
    finally:
        ros.stop(acc)
    return rows


def student_checkpoint(tmp: Path) -> tuple[Path, str]:
    """config/demo.yaml's student network (untrained weights cost the same), on evdistill_2ch
    windows at the sensor's 346x260; and its description."""
    import torch

    from evdistill_ros.distill.config import load_config
    from evdistill_ros.distill.methods import build_net
    from evdistill_ros.models import save_checkpoint

    model_config = load_config(Path(__file__).resolve().parents[1] / "config" / "demo.yaml").model_for("student")
    torch.manual_seed(0)
    model = build_net(model_config, in_channels=3, log=lambda s: None)
    ckpt = tmp / "student.pth"
    # trained at the sensor size, as `evdistill train` records it (a fixed size: auto chooses at load)
    save_checkpoint(ckpt, model.eval(), {"representation": {"name": "evdistill_2ch", "params": {}, "window_ns": 50_000_000},
                                         "input_size": {"height": 260, "width": 346}})
    m = model_config
    return ckpt, f"{m.arch} {m.backbone} x{m.width_mult} (config/demo.yaml's student)"


def pipeline(ros: Ros, bag: Path, n_msgs: int, bag_rate: float, rates: list[float], ckpt: Path,
             backend: str) -> list[tuple]:
    """segment.launch in process on the dense bag at rising rates, a window every 50 ms."""
    launch = ros.start(["roslaunch", "evdistill_ros", "segment.launch", f"checkpoint:={ckpt}", "preset:=sim",
                        "in_process:=true", "device:=cpu", "stride_ms:=50", f"backend:={backend}"])
    rows = []
    try:
        base = ros.wait_stats("/segmentation_node/stats", lambda s: s.get("student_error") is None
                              and "accumulator" in s, 120)
        for r in rates:
            share = play(ros, bag, r, n_msgs, "segmentation_node")
            s = ros.wait_stats("/segmentation_node/stats", lambda s: s["accumulator"].get("messages", 0) >
                               base["accumulator"].get("messages", 0), 10)
            got = s["accumulator"].get("messages", 0) - base["accumulator"].get("messages", 0)
            windows = s.get("windows_in", 0) - base.get("windows_in", 0)
            stale = s.get("stale_dropped", 0) - base.get("stale_dropped", 0)
            lat = s.get("latency_ms") or {}
            rows.append((r, bag_rate * r / 1e6, got, n_msgs, windows, stale, got == n_msgs and stale == 0,
                         lat.get("p50", float("nan")), lat.get("p95", float("nan")), share, s.get("backend")))
            base = s
            if got < n_msgs or stale:
                break
    finally:
        ros.stop(launch)
    return rows


def stride_for(ckpt: Path, backend: str) -> tuple[int, float]:
    """(stride ms, inference ms): a window every 1.5x one inference (at least 50 ms), measured here,
    so windows find the network idle and latency - inference means the same on any machine."""
    import math

    import numpy as np

    from evdistill_ros.models.predictor import Predictor

    p = Predictor(ckpt, device="auto", backend=backend)
    x = np.random.default_rng(0).random((3, 260, 346), dtype=np.float32)
    runs = []
    for _ in range(6):
        t0 = time.perf_counter()
        p(x)
        runs.append((time.perf_counter() - t0) * 1e3)
    inference = float(np.median(runs[1:]))
    return max(50, int(math.ceil(1.5 * inference / 10) * 10)), inference


def latency(ros: Ros, in_process: bool, quick: bool, stride_ms: int, ckpt: Path, backend: str) -> dict:
    from evdistill_ros.sim import simulate_sequence

    tmp = Path(tempfile.mkdtemp())
    bag = tmp / "sim.bag"
    simulate_sequence(bag, seconds=1.0 if quick else 3.0, seed=5, width=346, height=260, max_pixel_motion=2.0)
    launch = ros.start(["roslaunch", "evdistill_ros", "segment.launch", f"checkpoint:={ckpt}", "preset:=sim",
                        f"in_process:={str(in_process).lower()}", "device:=auto", f"stride_ms:={stride_ms}",
                        f"backend:={backend}"])
    try:
        ros.wait_stats("/segmentation_node/stats", lambda s: s.get("student_error") is None and "inference_ms" in s)
        n = topics(bag)[TOPIC].count
        ros.start(["rosbag", "play", "--quiet", "-k", "--delay=1", str(bag)])
        key = "accumulator" if in_process else None
        stats = ros.wait_stats("/segmentation_node/stats", lambda s: (s.get(key) or {}).get("messages", n) >= n
                               if key else s.get("windows_in", 0) >= 0.9 * n / 30 * 1000 / stride_ms - 2, timeout=120)
        time.sleep(2)
        stats = node_stats(ros.env, "/segmentation_node/stats", 10) or stats
        ros.stop(ros.procs[-1])
    finally:
        ros.stop(launch)
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bag-rate", type=float, default=6e6, help="events/s of the dense bag at rate 1")
    ap.add_argument("--latency-stride-ms", type=int, default=None,
                    help="segmentation stride for the latency runs (default: 1.5x the inference measured first)")
    ap.add_argument("--backend", default="auto", help="segmentation_node ~backend for the latency runs")
    args = ap.parse_args()
    seconds = 1.0 if args.quick else 3.0
    rates = [1, 2, 4] if args.quick else [1, 2, 4, 6, 8, 10, 12]
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / "dense.bag"
        n_msgs = dense_bag(bag, args.bag_rate, seconds)
        off = offline_rate(bag)
        ros = Ros()
        try:
            rows = throughput(ros, bag, n_msgs, args.bag_rate, rates)
            ckpt, student = student_checkpoint(Path(tmp))
            whole = pipeline(ros, bag, n_msgs, args.bag_rate, rates, ckpt, args.backend)
            stride, inference = stride_for(ckpt, args.backend)
            stride = args.latency_stride_ms or stride
            print(f"inference measured first: {inference:.1f} ms ({args.backend}) -> a window every {stride} ms")
            lat = {mode: latency(ros, mode == "in-process", args.quick, stride, ckpt, args.backend)
                   for mode in ("message-hop", "in-process")}
        finally:
            ros.close()
    print(f"\nLive throughput: rosbag play -> accumulator_node (evdistill_2ch, 50 ms / 10 ms), 346x260,"
          f" subscriber queue {QUEUE} messages")
    print(f"offline decode + windows, same bag, one process: {off / 1e6:.1f} Mev/s")
    print(f"{'play rate':>9s} {'Mev/s':>8s} {'msgs':>11s} {'no drops':>9s} {'node capacity Mev/s':>20s} {'CPU share':>9s}")
    for r, mev, got, n, ok, cap, share in rows:
        print(f"{r:9g} {mev:8.1f} {got:5d}/{n:<5d} {'yes' if ok else 'NO':>9s} {cap:20.1f} {share:9.2f}")
    best = max((row[1] for row in rows if row[4]), default=0.0)
    print(f"highest sustained without drops: {best:.1f} Mev/s (node capacity = events / seconds its callback"
          " was busy decoding and windowing; CPU share: cores the node used while the bag played)")
    print(f"\nWhole pipeline: rosbag play -> segmentation_node in process ({student}, backend {args.backend}),"
          " a window every 50 ms")
    print(f"{'play rate':>9s} {'Mev/s':>8s} {'msgs':>11s} {'windows':>8s} {'stale':>6s} {'sustained':>9s} "
          f"{'lat p50':>8s} {'lat p95':>8s} {'CPU share':>9s} {'backend':>12s}")
    for r, mev, got, n, windows, stale, ok, p50, p95, share, chosen in whole:
        print(f"{r:9g} {mev:8.1f} {got:5d}/{n:<5d} {windows:8d} {stale:6d} {'yes' if ok else 'NO':>9s} "
              f"{p50:8.1f} {p95:8.1f} {share:9.2f} {str(chosen):>12s}")
    best = max((row[1] for row in whole if row[6]), default=0.0)
    print(f"highest sustained with every window segmented: {best:.1f} Mev/s")
    print(f"\nEnd-to-end latency (window complete -> labels published), {student} at 346x260 input,"
          f" backend {args.backend}, a window every {stride} ms (1.5x the inference measured first)")
    print(f"{'mode':>12s} {'windows':>8s} {'published':>9s} {'stale':>6s} {'lat p50':>8s} {'lat p95':>8s} "
          f"{'infer p50':>9s} {'lat-infer p50':>13s} {'of which wait':>13s}")
    nan = float("nan")
    for mode, s in lat.items():
        l, i = s.get("latency_ms", {}), s.get("inference_ms", {})
        print(f"{mode:>12s} {s.get('windows_in', 0):8d} {s.get('published', 0):9d} {s.get('stale_dropped', 0):6d} "
              f"{l.get('p50', nan):8.1f} {l.get('p95', nan):8.1f} {i.get('p50', nan):9.1f} "
              f"{s.get('overhead_ms', {}).get('p50', nan):13.1f} {s.get('wait_ms', {}).get('p50', nan):13.1f}")
    print("lat-infer: per window, latency minus its own inference (waiting for the network, rendering the"
          " overlay, publishing); wait: arrival to inference start")


if __name__ == "__main__":
    main()
