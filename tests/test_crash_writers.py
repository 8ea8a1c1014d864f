"""kill -9 at random points of the writers (training, cache extraction, simulate, convert):
afterwards nothing partial stands under a final name, and the rerun completes (seeded, so the
kill points are reproducible)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from evdistill_ros.io.bag import topics
from evdistill_ros.models import load_checkpoint
from test_distill_train import tiny_config, write_bag

pytestmark = pytest.mark.slow


def _killed(cmd: list[str], after_s: float, cwd: Path) -> int:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(after_s)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(60)


def _final_files_sound(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.name.startswith("."):
            continue  # temp names: removed by the next run (atomic.clean_stale)
        if p.suffix in (".pt", ".pth"):
            load_checkpoint(p) if p.name == "checkpoint.pt" else torch.load(p, weights_only=True)
        elif p.suffix == ".bag":
            assert topics(p)


def test_training_killed_anywhere_leaves_sound_files_and_resumes(tmp_path):
    bag = tmp_path / "train.bag"
    write_bag(bag, seed=0)
    cfg = tiny_config(tmp_path, steps=40, ckpt_every=3)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "evdistill_ros.cli", "train", "teacher", "--config", str(cfg_path), "--bags",
           str(bag), "--out", str(out), "--resume", "--no-progress"]
    rng = np.random.default_rng(0)
    for k in range(3):  # kill while extracting, while training, while writing checkpoints
        _killed(cmd, float(rng.uniform(2.0, 9.0)), tmp_path)
        if out.exists():
            _final_files_sound(out)
        _final_files_sound(Path(cfg.data.cache_dir))
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _, meta = load_checkpoint(out / "checkpoint.pt")
    assert meta["training"]["step"] == 40
    assert not [p for p in out.iterdir() if p.name.startswith(".") and "tmp" in p.name]


def test_simulate_and_convert_killed_leave_no_partial_bag(tmp_path):
    sim = tmp_path / "sim"
    cmd = [sys.executable, "-m", "evdistill_ros.cli", "simulate", "--out", str(sim), "--sequences", "2",
           "--seconds", "3", "--width", "80", "--height", "60", "--no-progress"]
    _killed(cmd, 4.0, tmp_path)
    _final_files_sound(sim)
    assert subprocess.run(cmd, cwd=tmp_path, capture_output=True, timeout=600).returncode == 0
    assert len(list(sim.glob("*.bag"))) == 2 and not list(sim.glob(".*"))
    src = next(sim.glob("*.bag"))
    conv = [sys.executable, "-m", "evdistill_ros.cli", "convert", "ros1", str(src), "--out", str(tmp_path / "c.bag"),
            "--quiet"]
    _killed(conv, 2.5, tmp_path)
    assert not (tmp_path / "c.bag").exists() or topics(tmp_path / "c.bag")
    assert subprocess.run(conv, cwd=tmp_path, capture_output=True, timeout=600).returncode == 0
    assert topics(tmp_path / "c.bag") == topics(src) or set(topics(tmp_path / "c.bag")) == set(topics(src))
