"""One line naming the file and what is wrong, before any expensive work (issue: errors without
context), and evaluation of an APS network on a bag that has no events."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from evdistill_ros.io.bag_writer import BagWriter
from evdistill_ros.models import build_model, save_checkpoint


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evdistill_ros.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("e")
    rng = np.random.default_rng(0)
    (d / "random.bag").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (d / "random.pt").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with BagWriter(d / "aps_only.bag") as b:
        for k in range(3):
            b.write_image("/cam/image", 10**18 + k * 10**8, rng.integers(0, 256, (40, 60), dtype=np.uint8), "mono8")
            b.write_image("/cam/labels", 10**18 + k * 10**8, rng.integers(0, 6, (40, 60), dtype=np.uint8), "mono8")
    data = (d / "aps_only.bag").read_bytes()
    (d / "cut.bag").write_bytes(data[: len(data) // 2])
    teacher = build_model("deeplabv3plus", "mobilenetv2", in_channels=1, num_classes=6, width_mult=0.25)
    save_checkpoint(d / "teacher.pt", teacher, {"representation": "aps"})
    return d


@pytest.mark.parametrize("args,needle", [
    (("info", "{d}/random.bag"), "random.bag: not a ROS1 bag"),
    (("info", "{d}/cut.bag"), "cut.bag: a damaged ROS1 bag"),
    (("evaluate", "--data", "{d}/aps_only.bag", "--aps-ckpt", "{d}/random.pt"), "random.pt is not a readable torch checkpoint"),
    (("export", "{d}/random.pt", "--out", "{d}/x.onnx"), "random.pt is not a readable torch checkpoint"),
])
def test_one_line_naming_the_file(files, args, needle):
    out = cli(*(a.format(d=files) for a in args))
    assert out.returncode == 1
    assert needle in out.stderr and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr


def test_aps_network_on_a_bag_without_events_with_topic_names(files):
    out = cli("evaluate", "--data", str(files / "aps_only.bag"), "--aps-ckpt", str(files / "teacher.pt"),
              "--image-topic", "/cam/image", "--labels-topic", "/cam/labels", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "| frames | 3 |" in out.stdout
