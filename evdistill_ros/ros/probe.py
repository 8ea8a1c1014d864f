"""Read a node's latched ~stats from outside ROS code (the demo, tests, benches).

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
