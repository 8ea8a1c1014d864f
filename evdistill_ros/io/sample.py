"""The one sample type every dataset reader yields, and the label check they all apply.

    Sample(name, t_ns, events, aps, label, num_events=None)
        name    str, unique within the dataset (file stem, or "<bag stem>_<frame stamp ns>")
        t_ns    int ns of the frame / window end, or None where the layout does not say
        events  float32 (C, H, W) event embedding, or None
        aps     (H, W) uint8 grey, (H, W, 3) uint8 RGB, (H, W) uint16 (mono16 bags), or None
                (evdistill_ros.frames' convention: colour is RGB)
        label   (H, W) uint8 class ids of the layout's class set (DDD17's 0..5 unless the reader
                says otherwise, io.dsec: DSEC's 11 or 19), 255 = ignore, or None
    validate_label(label, where, classes=DDD17) -> np.ndarray    uint8; ValueError on other ids

Kept apart from io.samples (which dispatches to the readers) so that the readers and the
dispatcher import it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..classes import DDD17, ClassSet


@dataclass
class Sample:
    name: str
    t_ns: int | None
    events: np.ndarray | None
    aps: np.ndarray | None
    label: np.ndarray | None
    num_events: int | None = None


def validate_label(label: np.ndarray, where: str, classes: ClassSet = DDD17) -> np.ndarray:
    """Check a label image: 2-D, integer, ids of `classes` (DDD17's 0..5 by default) or its
    ignore index; returns uint8 (ClassSet.validate)."""
    return classes.validate(label, where)
