"""Shared fixtures: random events, a real roscore, small simulated bags."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evdistill_ros.events import Events

REPO = Path(__file__).resolve().parents[1]


def random_events(n: int, height: int = 260, width: int = 346, seed: int = 0, t0: int = 1_600_000_000_000_000_000,
                  duration_ns: int = 50_000_000, signed: bool = False) -> Events:
    """Sorted random events; polarity 1/0 (or +1/-1 with signed=True)."""
    rng = np.random.default_rng(seed)
    p = rng.integers(0, 2, n).astype(np.int8)
    if signed:
        p = 2 * p - 1
    return Events(rng.integers(0, width, n), rng.integers(0, height, n),
                  np.sort(rng.integers(t0, t0 + duration_ns, n)), p)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def ros_available() -> bool:
    return shutil.which("roscore") is not None and shutil.which("rosbag") is not None


def pytest_collection_modifyitems(config, items):
    # Outside `make test` (no ROS in PATH) ROS tests are skipped; in CI they must run.
    if ros_available() or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="ROS not in PATH: run through `make test` or `source scripts/env.sh`")
    for item in items:
        if "ros" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def roscore(tmp_path, monkeypatch):
    """A real roscore on a free port; ROS_MASTER_URI points at it for this test and its children."""
    from evdistill_ros.ros.probe import RosMaster

    with RosMaster({"ROS_HOME": str(tmp_path / "ros_home"), "ROS_LOG_DIR": str(tmp_path / "log")}) as env:
        for key in ("ROS_MASTER_URI", "ROS_HOME", "ROS_LOG_DIR", "ROS_IP"):
            monkeypatch.setenv(key, env[key])
        yield env


def run_python(code: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python code in a child process (rospy allows one node per process)."""
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)


def stop_group(proc: subprocess.Popen) -> str:
    """SIGINT to a process group started with start_new_session (a launch, a node), SIGKILL after
    30 s; returns its stderr."""
    import signal

    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return err
