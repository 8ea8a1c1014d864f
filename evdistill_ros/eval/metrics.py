"""Segmentation metrics: one confusion matrix, every number derived from it.

    cm = ConfusionMatrix(num_classes=6, ignore_index=255, class_names=CLASS_NAMES)
    cm.update(pred, label)         # any shape, same shape; pixels with label == ignore_index skipped
    cm.matrix                      # (K, K) int64, rows = ground truth, columns = prediction
    cm.iou()                       # (K,) float64, NaN where a class is absent (union 0)
    cm.miou()                      # EvDistill: nanmean over classes with union > 0 (absent dropped)
    cm.miou_all()                  # Ev-SegNet / ESS: mean over all K classes, absent class = 0
    cm.accuracy()                  # pixel accuracy, trace / total
    cm.to_dict()                   # the `evdistill evaluate` JSON block (below)
    ConfusionMatrix.from_dict(d)   # back from that block (its "confusion")
    cm.merge(other) / cm += other  # sums (e.g. over processes)

``to_dict()`` gives::

    {"miou": float|None, "miou_all": float|None, "accuracy": float|None, "mean_accuracy": float|None,
     "iou": {class_name: float|None, ...}, "pixels": int, "classes": [names],
     "confusion": [[int, ...], ...]}   # rows = ground truth, columns = prediction

Values are fractions in [0, 1]; None stands for "undefined" (no labelled pixel at all, or an
absent class), since JSON has no NaN. "Absent" means union 0: the class is neither in the
ground truth nor predicted. A class predicted but never labelled has IoU 0 in both conventions.

The EvDistill formula (their evaluate.py): ``diag / (rows + cols - diag)`` then ``np.nanmean``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES


class ConfusionMatrix:
    """Accumulates a (K, K) confusion matrix over labelled pixels with np.bincount."""

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
                 class_names: Sequence[str] | None = None) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"ConfusionMatrix: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        if class_names is None:
            class_names = CLASS_NAMES if self.num_classes == NUM_CLASSES else [f"class_{i}" for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"ConfusionMatrix: {len(class_names)} class names for {self.num_classes} classes")
        self.class_names = tuple(str(n) for n in class_names)
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    # -- accumulation --------------------------------------------------------------------
    def update(self, pred: Any, label: Any) -> None:
        """Add one prediction / ground-truth pair (or a batch) of the same shape.

        Labels must be class ids 0..K-1 or ignore_index; predictions 0..K-1 (ValueError otherwise:
        a wrong value would otherwise be binned into another class's cell without a word).
        """
        pred = np.asarray(pred)
        label = np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
        if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(label.dtype, np.integer)):
            raise ValueError(f"predictions and labels must be integer arrays, got {pred.dtype} and {label.dtype}")
        k, ignore = self.num_classes, self.ignore_index
        lab = label.ravel()
        prd = pred.ravel()
        if lab.size == 0:
            return
        lmin, lmax = int(lab.min()), int(lab.max())
        if lmin < 0 or lmax > max(k - 1, ignore):
            bad = lmin if lmin < 0 else lmax
            raise ValueError(f"label value {bad} is not a class id 0..{k - 1} nor the ignore index {ignore}")
        # One bincount over label * K + pred with a row per label value; the ignore row is dropped
        # after. No boolean gather of labelled pixels: that costs more than the count itself.
        rows = max(lmax, k - 1) + 1
        if int(prd.min()) < 0 or int(prd.max()) >= k:
            labelled = prd[lab != ignore]
            bad = labelled[(labelled < 0) | (labelled >= k)]
            if bad.size:
                raise ValueError(f"predicted class {int(bad[0])} is outside 0..{k - 1}")
            prd = np.where(lab == ignore, 0, prd)  # out-of-range values only where ignored
        small = rows * k <= np.iinfo(np.uint16).max and lab.dtype.itemsize <= 2 and prd.dtype.itemsize <= 2
        dt = np.uint16 if small else np.intp
        idx = lab.astype(dt) * dt(k) + prd.astype(dt)
        counts = np.bincount(idx, minlength=rows * k).reshape(rows, k)
        if rows > k:
            extra = counts[k:].copy()
            if k <= ignore < rows:
                extra[ignore - k] = 0
            if extra.any():
                bad = k + int(np.flatnonzero(extra.any(1))[0])
                raise ValueError(f"label value {bad} is not a class id 0..{k - 1} nor the ignore index {ignore}")
        self.matrix += counts[:k]

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge confusion matrices of {other.num_classes} and {self.num_classes} classes")
        self.matrix += other.matrix
        return self

    __iadd__ = merge

    def reset(self) -> None:
        self.matrix[:] = 0

    # -- metrics ---------------------------------------------------------------------------
    @property
    def pixels(self) -> int:
        return int(self.matrix.sum())

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class with union 0 (absent from labels and predictions)."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        union = m.sum(0) + m.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)

    def miou(self) -> float:
        """EvDistill's mIoU: mean over classes present (union > 0); NaN if no class is."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")

    def miou_all(self) -> float:
        """Ev-SegNet / ESS mIoU: mean over all classes, an absent class counting 0; NaN if no pixels."""
        if self.pixels == 0:
            return float("nan")
        return float(np.nan_to_num(self.iou(), nan=0.0).mean())

    def accuracy(self) -> float:
        """Pixel accuracy over labelled pixels; NaN if there are none."""
        total = self.pixels
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall (diag / ground-truth pixels of the class); NaN for classes without labels."""
        rows = self.matrix.sum(1).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(rows > 0, np.diag(self.matrix) / np.where(rows > 0, rows, 1), np.nan)

    def mean_accuracy(self) -> float:
        acc = self.class_accuracy()
        return float(np.nanmean(acc)) if np.any(~np.isnan(acc)) else float("nan")

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready block (see the module docstring); None where a value is undefined."""
        return {
            "miou": _num(self.miou()),
            "miou_all": _num(self.miou_all()),
            "accuracy": _num(self.accuracy()),
            "mean_accuracy": _num(self.mean_accuracy()),
            "iou": {name: _num(v) for name, v in zip(self.class_names, self.iou())},
            "pixels": self.pixels,
            "classes": list(self.class_names),
            "confusion": self.matrix.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], ignore_index: int = IGNORE_INDEX) -> "ConfusionMatrix":
        """Rebuild from a ``to_dict()`` block (needs its "confusion")."""
        if "confusion" not in d:
            raise ValueError("metrics block has no 'confusion' matrix")
        m = np.asarray(d["confusion"], dtype=np.int64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"'confusion' must be a square matrix, got shape {m.shape}")
        names = d.get("classes")
        cm = cls(m.shape[0], ignore_index, names if names and len(names) == m.shape[0] else None)
        cm.matrix[:] = m
        return cm

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={self.pixels}, miou={self.miou():.4f})"


def _num(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)
