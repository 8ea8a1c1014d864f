"""The latest-only mailbox never queues, and percentiles are right."""
import threading

import numpy as np

from evdistill_ros.ros.latest import LatestOnly, RollingStats


def test_latest_only_keeps_newest_and_counts_stale():
    box = LatestOnly()
    for i in range(5):
        box.put(i)
    assert box.get(0) == 4 and box.stale == 4
    assert box.get(0.01) is None


def test_latest_only_wakes_a_waiting_consumer_and_close_releases_it():
    box, got = LatestOnly(), []
    t = threading.Thread(target=lambda: got.append(box.get(5)))
    t.start()
    box.put("w")
    t.join(5)
    assert got == ["w"]
    t = threading.Thread(target=lambda: got.append(box.get(5)))
    t.start()
    box.close()
    t.join(5)
    assert got == ["w", None]


def test_rolling_stats_percentiles_over_the_last_samples():
    s = RollingStats(size=100)
    for v in range(1000):
        s.add(v)
    out = s.summary()
    assert out["n"] == 100 and s.count == 1000
    assert np.isclose(out["p50"], np.percentile(np.arange(900, 1000), 50)) and out["max"] == 999
    assert RollingStats().summary() == {"n": 0}
