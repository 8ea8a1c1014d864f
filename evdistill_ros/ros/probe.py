"""Read a node's latched ~stats and its /diagnostics from outside ROS code (the demo, tests, benches).

rospy allows one node per process, so the probe runs in a child process.
"""
from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import sys, rospy
from std_msgs.msg import String
rospy.init_node("stats_probe", anonymous=True)
print(rospy.wait_for_message(sys.argv[1], String, timeout=float(sys.argv[2])).data)
"""


def node_stats(env: dict, topic: str, timeout: float = 15) -> dict | None:
    """The latest ~stats JSON on `topic` (e.g. /segmentation_node/stats), or None if none came."""
    out = subprocess.run([sys.executable, "-c", _PROBE, topic, str(timeout)], env=env, capture_output=True,
                         text=True, timeout=timeout + 30)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a private roscore)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RosMaster:
    """A private roscore on a free port, up when the context is entered; `env` points children at it.

        with RosMaster() as env:
            subprocess.run(["rosbag", "play", bag], env=env)
    """

    def __init__(self, extra_env: dict | None = None, timeout: float = 30.0):
        import os

        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, ROS_MASTER_URI=self.uri, ROS_IP="127.0.0.1", **(extra_env or {}))
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> dict:
        import time
        import xmlrpc.client

        self.proc = subprocess.Popen(["roscore", "-p", str(self.port)], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + self.timeout
        while True:
            try:
                if xmlrpc.client.ServerProxy(self.uri).getSystemState("/probe")[0] == 1:
                    return self.env
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"roscore did not start on port {self.port}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        import os
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)



_DIAGNOSTICS = """
import json, sys, time, rospy
from diagnostic_msgs.msg import DiagnosticArray
rospy.init_node("diagnostics_probe", anonymous=True)
seen = []
rospy.Subscriber("/diagnostics", DiagnosticArray, lambda m: seen.extend(m.status), queue_size=100)
time.sleep(float(sys.argv[1]))
print(json.dumps([{"level": int(s.level), "name": s.name, "message": s.message,
                   "values": {kv.key: kv.value for kv in s.values}} for s in seen]))
"""


class DiagnosticsListener:
    """Collects every /diagnostics status for `duration` s in a child process (rospy: one node
    per process); `statuses()` waits for it and returns them as dicts, oldest first.

        with DiagnosticsListener(env, 20) as diag: ...; diag.statuses()
    """

    def __init__(self, env: dict, duration: float):
        self.duration = duration
        self.proc = subprocess.Popen([sys.executable, "-c", _DIAGNOSTICS, str(duration)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def statuses(self, name: str | None = None) -> list[dict]:
        out, err = self.proc.communicate(timeout=self.duration + 60)
        if self.proc.returncode != 0:
            raise RuntimeError(f"diagnostics probe failed: {err[-2000:]}")
        return [s for s in json.loads(out) if name is None or s["name"].endswith(name)]
