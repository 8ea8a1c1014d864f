"""`evdistill info` (and `evdistill convert`, registered by the converters)."""
from __future__ import annotations

import argparse
import json


def _info(args: argparse.Namespace) -> int:
    from .bag import bag_info

    info = bag_info(args.bag)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}: {info['duration_s']:.3f} s")
    for topic, t in info["topics"].items():
        line = f"  {topic:32s} {t['type']:28s} {t['messages']:8d} msgs"
        if "events" in t:
            size = t["sensor_size"]
            line += f"  {t['events']} events, {t['event_rate_hz'] / 1e6:.3f} Mev/s, {size['width']}x{size['height']}"
        print(line)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="summarise a ROS1 bag (topics, counts, event statistics)")
    p.add_argument("bag", help="path to a ROS1 .bag file")
    p.add_argument("--json", action="store_true", help="print JSON (per topic: type, count; events: total, span, rate, size)")
    p.set_defaults(func=_info)
