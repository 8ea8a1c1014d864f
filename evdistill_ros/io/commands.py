"""`evdistill info` (bags, DSEC sequences) and `evdistill convert {mvsec,ddd17,dsec,event-packets,ros1,
bag-to-evdistill-png,bag-to-evsegnet}`."""
from __future__ import annotations

import argparse
import json


def _info(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bag import bag_info  # on use: the CLI parses without torch/numba
    from .dsec import is_dsec, sequence_info  # on use: the CLI parses without h5py

    if Path(args.bag).is_dir() and is_dsec(Path(args.bag)):
        seqs = sequence_info(args.bag)
        if args.json:
            print(json.dumps(seqs, indent=2))
            return 0
        for path, s in seqs.items():
            labels = ", ".join(f"{n} in {k} classes" for k, n in s["labels"].items()) or "no labels"
            print(f"{path}: DSEC sequence, {s['duration_s']:.3f} s, {s['events']} events "
                  f"({s['events'] / max(s['duration_s'], 1e-9) / 1e6:.3f} Mev/s), {labels}, "
                  f"{s['ev_inf_frames']} ev_inf frames")
        return 0
    info = bag_info(args.bag)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}: {info['format']}, {info['duration_s']:.3f} s")
    for topic, t in info["topics"].items():
        line = f"  {topic:32s} {t['type']:28s} {t['messages']:8d} msgs"
        if "events" in t:
            size = t["sensor_size"]
            line += f"  {t['events']} events, {t['event_rate_hz'] / 1e6:.3f} Mev/s, {size['width']}x{size['height']}"
            if t.get("non_cd_skipped"):
                line += f", {t['non_cd_skipped']} non-CD words skipped"
            if t.get("time_outliers_dropped"):
                line += f", {t['time_outliers_dropped']} glitched timestamps dropped"
        print(line)
    for stream, n in info.get("other_streams", {}).items():
        print(f"  ({stream}: {n}, not read as ROS messages)")
    return 0


def _period_ns(args: argparse.Namespace) -> int | None:
    if args.rate_hz is not None and args.rate_hz <= 0:
        raise ValueError(f"--rate-hz must be positive, got {args.rate_hz}")
    return None if args.rate_hz == 0 or (args.max_events and args.rate_hz is None) else int(round(1e9 / (args.rate_hz or 30.0)))


def _report(counts: dict, out: str) -> int:
    print(f"wrote {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "out"))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .presets import preset  # on use: the CLI parses without torch/numba

    kind = args.kind
    if kind == "mvsec":
        from .mvsec import convert_mvsec  # on use: the CLI parses without torch/numba

        counts = convert_mvsec(args.input, args.out, camera=args.camera, topics=preset(args.preset or "mvsec"),
                               period_ns=_period_ns(args), max_events=args.max_events, progress=not args.quiet)
    elif kind == "ddd17":
        from .ddd17 import convert_ddd17  # on use: the CLI parses without torch/numba

        counts = convert_ddd17(args.input, args.out, topics=preset(args.preset or "ddd17"), mono8=args.mono8,
                               time_origin=args.time_origin, period_ns=_period_ns(args), max_events=args.max_events,
                               progress=not args.quiet)
    elif kind == "event-packets":
        from .convert import convert_event_packets  # on use: the CLI parses without torch/numba

        counts = convert_event_packets(args.input, args.out, topic=args.topic, out_topic=args.out_topic,
                                       progress=not args.quiet)
    elif kind == "dsec":
        from .dsec import convert_dsec  # on use: the CLI parses without h5py

        counts = convert_dsec(args.input, args.out, classes=args.classes, topics=preset(args.preset or "dsec"),
                              period_ns=_period_ns(args), max_events=args.max_events, progress=not args.quiet)
    elif kind == "ros1":
        from .convert import convert_to_ros1  # on use: the CLI parses without torch/numba

        counts = convert_to_ros1(args.input, args.out, topics=args.topics, progress=not args.quiet)
    else:
        from .convert import export_bag  # on use: the CLI parses without torch/numba

        counts = export_bag(args.input, args.out, kind.removeprefix("bag-to-"), split=args.split,
                            window_ns=int(args.window_ms * 1e6), crop_rows=args.crop_rows or None,
                            events_topic=args.events_topic, image_topic=args.image_topic,
                            labels_topic=args.labels_topic, progress=not args.quiet)
    return _report(counts, args.out)


def _register_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert datasets: MVSEC/DDD17 HDF5 -> bag, bag -> EvDistill PNG / Ev-SegNet")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)

    def common(q: argparse.ArgumentParser, bag_out: bool) -> None:
        q.add_argument("input", help="input file")
        q.add_argument("--out", required=True, help="output .bag" if bag_out else "output dataset directory")
        q.add_argument("--quiet", action="store_true", help="no progress bar")
        q.set_defaults(func=_convert)

    def packing(q: argparse.ArgumentParser, default_preset: str) -> None:
        q.add_argument("--rate-hz", type=float, default=None,
                       help="EventArray messages per second of event time (default 30; 0 = by --max-events only)")
        q.add_argument("--max-events", type=int, default=None, help="at most this many events per message")
        q.add_argument("--preset", default=None, help=f"output topic names (io.presets; default {default_preset})")

    q = kinds.add_parser("mvsec", help="MVSEC *_data.hdf5 -> bag (events + mono8 frames)")
    common(q, True)
    packing(q, "mvsec")
    q.add_argument("--camera", default="left", choices=("left", "right"))

    q = kinds.add_parser("ddd17", help="DDD17/DDD20 recording (cAER packets in HDF5) -> bag")
    common(q, True)
    packing(q, "ddd17")
    q.add_argument("--mono8", action="store_true", help="write frames as mono8 (high byte) instead of mono16")
    q.add_argument("--time-origin", default="wall", choices=("wall", "sensor"),
                   help="wall: shift to the host receive time (default); sensor: the camera clock")

    q = kinds.add_parser("event-packets", help="bag (ROS1 or rosbag2) with event_camera_msgs/EventPacket or "
                         "event_array_msgs/EventArray (libcaer_cmp, libcaer, evt3, mono) -> ROS1 bag with dvs_msgs/EventArray")
    common(q, True)
    q.add_argument("--topic", default=None, help="EventPacket topic (default: the only one)")
    q.add_argument("--out-topic", default=None, help="EventArray topic (default: the same name)")

    q = kinds.add_parser("dsec", help="DSEC-Semantic sequence folder -> bag (rectified events on the labelled "
                         "440 x 640, ev_inf frames, labels) for the live nodes and training")
    common(q, True)
    packing(q, "dsec")
    q.add_argument("--classes", type=int, choices=(11, 19), default=11, help="label set written (default 11)")

    q = kinds.add_parser("ros1", help="rosbag2 (folder, .db3 or .mcap) -> ROS1 bag with every message of the "
                         "chosen topics, for rosbag play on ROS1")
    common(q, True)
    q.add_argument("--topics", nargs="+", default=None, help="topics to copy (default: all)")

    for layout in ("evdistill-png", "evsegnet"):
        q = kinds.add_parser(f"bag-to-{layout}", help=f"bag with labels -> {layout} layout (one sample per labelled frame)")
        common(q, False)
        q.add_argument("--split", default="test")
        q.add_argument("--window-ms", type=float, default=50.0, help="event window ending at each frame (default 50)")
        q.add_argument("--crop-rows", type=int, default=200, help="keep the top rows (default 200, DDD17 crop; 0 = all)")
        q.add_argument("--events-topic", default=None)
        q.add_argument("--image-topic", default=None)
        q.add_argument("--labels-topic", default=None)


def register(sub: argparse._SubParsersAction) -> None:
    _register_convert(sub)
    p = sub.add_parser("info", help="summarise a bag: ROS1 or rosbag2 (topics, counts, event statistics), or a "
                       "DSEC sequence / root")
    p.add_argument("bag", help="a ROS1 .bag file, a rosbag2 folder / .db3 / .mcap file, or a DSEC folder")
    p.add_argument("--json", action="store_true", help="print JSON (per topic: type, count; events: total, span, rate, size)")
    p.set_defaults(func=_info)
