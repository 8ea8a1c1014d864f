#!/usr/bin/env python3
"""Event decoding per EventPacket encoding, and bag -> Events per container, in one run.

1. Decode throughput (in memory, one thread) of each encoding libcaer_driver and
   metavision_driver publish, through the same `decoder_for` the nodes use, against the
   plain-Python reference decoder (evdistill_ros.wire.reference) on a prefix of the same
   messages, and the dvs_msgs codec as the project's reference point.
2. Bag -> Events (Bag.events, warm page cache) for the same stream stored as a ROS1 bag, a
   rosbag2 sqlite3 (.db3) and a rosbag2 mcap, with libcaer_cmp EventPackets, and the ROS1
   dvs_msgs bag.

    python bench/bench_wire.py [--events 3000000] [--quick]

Figures are for the machine they run on; compare rows of one run (ratios), not across machines.
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
from evdistill_ros.io.bag import Bag  # noqa: E402
from evdistill_ros.io.bag_layout import ros2_typestore  # noqa: E402
from evdistill_ros.io.bag_writer import BagWriter  # noqa: E402
from evdistill_ros.wire import decode_event_array, encode_event_array, reference  # noqa: E402
from evdistill_ros.wire.event_camera_msgs import (EVENT_PACKET_MD5, EVENT_PACKET_TYPE, decoder_for,  # noqa: E402
                                                  encode_event_packet, event_packet_definition)

TOPIC = "/events"
W, H = 346, 260


def stream(n_events: int, rate_hz: float = 10e6, packet_hz: float = 30.0) -> list[Events]:
    """A 10 Mev/s DAVIS346 stream in ~30 Hz packets; whole-µs times (what libcaer carries)."""
    rng = np.random.default_rng(0)
    per = int(rate_hz / packet_hz)
    t0 = 1_700_000_000_000_000_000
    out = []
    for start in range(0, n_events, per):
        n = min(per, n_events - start)
        us = np.sort(rng.integers(0, int(1e6 / packet_hz), n)) + int(start / rate_hz * 1e6)
        out.append(Events(rng.integers(0, W, n), rng.integers(0, H, n), t0 + us * 1000, rng.integers(0, 2, n)))
    return out


def best(fn, repeat: int = 3) -> float:
    t = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--reference-events", type=int, default=100_000, help="events the plain-Python references decode")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.events, args.reference_events = 500_000, 30_000
    packets = stream(args.events)
    n = sum(len(p) for p in packets)
    per = len(packets[0])
    n_ref = max(1, args.reference_events // per)

    print(f"\n1. Decode, in memory, one thread: {n} events in {len(packets)} messages of {per}, {W}x{H}")
    print(f"{'encoding':14s} {'decoder':22s} {'Mev/s':>9s} {'vs reference':>13s}")
    dvs = [encode_event_array(p, H, W) for p in packets]
    def dvs_all() -> None:  # results dropped per message, as a subscriber does (see bench_codec)
        for r in dvs:
            decode_event_array(r)

    s = best(dvs_all)
    print(f"{'dvs_msgs':14s} {'numba codec':22s} {n / s / 1e6:9.1f}")
    for enc in ("libcaer_cmp", "libcaer", "mono"):
        raws = [encode_event_packet(p, H, W, encoding=enc, time_base=int(p.t[0])) for p in packets]

        def run() -> None:
            dec = decoder_for(EVENT_PACKET_TYPE, EVENT_PACKET_MD5)  # a subscriber's decoder: state per stream
            for r in raws:
                dec(r)

        fast = n / best(run) / 1e6
        if enc == "mono":
            print(f"{enc:14s} {'numpy':22s} {fast:9.1f}")
            continue
        bodies = [(int(p.t[0]), _body(r)) for p, r in zip(packets[:n_ref], raws)]

        def ref() -> None:
            cmp = reference.LibcaerCmp()
            for time_base, body in bodies:
                reference.libcaer(body, time_base) if enc == "libcaer" else cmp(body, time_base, W, H)

        slow = per * len(bodies) / best(ref, 1) / 1e6
        print(f"{enc:14s} {'numpy' if enc == 'libcaer' else 'numba':22s} {fast:9.1f} {fast / slow:12.0f}x")
        print(f"{enc:14s} {'plain-Python reference':22s} {slow:9.3f}")

    print(f"\n2. Bag -> Events (Bag.events, warm page cache): the same {n} events")
    print(f"{'container':36s} {'MB':>7s} {'Mev/s':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ros1_dvs, ros1_cmp = tmp / "dvs.bag", tmp / "cmp.bag"
        with BagWriter(ros1_dvs) as w:
            for p in packets:
                w.write_events(TOPIC, p, H, W)
        cmp_raws = [encode_event_packet(p, H, W, encoding="libcaer_cmp", time_base=int(p.t[0])) for p in packets]
        with BagWriter(ros1_cmp) as w:
            for p, r in zip(packets, cmp_raws):
                w.write_raw(TOPIC, "event_camera_msgs/msg/EventPacket", int(p.t[0]), r,
                            msgdef=event_packet_definition(), md5=EVENT_PACKET_MD5)
        from rosbags.rosbag2 import StoragePlugin, Writer

        store = ros2_typestore([])
        rows = [("ROS1 .bag, dvs_msgs/EventArray", ros1_dvs), ("ROS1 .bag, EventPacket libcaer_cmp", ros1_cmp)]
        for name, plugin in (("db3", StoragePlugin.SQLITE3), ("mcap", StoragePlugin.MCAP)):
            path = tmp / f"r2_{name}"
            with Writer(path, version=8, storage_plugin=plugin) as w:
                c = w.add_connection(TOPIC, "event_camera_msgs/msg/EventPacket", typestore=store)
                for p, r in zip(packets, cmp_raws):
                    w.write(c, int(p.t[0]), store.ros1_to_cdr(r, "event_camera_msgs/msg/EventPacket"))
            rows.append((f"rosbag2 .{name}, EventPacket libcaer_cmp", path))
        for name, path in rows:
            size = sum(f.stat().st_size for f in ([path] if path.is_file() else path.iterdir()))

            def read(path=path) -> int:
                with Bag(path) as b:
                    return sum(len(e) for e in b.events(TOPIC))

            assert read() == n
            print(f"{name:36s} {size / 1e6:7.1f} {n / best(read) / 1e6:9.1f}")


def _body(raw: bytes) -> bytes:
    """The events bytes of an encoded EventPacket (what the reference decoders take)."""
    from evdistill_ros.wire.event_camera_msgs import _parse_packet

    return bytes(_parse_packet(raw)[-1])


if __name__ == "__main__":
    main()
