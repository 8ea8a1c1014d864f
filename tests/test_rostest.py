"""`catkin_make run_tests` in the workspace `make setup` builds: the rostest files in test/
(segment.launch on a simulated bag with use_sim_time, labels and /diagnostics checked by a
rostest node), reported through catkin's own test results."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.ros


def test_rostest_files_run_through_catkin(tmp_path):
    ws = REPO / ".catkin_ws"
    if not (ws / "devel" / "setup.bash").exists():
        pytest.fail("no catkin workspace: run `make setup` (make test does)")
    # ROS_IP: rostest's own master and nodes on loopback, whether or not the host name resolves
    env = dict(os.environ, EVDISTILL_ROSTEST_DATA=str(tmp_path / "data"), ROS_HOME=str(tmp_path / "ros_home"),
               ROS_LOG_DIR=str(tmp_path / "log"), ROS_IP="127.0.0.1")
    env.pop("ROS_HOSTNAME", None)
    results = ws / "build" / "test_results"
    shutil.rmtree(results, ignore_errors=True)  # only this run's results are read below
    # the venv's python, as `make setup` configures it (a reconfigure must not pick another one)
    py = [f"-DPYTHON_EXECUTABLE={sys.executable}", f"-DPython_EXECUTABLE={sys.executable}"]
    run = subprocess.run(["catkin_make", "-C", str(ws), *py, "run_tests"], cwd=ws, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    summary = subprocess.run(["catkin_test_results", "--verbose", str(results)], env=env, capture_output=True,
                             text=True, timeout=60)
    assert summary.returncode == 0, summary.stdout[-4000:] + run.stdout[-4000:]
    assert "0 errors, 0 failures" in summary.stdout, summary.stdout
    # the rostest run itself and the test case inside it both reported (not an empty success)
    reports = {p.name: p.read_text() for p in (results / "evdistill_ros").glob("*.xml")}
    assert "rostest-test_pipeline.xml" in reports, reports.keys()
    assert 'name="test_labels_and_diagnostics"' in reports.get("rosunit-pipeline.xml", ""), reports
