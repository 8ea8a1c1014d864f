"""One sample iterator per dataset layout, all yielding the same `Sample`.

    Sample(name, t_ns, events, aps, label, num_events=None)
        name    str, unique within the dataset (file stem, or "<bag stem>_<frame stamp ns>")
        t_ns    int ns of the frame / window end, or None where the layout does not say
        events  float32 (C, H, W) event embedding, or None
        aps     (H, W) uint8 grey, (H, W, 3) uint8 RGB, (H, W) uint16 (mono16 bags), or None
        label   (H, W) uint8 class ids 0..5, 255 = ignore, or None

    iter_samples(path, format=None, **options) -> Iterator[Sample]
        format: "bag" | "evdistill-png" | "evsegnet" | "ess"; None detects it (detect_format)
    detect_format(path) -> str
    validate_label(label, where) -> np.ndarray    uint8; ValueError on values outside 0..5, 255
    iter_bag_samples(bag, *, representation="evdistill_2ch", window_ns=50_000_000,
                     window_events=None, events_topic=None, image_topic=None, labels_topic=None,
                     crop_rows=None, require_labels=False, **params)

Layout-specific readers (options are passed through by iter_samples):
    evdistill_png.iter_evdistill_png(root, split="test")
    evsegnet.iter_evsegnet(root, split="test")
    ess.iter_ess(root, split="test", representation="voxel_grid", window_ms=50, window_events=None, **params)

Bag samples: for every APS frame, the event window ending at the frame's stamp (time window
`window_ns` or the last `window_events` events, via `events.windows.embeddings_at`), the frame,
and the label image with the same stamp when the bag has a labels topic (frames without one
get label None, or are an error with require_labels). `crop_rows` keeps the top rows of
everything (200 for the DDD17 / Ev-SegNet crop), after embedding the full sensor. Topics
default to the detected preset (io.presets). Everything streams: one frame, label and
embedding in memory at a time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..classes import IGNORE_INDEX, NUM_CLASSES

FORMATS = ("bag", "evdistill-png", "evsegnet", "ess")


@dataclass
class Sample:
    name: str
    t_ns: int | None
    events: np.ndarray | None
    aps: np.ndarray | None
    label: np.ndarray | None
    num_events: int | None = None


def validate_label(label: np.ndarray, where: str) -> np.ndarray:
    """Check a label image: 2-D, integer, values 0..NUM_CLASSES-1 or IGNORE_INDEX; returns uint8."""
    label = np.asarray(label)
    if label.ndim == 3 and label.shape[2] in (3, 4) and np.array_equal(label[..., 0], label[..., 1]) \
            and np.array_equal(label[..., 0], label[..., 2]):
        label = label[..., 0]  # a grey label saved as RGB
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"{where}: a label must be a 2-D integer image, got {label.dtype} {label.shape}")
    bad = (label >= NUM_CLASSES) & (label != IGNORE_INDEX) | (label < 0)
    if np.any(bad):
        vals = np.unique(label[bad])[:5].tolist()
        raise ValueError(f"{where}: label values {vals} outside 0..{NUM_CLASSES - 1} and {IGNORE_INDEX} (ignore)")
    return label.astype(np.uint8, copy=False)


def detect_format(path: str | os.PathLike) -> str:
    """Guess the layout of `path`; ValueError saying what was looked for."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"no such file or directory: {p}")
    if p.is_file():
        if p.suffix == ".bag":
            return "bag"
        raise ValueError(f"{p}: a file that is not a .bag; datasets are directories (evdistill-png, evsegnet, ess)")
    if (p / "images").is_dir() and (p / "labels").is_dir() and not (p / "events").is_dir():
        return "evdistill-png"
    if any((p / s / "events").is_dir() for s in ("train", "test", "other")) or (p / "events").is_dir():
        return "evsegnet"
    if (p / "events.dat.t").is_file() or any(d.is_dir() and (d / "events.dat.t").is_file() for d in p.glob("dir*")):
        return "ess"
    raise ValueError(
        f"{p}: unknown dataset layout; expected images/ + labels/ (EvDistill PNG), "
        f"{{train,test}}/{{images,labels,events}} (Ev-SegNet), dir*/events.dat.t (ESS DDD17) or a .bag"
    )


def iter_samples(path: str | os.PathLike, format: str | None = None, **options) -> Iterator[Sample]:
    """Samples of a dataset in any supported layout (see the module doc for the options)."""
    fmt = format or detect_format(path)
    if fmt == "bag":
        return iter_bag_samples(path, **options)
    if fmt == "evdistill-png":
        from .evdistill_png import iter_evdistill_png

        return iter_evdistill_png(path, **options)
    if fmt == "evsegnet":
        from .evsegnet import iter_evsegnet

        return iter_evsegnet(path, **options)
    if fmt == "ess":
        from .ess import iter_ess

        return iter_ess(path, **options)
    raise ValueError(f"unknown dataset format {fmt!r}; known: {', '.join(FORMATS)}")


def iter_bag_samples(
    bag: str | os.PathLike,
    *,
    representation: str = "evdistill_2ch",
    window_ns: int | None = 50_000_000,
    window_events: int | None = None,
    events_topic: str | None = None,
    image_topic: str | None = None,
    labels_topic: str | None = None,
    crop_rows: int | None = None,
    require_labels: bool = False,
    **params,
) -> Iterator[Sample]:
    """Samples of a bag, one per APS frame (see the module doc)."""
    from ..events.windows import embeddings_at
    from .bag import iter_event_messages, iter_images, topics
    from .presets import detect_preset

    have = topics(bag)
    if events_topic is None or image_topic is None:
        pre = detect_preset(bag)
        events_topic = events_topic or pre.events
        image_topic = image_topic or pre.image
        if labels_topic is None:
            labels_topic = pre.labels
    for what, topic in (("event", events_topic), ("image", image_topic)):
        if topic not in have:
            raise ValueError(f"{bag}: no {what} topic {topic}; topics: {sorted(have)}")
    if labels_topic is not None and labels_topic not in have:
        if require_labels:
            raise ValueError(f"{bag}: no labels topic {labels_topic}")
        labels_topic = None
    if window_events is not None:
        window_ns = None

    # sensor size from the first event message; frame stamps from a first pass over the images
    height = width = 0
    for _, msg in iter_event_messages(bag, events_topic):
        height, width = msg.height, msg.width
        break
    stamps = np.array([m.stamp_ns for m in iter_images(bag, image_topic)], dtype=np.int64)
    if not height or not width:
        for m in iter_images(bag, image_topic):
            height, width = m.image.shape[:2]
            break
    if len(stamps) and np.any(np.diff(stamps) <= 0):
        raise ValueError(f"{bag}: frame stamps on {image_topic} are not strictly increasing")

    chunks = (m.events for _, m in iter_event_messages(bag, events_topic))
    windows = embeddings_at(chunks, stamps, representation, height=height, width=width,
                            window_ns=window_ns, window_events=window_events, **params)
    labels = iter_images(bag, labels_topic) if labels_topic else None
    pending_label = None
    stem = Path(bag).stem
    rows = slice(0, crop_rows) if crop_rows else slice(None)
    for frame, (t_end, emb, n_ev) in zip(iter_images(bag, image_topic), windows):
        label = None
        if labels is not None:
            while pending_label is None or pending_label.stamp_ns < frame.stamp_ns:
                pending_label = next(labels, None)
                if pending_label is None:
                    break
            if pending_label is not None and pending_label.stamp_ns == frame.stamp_ns:
                label = validate_label(pending_label.image, f"{bag} {labels_topic} at {frame.stamp_ns} ns")
        if label is None and require_labels:
            raise ValueError(f"{bag}: frame at {frame.stamp_ns} ns has no label with the same stamp on {labels_topic}")
        aps = frame.image
        if frame.encoding == "bgr8":
            aps = np.ascontiguousarray(aps[:, :, ::-1])
        yield Sample(
            name=f"{stem}_{frame.stamp_ns}",
            t_ns=int(frame.stamp_ns),
            events=np.ascontiguousarray(emb[:, rows]),
            aps=np.ascontiguousarray(aps[rows]),
            label=None if label is None else np.ascontiguousarray(label[rows]),
            num_events=int(n_ev),
        )
