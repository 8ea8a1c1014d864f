"""Pictures people look at: an event image from any embedding, and labels blended over it.

Shared by the ROS overlay, the visualiser and the demo so every picture of the project
looks the same. Event images follow rpg_dvs_renderer: white background, ON events blue,
OFF events red, intensity by activity.
"""
from __future__ import annotations

import numpy as np

from . import frames
from .classes import DDD17, IGNORE_COLOR, PALETTE, ClassSet, colorize
from .events.representations import REPRESENTATIONS
from .events.spec import EventInput


def polarity_maps(embedding: np.ndarray, representation: str | EventInput) -> tuple[np.ndarray, np.ndarray]:
    """(on, off) activity maps >= 0 of shape (H, W) from an embedding (C, H, W); the layout is
    the representation's own (`Representation.polarity`); an unknown name shows net polarity."""
    e = np.asarray(embedding, dtype=np.float32)
    if e.ndim != 3:
        raise ValueError(f"embedding must be (C, H, W), got shape {e.shape}")
    name, params = ((representation.representation, dict(representation.params))
                    if isinstance(representation, EventInput) else (representation, {}))
    rep = REPRESENTATIONS.get(name)
    if rep is None or e.shape[0] < 2:
        signed = e.sum(axis=0)
        return np.maximum(signed, 0), np.maximum(-signed, 0)
    return rep.polarity(e, params)


def event_image(embedding: np.ndarray, representation: str | EventInput) -> np.ndarray:
    """RGB uint8 (H, W, 3): white background, ON blue, OFF red, each scaled by its 99th percentile."""
    on, off = polarity_maps(embedding, representation)

    def scaled(m: np.ndarray) -> np.ndarray:
        nz = m[m > 0]
        top = float(np.percentile(nz, 99)) if nz.size else 1.0
        return np.clip(m / max(top, 1e-6), 0, 1)

    on, off = scaled(on), scaled(off)
    img = np.ones(on.shape + (3,), np.float32)
    img[..., 0] -= on  # blue = remove red and green
    img[..., 1] -= np.maximum(on, off)
    img[..., 2] -= off  # red = remove green and blue
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Grayscale (H, W) uint8/uint16 or RGB(A) (H, W, 3|4) -> RGB uint8 (frames.to_rgb_u8)."""
    return frames.to_rgb_u8(np.asarray(image))


def overlay(labels: np.ndarray, background: np.ndarray, alpha: float = 0.5,
            palette: np.ndarray = PALETTE) -> np.ndarray:
    """Class colours (`palette`: the network's class set) blended over a background image
    (resized to the labels if needed); RGB uint8."""
    rgb = to_rgb(background)
    if rgb.shape[:2] != labels.shape:
        import cv2

        rgb = cv2.resize(rgb, (labels.shape[1], labels.shape[0]), interpolation=cv2.INTER_LINEAR)
    colours = colorize(labels, palette).astype(np.float32)
    out = (1 - alpha) * rgb.astype(np.float32) + alpha * colours
    return out.round().astype(np.uint8)


def legend_strip(width: int, height: int = 22, vertical: bool = False, classes: ClassSet = DDD17) -> np.ndarray:
    """The colours of a class set with their names, (H, W, 3) uint8 RGB: one row `height` high
    under the visualiser's video frames, or with `vertical` one entry per `height` rows (the
    segmentation node's ~legend for an rviz panel)."""
    import cv2  # on use: the rest of render is numpy only

    names = list(classes.names) + ["ignore"]
    colours = [tuple(int(v) for v in c) for c in classes.palette] + [IGNORE_COLOR]
    strip = np.full((height * len(names) if vertical else height, width, 3), 255, np.uint8)
    step = height if vertical else width / len(names)
    scale = 0.38 * height / 22
    for i, (n, c) in enumerate(zip(names, colours)):
        x, y = (4, i * height) if vertical else (int(i * step) + 4, 0)
        box = (x, y + 5), (x + int(12 * height / 22), y + height - 5)
        cv2.rectangle(strip, *box, c, -1)
        cv2.rectangle(strip, *box, (90, 90, 90), 1)
        cv2.putText(strip, n, (box[1][0] + 4, y + height - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return strip
