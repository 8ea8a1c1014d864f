#!/usr/bin/env python3
"""Decode throughput of dvs_msgs/EventArray: this project's codec (numba unpack) vs the typed paths.

Paths, all on the same messages of one bag (~30 Hz packets of a 10 Mev/s stream):
  codec, in memory            decode_event_array on the raw bytes already in RAM
  numpy reference, in memory  the same decode in plain numpy (a strided pass per field, int64
                              time assembly, a bounds pass): what the numba pass replaces
  codec, from bag             evdistill_ros.io.bag.iter_events (rosbags raw read + codec), warm page cache
  rosbag raw + codec          Debian rosbag read_messages(raw=True) + codec
  genpy typed                 EventArray().deserialize (per-event Python objects), as a typed rospy subscriber does
  rosbags typed               rosbags typestore deserialize_ros1 (per-message, numpy-backed where possible)
The typed paths run on a prefix of the messages (they are 100-1000x slower); Mev/s is comparable.

    python bench/bench_codec.py [--events 10000000] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evdistill_ros.events import Events  # noqa: E402
from evdistill_ros.wire import decode_event_array, dvs_msgs  # noqa: E402
from evdistill_ros.io.bag import iter_events  # noqa: E402
from evdistill_ros.io.bag_layout import open_bag  # noqa: E402
from evdistill_ros.io.bag_writer import BagWriter  # noqa: E402

TOPIC = "/davis/left/events"


def make_bag(path: Path, n_events: int, rate_hz: float = 10e6, packet_hz: float = 30.0) -> list[bytes]:
    rng = np.random.default_rng(0)
    per_msg = int(rate_hz / packet_hz)
    t0 = 1_600_000_000_000_000_000
    raws = []
    with BagWriter(path) as w:
        for start in range(0, n_events, per_msg):
            n = min(per_msg, n_events - start)
            t = t0 + np.sort(rng.integers(0, int(1e9 / packet_hz), n)) + int(start / rate_hz * 1e9)
            ev = Events(rng.integers(0, 346, n), rng.integers(0, 260, n), t, rng.integers(0, 2, n))
            w.write_events(TOPIC, ev, 260, 346)
    with open_bag(path) as r:
        raws = [raw for _, _, raw in r.messages()]
    return raws


def numpy_decode(raw: bytes) -> Events:
    """Plain-numpy reference of decode_event_array (header parsing shared)."""
    from evdistill_ros.wire.dvs_msgs import EVENT_RECORD
    from evdistill_ros.wire.ros1 import parse_header

    buf = memoryview(raw)
    _, _, _, off = parse_header(buf)
    height, width, n = np.frombuffer(buf, "<u4", 3, off)
    rec = np.frombuffer(buf, EVENT_RECORD, int(n), off + 12)
    t = rec["sec"].astype(np.int64)
    t *= 1_000_000_000
    t += rec["nsec"]
    ev = Events(rec["x"], rec["y"], t, np.minimum(rec["p"], 1).view(np.int8))
    inside = ev.in_bounds(int(height), int(width))
    return ev if inside.all() else ev[inside]


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--typed-events", type=int, default=300_000, help="events decoded by the slow typed paths")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.events, args.typed_events = 1_000_000, 50_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / "bench.bag"
        raws = make_bag(bag, args.events)
        n_total = args.events
        per_msg = len(decode_event_array(raws[0]).events)
        n_typed_msgs = max(1, args.typed_events // per_msg)

        def decode_all():  # results dropped per message, as a subscriber does (keeping 10M decoded
            for r in raws:  # events alive would measure page faults, not decoding)
                decode_event_array(r)

        s = timed(decode_all)
        rows.append(("codec, in memory", n_total, s))
        assert numpy_decode(raws[0]) == decode_event_array(raws[0]).events  # same result measured

        def numpy_all():  # results dropped per message here too
            for r in raws:
                numpy_decode(r)

        rows.append(("numpy reference, in memory", n_total, timed(numpy_all)))
        s = timed(lambda: sum(len(e) for e in iter_events(bag, TOPIC)))
        rows.append(("codec, from bag (rosbags raw)", n_total, s))
        try:
            import rosbag

            def rosbag_raw():
                with rosbag.Bag(str(bag)) as b:
                    for _, m, _ in b.read_messages(topics=[TOPIC], raw=True):
                        decode_event_array(m[1])

            rows.append(("codec, from bag (rosbag raw=True)", n_total, timed(rosbag_raw, 1)))
        except ImportError:
            print("(Debian rosbag not importable: skipping its row)")
        try:
            _, EventArray = dvs_msgs.message_classes()
            sub = raws[:n_typed_msgs]
            rows.append(("genpy typed deserialize", per_msg * len(sub),
                         timed(lambda: [EventArray().deserialize(r) for r in sub], 1)))
        except ImportError:
            print("(genpy not importable: skipping the genpy row)")
        from rosbags.typesys import Stores, get_typestore
        from rosbags.typesys.store import Typestore  # noqa: F401

        store = get_typestore(Stores.ROS1_NOETIC)
        from rosbags.typesys import get_types_from_msg

        types = get_types_from_msg(dvs_msgs.EVENT_MSG, "dvs_msgs/msg/Event")
        types.update(get_types_from_msg(dvs_msgs.EVENT_ARRAY_MSG.replace("Event[]", "dvs_msgs/Event[]"),
                                        "dvs_msgs/msg/EventArray"))
        store.register(types)
        sub = raws[:n_typed_msgs]
        rows.append(("rosbags typed deserialize_ros1", per_msg * len(sub),
                     timed(lambda: [store.deserialize_ros1(r, "dvs_msgs/msg/EventArray") for r in sub], 1)))

    print(f"\nDecode throughput, dvs_msgs/EventArray, {per_msg} events/message, 346x260 (single thread)")
    print(f"{'path':42s} {'events':>11s} {'seconds':>9s} {'Mev/s':>9s}")
    base = rows[0][1] / rows[0][2]
    for name, n, s in rows:
        print(f"{name:42s} {n:11d} {s:9.4f} {n / s / 1e6:9.2f}   ({base / (n / s):7.1f}x slower than in-memory)"
              if name != rows[0][0] else f"{name:42s} {n:11d} {s:9.4f} {n / s / 1e6:9.2f}")


if __name__ == "__main__":
    main()
