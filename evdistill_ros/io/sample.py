"""The one sample type every dataset reader yields, and the label check they all apply.

    Sample(name, t_ns, events, aps, label, num_events=None)
        name    str, unique within the dataset (file stem, or "<bag stem>_<frame stamp ns>")
        t_ns    int ns of the frame / window end, or None where the layout does not say
        events  float32 (C, H, W) event embedding, or None
        aps     (H, W) uint8 grey, (H, W, 3) uint8 RGB, (H, W) uint16 (mono16 bags), or None
                (evdistill_ros.frames' convention: colour is RGB)
        label   (H, W) uint8 class ids 0..5, 255 = ignore, or None
    validate_label(label, where) -> np.ndarray    uint8; ValueError on values outside 0..5, 255

Kept apart from io.samples (which dispatches to the readers) so that the readers and the
dispatcher import it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..classes import IGNORE_INDEX, NUM_CLASSES


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
