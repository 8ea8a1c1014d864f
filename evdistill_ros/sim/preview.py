"""Preview strips: rows of [APS | event image | labels] for a few frames of a simulated bag.

    preview_strip(bag, out_png, frames=4, window_ms=25.0, classes=DDD17) -> np.ndarray (RGB strip)

The event image shows the events within +-``window_ms`` / 2 of each frame's stamp (ON
blue, OFF red, as everywhere in the project); labels use the EvDistill palette.
"""
from __future__ import annotations

import os

import numpy as np

from ..classes import DDD17, ClassSet
from ..render import event_image, to_rgb
from ..io.bag import iter_images, read_events
from ..io.presets import PRESETS

EVENTS_TOPIC, IMAGE_TOPIC, LABELS_TOPIC = PRESETS["sim"].events, PRESETS["sim"].image, PRESETS["sim"].labels


def preview_strip(bag: str | os.PathLike, out_png: str | os.PathLike | None, frames: int = 4,
                  window_ms: float = 25.0, classes: ClassSet = DDD17) -> np.ndarray:
    """Write (if ``out_png``) and return an RGB strip of ``frames`` evenly spaced frames
    (labels in the colours of `classes`, the set the bag is labelled in)."""
    import cv2

    images = list(iter_images(bag, IMAGE_TOPIC))
    labels = {m.stamp_ns: m.image for m in iter_images(bag, LABELS_TOPIC)}
    if not images:
        raise ValueError(f"{bag}: no frames on {IMAGE_TOPIC} to preview")
    events = read_events(bag, EVENTS_TOPIC)
    pick = np.unique(np.linspace(0, len(images) - 1, min(frames, len(images))).round().astype(int))
    half = int(window_ms * 1e6 / 2)
    rows = []
    for i in pick:
        m = images[i]
        h, w = m.image.shape[:2]
        ev = events.time_slice(m.stamp_ns - half, m.stamp_ns + half)
        counts = np.zeros((2, h * w), np.float32)
        idx = ev.y.astype(np.int64) * w + ev.x
        on = ev.p > 0
        counts[0] = np.bincount(idx[on], minlength=h * w)
        counts[1] = np.bincount(idx[~on], minlength=h * w)
        evimg = event_image(counts.reshape(2, h, w), "count")
        lab = classes.colorize(labels[m.stamp_ns]) if m.stamp_ns in labels else np.zeros((h, w, 3), np.uint8)
        gap = np.full((h, 2, 3), 255, np.uint8)
        rows.append(np.concatenate([to_rgb(m.image), gap, evimg, gap, lab], axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    strip = np.concatenate(rows[:-1], axis=0)
    if out_png is not None:
        if not cv2.imwrite(str(out_png), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
            raise RuntimeError(f"could not write preview {out_png}")
    return strip
