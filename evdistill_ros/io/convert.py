"""Exports of a bag's content to the dataset layouts users have (EvDistill PNG, Ev-SegNet).

    export_bag(bag, out, layout, *, split="test", window_ns=50_000_000, crop_rows=200,
               events_topic=None, image_topic=None, labels_topic=None, progress=True) -> dict

layout "evdistill-png": per APS frame with a label, images/<split>/<name>.png (event | APS) and
labels/<split>/<name>.png, the event half from the per-polarity counts of the window ending
at the frame. layout "evsegnet": <split>/{images,labels,events}/<name>.{png,png,npy} with the
`evsegnet_6ch` embedding of that window. Both crop to the top `crop_rows` rows (200: the
DDD17 frames these datasets were cut from; None keeps the sensor size). mono16 frames are
written as their high byte. Frames without a label are skipped and counted; a bag without a
labels topic is an error (both layouts are labelled test sets). The files are written into a
temp folder beside `out` and moved in when the export is complete (atomic.staged_dir): a full
disk or a crash leaves `out` as it was, never a set that looks whole.
"""
from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from .. import frames
from ..atomic import staged_dir
from ..events.spec import DEFAULT_EVENT_INPUT, ByTime, EventInput
from ..wire.dvs_msgs import EVENT_ARRAY_TYPE as DVS_TYPE
from ..wire.event_camera_msgs import EVENT_TYPES, decoder_for
from .bag import open_recording
from .bag_layout import ros2_type_name
from .bag_writer import BagWriter
from .bag import topics as bag_topics
from .evdistill_png import write_evdistill_sample
from .evsegnet import write_evsegnet_sample
from .presets import detect_preset
from .samples import iter_bag_samples

LAYOUTS = ("evdistill-png", "evsegnet")


def export_bag(
    bag: str | os.PathLike,
    out: str | os.PathLike,
    layout: str,
    *,
    split: str = "test",
    window_ns: int = DEFAULT_EVENT_INPUT.window.window_ns,
    crop_rows: int | None = 200,
    events_topic: str | None = None,
    image_topic: str | None = None,
    labels_topic: str | None = None,
    progress: bool = True,
) -> dict:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown export layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if labels_topic is None:
        labels_topic = detect_preset(bag).labels
    if labels_topic is None or labels_topic not in bag_topics(bag):
        raise ValueError(f"{bag}: no labels topic ({labels_topic or 'none in the preset'}); "
                         f"the {layout} layout is a labelled test set (name one with --labels-topic)")
    representation = "count" if layout == "evdistill-png" else "evsegnet_6ch"
    counts = {"written": 0, "skipped_unlabelled": 0, "out": str(out)}
    spec = EventInput(representation, {}, ByTime(int(window_ns)))
    samples = iter_bag_samples(bag, event_input=spec, events_topic=events_topic, image_topic=image_topic,
                               labels_topic=labels_topic, crop_rows=crop_rows)
    with staged_dir(out) as stage:  # a full disk or a crash leaves no half set under `out`
        _export_samples(samples, stage, layout, split, counts, progress)
    return counts


def _export_samples(samples, out: Path, layout: str, split: str, counts: dict, progress: bool) -> None:
    for s in tqdm(samples, unit="frame", disable=not progress, desc=f"export {layout}"):
        if s.label is None:
            counts["skipped_unlabelled"] += 1
            continue
        if s.aps is None:
            counts["skipped_empty_frames"] = counts.get("skipped_empty_frames", 0) + 1
            continue
        aps = frames.to_u8(s.aps)
        if layout == "evdistill-png":
            write_evdistill_sample(out, split, s.name, s.events, aps, s.label)
        else:
            write_evsegnet_sample(out, split, s.name, s.events, aps, s.label)
        counts["written"] += 1


def convert_event_packets(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    topic: str | None = None,
    out_topic: str | None = None,
    progress: bool = True,
) -> dict:
    """Rewrite a bag's EventPacket / event_array_msgs topic (any supported encoding) as
    `dvs_msgs/EventArray` in a ROS1 bag; `src` may be ROS1 or rosbag2.

    Every other topic is copied unchanged (rosbag2 messages as their ROS1 equivalent). One
    EventArray per packet, same stamp and bag time; events outside the sensor are dropped and
    counted, and so are non-CD words (triggers, ...).
    """
    counts = {"messages": 0, "events": 0, "dropped": 0, "non_cd_skipped": 0, "copied": 0}
    with open_recording(src) as bag:
        packet_topics = sorted(t for t, info in bag.topics.items()
                               if info.msgtype in EVENT_TYPES and info.msgtype != DVS_TYPE)
        if topic is not None:
            packet_topics = [t for t in packet_topics if t == topic]
        if len(packet_topics) != 1:
            raise ValueError(f"{src}: {len(packet_topics)} event packet topics {packet_topics} (name one with --topic)")
        in_topic = packet_topics[0]
        out_topic = out_topic or in_topic
        if out_topic != in_topic and out_topic in bag.topics:
            raise ValueError(f"{src}: output topic {out_topic} is already used by {bag.topics[out_topic].msgtype}")
        decoder = decoder_for(bag.topics[in_topic].msgtype, bag.topics[in_topic].md5 or "*")
        total = sum(t.count for t in bag.topics.values())
        with BagWriter(dst) as writer:
            for tp, msgtype, bag_ns, raw in tqdm(bag.raw_messages(), total=total, unit="msg", disable=not progress,
                                                 desc="event packets"):
                if tp == in_topic:
                    msg = decoder(raw)
                    writer.write_events(out_topic, msg.events, msg.height, msg.width, stamp_ns=msg.stamp_ns,
                                        frame_id=msg.frame_id)
                    counts["messages"] += 1
                    counts["events"] += len(msg.events)
                    counts["dropped"] += msg.dropped
                    counts["non_cd_skipped"] += msg.skipped
                else:
                    msgdef, md5 = bag.ros1_definition(tp)
                    writer.write_raw(tp, ros2_type_name(msgtype), bag_ns, raw, msgdef=msgdef, md5=md5)
                    counts["copied"] += 1
    return counts


def convert_to_ros1(src: str | os.PathLike, dst: str | os.PathLike, *, topics: list[str] | None = None,
                    progress: bool = True) -> dict:
    """Copy every message of `topics` (default: all) of a rosbag2 (or ROS1) bag, a DV .aedat4 or a
    Prophesee .raw into a ROS1 bag, as the ROS1 equivalent of each message, same times, so
    `rosbag play` on ROS1 plays it (files: rpg_dvs_ros' topics, io.recordings)."""
    counts: dict = {"messages": 0}
    with open_recording(src) as bag:
        chosen = list(bag.topics) if not topics else topics
        missing = [t for t in chosen if t not in bag.topics]
        if missing:
            raise ValueError(f"{src}: no topic(s) {missing}; topics: {sorted(bag.topics)}")
        total = sum(bag.topics[t].count for t in chosen)
        with BagWriter(dst) as writer:
            for tp, msgtype, bag_ns, raw in tqdm(bag.raw_messages(chosen), total=total, unit="msg",
                                                 disable=not progress, desc="to ROS1"):
                msgdef, md5 = bag.ros1_definition(tp)
                writer.write_raw(tp, ros2_type_name(msgtype), bag_ns, raw, msgdef=msgdef, md5=md5)
                counts["messages"] += 1
                counts[tp] = counts.get(tp, 0) + 1
    return counts
