"""A real roscore: dvs_msgs/EventArray published with rospy, received as rospy.AnyMsg and decoded by numpy."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import random_events

pytestmark = pytest.mark.ros

PUBLISHER = """
import sys, time, rospy, genpy
from evdistill_ros.wire import dvs_msgs
from evdistill_ros.wire.dvs_msgs import EVENT_RECORD
Event, EventArray = dvs_msgs.message_classes()
sys.path.insert(0, {tests!r})
from conftest import random_events
rospy.init_node("pub", anonymous=True, disable_signals=True)
pub = rospy.Publisher("/events", EventArray, queue_size=10, latch=False)
deadline = time.time() + 20
while pub.get_num_connections() == 0 and time.time() < deadline:
    time.sleep(0.05)
for i in range(5):
    ev = random_events(1000, seed=i, t0=1_600_000_000_000_000_000 + i * 10**8)
    m = EventArray(height=260, width=346)
    m.header.stamp = genpy.Time(*divmod(int(ev.t[-1]), 10**9))
    m.events = [Event(x=int(x), y=int(y), ts=genpy.Time(*divmod(int(t), 10**9)), polarity=bool(p))
                for x, y, t, p in zip(ev.x, ev.y, ev.t, ev.p)]
    pub.publish(m)
    time.sleep(0.05)
time.sleep(1.0)
"""

SUBSCRIBER = """
import time, rospy, numpy as np
from evdistill_ros.ros.event_subscriber import EventSubscriber
rospy.init_node("sub", anonymous=True, disable_signals=True)
got = []
sub = EventSubscriber("/events", got.append)
deadline = time.time() + 25
while len(got) < 5 and time.time() < deadline:
    time.sleep(0.05)
for m in got:
    print(len(m.events), int(m.events.x.astype(np.int64).sum()), sum(map(int, m.events.t)), int(m.events.p.sum()), m.stamp_ns)
"""


def test_rospy_publisher_to_anymsg_subscriber(roscore):
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER], env=roscore, stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    pub = subprocess.run([sys.executable, "-c", PUBLISHER.format(tests=tests_dir)], env=roscore,
                         capture_output=True, text=True, timeout=60)
    assert pub.returncode == 0, pub.stderr
    out, _ = sub.communicate(timeout=60)
    lines = [list(map(int, line.split())) for line in out.strip().splitlines()]
    expected = []
    for i in range(5):
        ev = random_events(1000, seed=i, t0=1_600_000_000_000_000_000 + i * 10**8)
        expected.append([1000, int(ev.x.astype("int64").sum()), sum(map(int, ev.t)), int(ev.p.sum()), int(ev.t[-1])])
    assert lines == expected
