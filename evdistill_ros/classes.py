"""Semantic classes of DDD17 / Ev-SegNet / EvDistill: names, palette, colouring.

The one place for these constants; models, simulator, evaluator and visualiser import them.

    CLASS_NAMES   ("flat", "background", "object", "vegetation", "human", "vehicle"), id = index
    NUM_CLASSES   6
    IGNORE_INDEX  255 (pixels without a label; excluded from losses and metrics)
    PALETTE       (NUM_CLASSES, 3) uint8 RGB, the EvDistill palette (read-only array)
    IGNORE_COLOR  RGB drawn for IGNORE_INDEX (black)
    colorize(labels, palette=PALETTE) -> (..., 3) uint8 RGB image
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("flat", "background", "object", "vegetation", "human", "vehicle")
NUM_CLASSES: int = len(CLASS_NAMES)
IGNORE_INDEX: int = 255
IGNORE_COLOR: tuple[int, int, int] = (0, 0, 0)

PALETTE: np.ndarray = np.array(
    [
        (128, 64, 128),  # flat (road, sidewalk)
        (70, 70, 70),  # background (construction + sky)
        (250, 170, 30),  # object (pole, sign, light)
        (152, 251, 152),  # vegetation
        (220, 20, 60),  # human
        (0, 0, 142),  # vehicle
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)


def colorize(labels: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]] = PALETTE) -> np.ndarray:
    """Map integer class ids (any shape, e.g. (H, W)) to RGB uint8 (..., 3).

    IGNORE_INDEX is drawn as IGNORE_COLOR; any other id outside the palette raises ValueError.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"colorize: labels must be an integer array, got dtype {labels.dtype}")
    pal = np.asarray(palette, dtype=np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3:
        raise ValueError(f"colorize: palette must be (K, 3), got shape {pal.shape}")
    # A 256-entry lookup table: one gather, no per-class masks.
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(pal)] = pal
    lut[IGNORE_INDEX] = IGNORE_COLOR
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        bad = lo < 0 or hi > 255 or np.any((labels >= len(pal)) & (labels != IGNORE_INDEX))
        if bad:
            valid = labels[(labels < 0) | (labels > 255) | ((labels >= len(pal)) & (labels != IGNORE_INDEX))]
            raise ValueError(
                f"colorize: label {int(valid.flat[0])} is outside 0..{len(pal) - 1} and is not IGNORE_INDEX {IGNORE_INDEX}"
            )
    return lut[labels.astype(np.intp, copy=False)]
