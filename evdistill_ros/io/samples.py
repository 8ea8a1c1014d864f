"""One sample iterator per dataset layout, all yielding the same `Sample` (io.sample): `iter_samples`
detects the layout (`detect_format`) and hands the options on to that layout's reader; recordings
of every kind go through `iter_bag_samples`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import frames
from ..classes import DDD17, ClassSet
from ..events.spec import DEFAULT_EVENT_INPUT, EventInput
from .bag import Bag, is_recording, open_recording
from .recordings import FileRecording
from .dsec import is_dsec, iter_dsec
from .ess import iter_ess
from .evdistill_png import iter_evdistill_png
from .evsegnet import iter_evsegnet
from .pair_cache import iter_cache_samples, is_cache
from .presets import detect_preset
from ..wire.dvs_msgs import TIME_OUTLIER_NS
from .sample import Sample, validate_label

__all__ = ["FORMATS", "Sample", "validate_label", "detect_format", "iter_samples", "iter_bag_samples"]

FORMATS = ("bag", "evdistill-png", "evsegnet", "ess", "dsec", "cache")


def detect_format(path: str | os.PathLike) -> str:
    """Guess the layout of `path`; ValueError saying what was looked for."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"no such file or directory: {p}")
    if p.is_dir() and is_cache(p):
        return "cache"
    if is_recording(p):
        return "bag"
    if p.is_file():
        raise ValueError(f"{p}: a file that is not a recording (.bag, rosbag2 .db3 / .mcap, DV .aedat4, Prophesee "
                         ".raw); datasets are directories "
                         "(evdistill-png, evsegnet, ess, a rosbag2 folder)")
    if is_dsec(p):  # before Ev-SegNet: a DSEC sequence has an events/ folder too
        return "dsec"
    if (p / "images").is_dir() and (p / "labels").is_dir() and not (p / "events").is_dir():
        return "evdistill-png"
    if any((p / s / "events").is_dir() for s in ("train", "test", "other")) or (p / "events").is_dir():
        return "evsegnet"
    if (p / "events.dat.t").is_file() or any(d.is_dir() and (d / "events.dat.t").is_file() for d in p.glob("dir*")):
        return "ess"
    raise ValueError(
        f"{p}: unknown dataset layout; expected images/ + labels/ (EvDistill PNG), "
        f"{{train,test}}/{{images,labels,events}} (Ev-SegNet), dir*/events.dat.t (ESS DDD17), "
        f"[{{train,test}}/]<sequence>/events/left/events.h5 (DSEC) or a .bag"
    )


def iter_samples(path: str | os.PathLike, format: str | None = None, **options) -> Iterator[Sample]:
    """Samples of a dataset in any layout of FORMATS (None: detected); `options` go to its reader:
    "bag": iter_bag_samples, "evdistill-png": io.evdistill_png.iter_evdistill_png, "evsegnet":
    io.evsegnet.iter_evsegnet, "ess": io.ess.iter_ess, "dsec": io.dsec.iter_dsec, "cache" (training-pair
    caches): io.pair_cache.iter_cache_samples."""
    fmt = format or detect_format(path)
    if fmt == "bag":
        return iter_bag_samples(path, **options)
    if fmt == "evdistill-png":
        return iter_evdistill_png(path, **options)
    if fmt == "evsegnet":
        return iter_evsegnet(path, **options)
    if fmt == "ess":
        return iter_ess(path, **options)
    if fmt == "dsec":
        return iter_dsec(path, **options)
    if fmt == "cache":
        return iter_cache_samples(path, **options)
    raise ValueError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}")


def iter_bag_samples(
    bag: str | os.PathLike,
    *,
    event_input: EventInput | None = None,
    events_topic: str | None = None,
    image_topic: str | None = None,
    labels_topic: str | None = None,
    crop_rows: int | None = None,
    require_labels: bool = False,
    need_events: bool = True,
    classes: ClassSet = DDD17,
) -> Iterator[Sample]:
    """Samples of a recording (anything io.bag.open_recording reads: ROS1, rosbag2, DV's .aedat4,
    Prophesee's .raw), one per APS frame.

    Each holds the event window ending at the frame's stamp (the `event_input`'s window,
    `EventInput.windows_at`; default DEFAULT_EVENT_INPUT), the frame (`frames.canonical`: colour as
    RGB, mono16 kept) and the label image with the same stamp when the bag has a labels topic
    (frames without one get label None, or are an error with `require_labels`); labels are checked
    against `classes`, the class set the bag is labelled in. `crop_rows` keeps the top rows of
    everything (200 for the DDD17 / Ev-SegNet crop), after embedding the full sensor;
    `need_events=False` skips the embeddings. Topics default to the event input's topic, then the
    detected preset (io.presets); the sensor size comes from the event messages (the frames when
    those carry none). Everything streams: one frame, label and embedding in memory at a time.
    """
    spec = event_input or DEFAULT_EVENT_INPUT
    with open_recording(bag) as b:
        yield from _bag_samples(b, spec, events_topic, image_topic, labels_topic, crop_rows, require_labels,
                                need_events, classes)
        if b.time_outliers:  # said, not silent: one glitched stamp used to empty every later window
            warnings.warn(f"{bag}: {b.time_outliers} event read(s) more than {TIME_OUTLIER_NS / 1e9:g} s from their "
                          "message's own time (a glitched clock) were dropped", stacklevel=2)


def _bag_samples(bag: Bag | FileRecording, spec: EventInput, events_topic: str | None, image_topic: str | None,
                 labels_topic: str | None, crop_rows: int | None, require_labels: bool,
                 need_events: bool, classes: ClassSet) -> Iterator[Sample]:
    have = bag.topics
    events_topic = events_topic or (spec.topic if spec.topic in have else None)
    if (events_topic is None and need_events) or image_topic is None:
        pre = detect_preset(bag)
        events_topic = events_topic or pre.events
        image_topic = image_topic or pre.image
        if labels_topic is None:
            labels_topic = pre.labels
    if events_topic not in have:
        if need_events:
            raise ValueError(f"{bag.path}: no event topic {events_topic}; topics: {sorted(have)}")
        events_topic = None  # frames and labels only (an APS network's evaluation)
    if image_topic not in have:
        raise ValueError(f"{bag.path}: no image topic {image_topic}; topics: {sorted(have)}")
    if labels_topic is not None and labels_topic not in have:
        if require_labels:
            raise ValueError(f"{bag.path}: no labels topic {labels_topic}")
        labels_topic = None

    # sensor size from the first event message; frame stamps from a first pass over the images
    height = width = 0
    for _, msg in bag.event_messages(events_topic) if events_topic else ():
        height, width = msg.height, msg.width
        break
    stamps = np.array([m.stamp_ns for m in bag.images(image_topic)], dtype=np.int64)
    if not height or not width:
        for m in bag.images(image_topic):
            height, width = m.image.shape[:2]
            if height and width:
                break
    if len(stamps) and np.any(np.diff(stamps) <= 0):
        raise ValueError(f"{bag.path}: frame stamps on {image_topic} are not strictly increasing")

    from ..events.windows import WindowStats  # on use: numba only once windows are built

    stats = WindowStats()
    windows = (spec.windows_at(bag.events(events_topic), stamps, height=height, width=width, stats=stats)
               if events_topic else ((int(t), None, 0) for t in stamps))
    sizes: set[tuple[int, ...]] = set()
    labels = bag.images(labels_topic) if labels_topic else None
    pending_label = None
    stem = bag.path.stem
    rows = slice(0, crop_rows) if crop_rows else slice(None)
    for frame, (t_end, emb, n_ev) in zip(bag.images(image_topic), windows):
        label = None
        if labels is not None:
            while pending_label is None or pending_label.stamp_ns < frame.stamp_ns:
                pending_label = next(labels, None)
                if pending_label is None:
                    break
            if pending_label is not None and pending_label.stamp_ns == frame.stamp_ns:
                label = validate_label(pending_label.image, f"{bag.path} {labels_topic} at {frame.stamp_ns} ns",
                                       classes)
        if label is None and require_labels:
            raise ValueError(f"{bag.path}: frame at {frame.stamp_ns} ns has no label with the same stamp on {labels_topic}")
        # an empty frame (0 rows or columns, seen from faulty drivers) has no pixels to segment:
        # its sample carries no APS frame, so consumers skip and count it (evaluate: "no aps")
        aps = None if frame.image.size == 0 else frames.canonical(frame.image, frame.encoding)
        if aps is not None:
            sizes.add(aps.shape[:2])
        yield Sample(
            name=f"{stem}_{frame.stamp_ns}",
            t_ns=int(frame.stamp_ns),
            events=None if emb is None else np.ascontiguousarray(emb[:, rows]),
            aps=None if aps is None else np.ascontiguousarray(aps[rows]),
            label=None if label is None else np.ascontiguousarray(label[rows]),
            num_events=int(n_ev),
        )
    # what evaluation used to pass over in silence: said once per recording
    notes = []
    if len(sizes) > 1:
        notes.append(f"the frames on {image_topic} change size ({', '.join(f'{w}x{h}' for h, w in sorted(sizes))})")
    if stats.dropped_out_of_order:
        notes.append(f"{stats.dropped_out_of_order} event(s) on {events_topic} arrived out of time order and were "
                     "dropped")
    if stats.resets:
        notes.append(f"event time on {events_topic} jumped backwards {stats.resets} time(s) (windows restarted)")
    if notes:
        warnings.warn(f"{bag.path}: " + "; ".join(notes), stacklevel=3)
