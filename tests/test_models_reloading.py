"""The hot-reloading network the segmentation node runs, tested without ROS."""
from __future__ import annotations

import os

import numpy as np

from evdistill_ros.events.spec import DEFAULT_EVENT_INPUT
from evdistill_ros.models import build_model, save_checkpoint
from evdistill_ros.models.reloading import Log, ReloadingPredictor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _save(path, num_classes=6, seed=0):
    import torch

    torch.manual_seed(seed)
    net = build_model("deeplabv3plus", "mobilenetv2", 2, num_classes, width_mult=0.25)
    save_checkpoint(path, net, {"representation": DEFAULT_EVENT_INPUT.to_dict()})


def test_missing_then_appearing_then_replaced_then_broken(tmp_path):
    path = tmp_path / "student.pt"
    clock, said = Clock(), {"info": [], "error": []}
    net = ReloadingPredictor("student", str(path), device="cpu", check_s=5.0, clock=clock,
                             log=Log(info=said["info"].append, error=said["error"].append))
    assert net.get() is None and "not found" in net.error and len(said["error"]) == 1
    _save(path)
    assert net.get() is None  # not looked at again before check_s
    clock.now += 5.0
    p = net.get()
    assert p is not None and net.error == "" and net.loads == 1 and p.is_event_network
    assert p(np.zeros((2, 24, 32), np.float32)).shape == (24, 32)
    clock.now += 5.0
    assert net.get() is p  # unchanged file: the same network, not reloaded
    os.remove(path)
    _save(path, seed=1)
    clock.now += 5.0
    assert net.get() is not p and net.loads == 2
    path.write_bytes(b"not a checkpoint")
    clock.now += 5.0
    assert net.get() is None and "cannot use student checkpoint" in net.error  # logged, never raised
    clock.now += 5.0
    _save(path, seed=2)
    clock.now += 5.0
    assert net.get() is not None and net.loads == 3


def test_set_device_reloads_before_the_next_input(tmp_path):
    path = tmp_path / "s.pt"
    _save(path)
    clock = Clock()
    net = ReloadingPredictor("student", str(path), device="cpu", clock=clock)
    first = net.get()
    net.set_device("cpu")  # the same device: nothing to do
    assert net.get() is first
    net.device = "cuda"  # as if it ran there before
    net.set_device("cpu")
    assert net.get() is not first and net.loads == 2
