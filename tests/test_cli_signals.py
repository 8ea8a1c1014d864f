"""Signals reach the clean paths: Ctrl-C during a multi-process simulate is one "interrupted"
line (exit 130), SIGTERM one "terminated" line (exit 143); nothing partial stays under a bag's
name and a rerun completes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from evdistill_ros.io.bag import topics


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_simulate_interrupted_cleanly(tmp_path, sig, code, word):
    out = tmp_path / "sim"
    cmd = [sys.executable, "-m", "evdistill_ros.cli", "simulate", "--out", str(out), "--sequences", "2",
           "--workers", "2", "--seconds", "20", "--width", "80", "--height", "60", "--no-progress"]
    # a background job (CI) inherits SIGINT ignored, and Python then keeps ignoring it: restore the
    # default so the child sees what a terminal's Ctrl-C gives
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not any(out.glob(".*.tmp.bag")):
        time.sleep(0.2)  # until the workers write their bags
    time.sleep(1.0)
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"simulate: {word}" in err and "Traceback" not in err, err
    for bag in out.glob("*.bag"):  # whatever stands under a final name is complete
        assert topics(bag)
    assert not list(out.glob(".*.tmp*")), sorted(p.name for p in out.iterdir())
