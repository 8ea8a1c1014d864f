"""Exports of a bag's content to the dataset layouts users have (EvDistill PNG, Ev-SegNet).

    export_bag(bag, out, layout, *, split="test", window_ns=50_000_000, crop_rows=200,
               events_topic=None, image_topic=None, labels_topic=None, progress=True) -> dict

layout "evdistill-png": per APS frame with a label, images/<split>/<name>.png (event | APS) and
labels/<split>/<name>.png, the event half from the per-polarity counts of the window ending
at the frame. layout "evsegnet": <split>/{images,labels,events}/<name>.{png,png,npy} with the
`evsegnet_6ch` embedding of that window. Both crop to the top `crop_rows` rows (200: the
DDD17 frames these datasets were cut from; None keeps the sensor size). mono16 frames are
written as their high byte. Frames without a label are skipped and counted; a bag without a
labels topic is an error (both layouts are labelled test sets).
"""
from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from .. import frames
from ..events.spec import DEFAULT_EVENT_INPUT
from ..wire.event_camera_msgs import EVENT_PACKET_TYPE, decoder_for
from .bag import BagWriter, open_bag, ros1_type_name
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
    samples = iter_bag_samples(bag, representation=representation, window_ns=window_ns, events_topic=events_topic,
                               image_topic=image_topic, labels_topic=labels_topic, crop_rows=crop_rows)
    Path(out).mkdir(parents=True, exist_ok=True)
    for s in tqdm(samples, unit="frame", disable=not progress, desc=f"export {layout}"):
        if s.label is None:
            counts["skipped_unlabelled"] += 1
            continue
        aps = frames.to_u8(s.aps)
        if layout == "evdistill-png":
            write_evdistill_sample(out, split, s.name, s.events, aps, s.label)
        else:
            write_evsegnet_sample(out, split, s.name, s.events, aps, s.label)
        counts["written"] += 1
    return counts


def convert_event_packets(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    topic: str | None = None,
    out_topic: str | None = None,
    progress: bool = True,
) -> dict:
    """Rewrite a bag's `event_camera_msgs/EventPacket` topic (mono / evt3) as `dvs_msgs/EventArray`.

    Every other topic is copied unchanged. One EventArray per EventPacket, same stamp and
    bag time; events outside the sensor are dropped and counted.
    """


    counts = {"messages": 0, "events": 0, "dropped": 0, "copied": 0}
    with open_bag(src) as reader:
        packet_conns = [c for c in reader.connections if ros1_type_name(c.msgtype) == EVENT_PACKET_TYPE]
        if topic is not None:
            packet_conns = [c for c in packet_conns if c.topic == topic]
        found = sorted({c.topic for c in packet_conns})
        if len(found) != 1:
            raise ValueError(f"{src}: {len(found)} {EVENT_PACKET_TYPE} topics {found} (name one with --topic)")
        in_topic = found[0]
        out_topic = out_topic or in_topic
        decoders = {c.id: decoder_for(c.msgtype, c.digest) for c in packet_conns}
        with BagWriter(dst) as writer:
            for conn, bag_ns, raw in tqdm(reader.messages(), total=reader.message_count, unit="msg",
                                          disable=not progress, desc="event packets"):
                if conn.id in decoders:
                    msg = decoders[conn.id](raw)
                    writer.write_events(out_topic, msg.events, msg.height, msg.width, stamp_ns=msg.stamp_ns,
                                        frame_id=msg.frame_id)
                    counts["messages"] += 1
                    counts["events"] += len(msg.events)
                    counts["dropped"] += msg.dropped
                else:
                    if conn.topic == out_topic:
                        raise ValueError(f"{src}: output topic {out_topic} is already used by {conn.msgtype}")
                    # copied with the connection's own definition
                    writer.write_raw(conn.topic, conn.msgtype, bag_ns, raw,
                                     msgdef=getattr(conn.msgdef, "data", conn.msgdef), md5=conn.digest)
                    counts["copied"] += 1
    return counts
