"""mIoU of an APS network on frames and of an event network on events, over the same test samples.

    evaluate(data, *, aps_ckpt=None, event_ckpt=None, format=None, batch_size=8, device="cpu",
             latency=False, limit=None, score_at="label", progress=True, log=print) -> dict
        Opens the networks and samples (eval.scoring.ScoringSetup), keeps the samples that carry
        a label and every input the networks need, and returns {"aps": {...}, "events": {...}}
        (one block per network given), each block the ConfusionMatrix.to_dict() fields (miou,
        miou_all, iou, accuracy, confusion, ...) plus checkpoint, frames, skipped, data, format,
        score_at, and latency_ms when asked.
    evaluate_model(predictor, samples, modality, *, batch_size=8, score_at="label", limit=None) -> dict
        The core loop for one network (the trainer's validation calls it with
        Predictor.from_model, so validation and `evdistill evaluate` give the same numbers).
    ModelEvaluator(predictor, modality, ...)   add(samples) -> predictions; result() -> dict
    markdown_table(results) -> str

Scoring (``score_at``):
    "label"  logits resized (bilinear) to the label's resolution, then argmax; every labelled pixel
             of the data set counts once (default).
    "input"  the EvDistill authors' released protocol (their evaluate.py): the label is resized to
             the network's input size with PIL-style nearest neighbour and compared there.
Inputs are always prepared by the network's models.Predictor from its card (for the authors'
networks: halves of the PNG, bicubic to 512x256, [0, 1]).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..classes import ClassSet
from ..models.backends import describe
from ..models.predictor import MODALITIES, Predictor
from .metrics import ConfusionMatrix
from .scoring import ScoringSetup, sample_input, usable

SCORE_AT = ("label", "input")


def _pil_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    # Pillow's ImagingScaleAffine: x = 0.5 * scale, then x += scale per pixel (sequential double
    # adds, which np.add.accumulate reproduces), source index int(x).
    scale = n_in / n_out
    steps = np.full(n_out, scale, np.float64)
    steps[0] = 0.5 * scale
    return np.minimum(np.add.accumulate(steps).astype(np.int64), n_in - 1)


def resize_labels_nearest(label: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Label map resized exactly as PIL ``Image.resize((w, h), Image.NEAREST)`` does (the authors' loader)."""
    h, w = int(hw[0]), int(hw[1])
    H, W = label.shape
    if (H, W) == (h, w):
        return label
    # two 1-D takes: ~4x faster than one 2-D fancy index
    return np.take(np.take(label, _pil_nearest_index(H, h), 0), _pil_nearest_index(W, w), 1)


# ---------------------------------------------------------------------------------------------
# one network over a stream of samples


@dataclass
class ModelEvaluator:
    """Accumulates one network's confusion matrix over batches of samples (the shared core loop).

    ``add(samples)`` predicts every sample (they must carry a label and this modality's input),
    updates the matrix and returns the predictions at label resolution (for figures).
    ``time_it=True`` records per-frame latency (preprocess + forward + argmax, per batch / B;
    the first batch is warm-up and not recorded).
    """

    predictor: Predictor
    modality: str
    score_at: str = "label"
    time_it: bool = False
    confusion: ConfusionMatrix = field(default=None)  # type: ignore[assignment]
    # scoring in another class set: predictions and labels go through these lookup tables
    # (classes.class_map) into `classes`; None: the network's own set, labels as they are
    classes: ClassSet | None = None
    pred_map: np.ndarray | None = None
    label_map: np.ndarray | None = None
    frames: int = 0
    latencies_ms: list = field(default_factory=list)
    _batches: int = 0

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.score_at not in SCORE_AT:
            raise ValueError(f"score_at must be one of {SCORE_AT}, got {self.score_at!r}")
        if self.classes is None:
            self.classes = self.predictor.class_set
        k = self.classes.num_classes
        if self.confusion is None:
            self.confusion = ConfusionMatrix(k, self.classes.ignore_index, self.classes.names)
        elif self.confusion.num_classes != k:
            raise ValueError(f"{self.predictor.card.name} predicts {k} classes, the matrix has "
                             f"{self.confusion.num_classes}")

    def add(self, samples: Sequence[Any]) -> list[np.ndarray]:
        if not samples:
            return []
        inputs, labels = [], []
        for s in samples:
            x = sample_input(s, self.modality)
            if x is None or s.label is None:
                raise ValueError(f"sample {getattr(s, 'name', '?')} lacks its label or {self.modality} input")
            inputs.append(x)
            label = np.asarray(s.label)
            if self.label_map is not None:
                label = self.label_map[label]
            labels.append(_check_label(label, s, self.confusion.num_classes, self.confusion.ignore_index))
        device = self.predictor.backend.device
        if self.time_it and device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        preds = self.predictor.predict(inputs, [lab.shape for lab in labels] if self.score_at == "label" else None)
        if self.time_it:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = (time.perf_counter() - t0) * 1e3 / len(samples)
            if self._batches > 0:  # the first batch pays for allocation and kernel selection
                self.latencies_ms.extend([dt] * len(samples))
        self._batches += 1
        for p, lab in zip(preds, labels):
            if p.shape != lab.shape:
                lab = resize_labels_nearest(lab, p.shape)
            self.confusion.update(self.pred_map[p] if self.pred_map is not None else p, lab)
        self.frames += len(samples)
        return preds

    def result(self) -> dict[str, Any]:
        out = self.confusion.to_dict()
        out["frames"] = self.frames
        out["score_at"] = self.score_at
        if self.time_it:
            out["latency_ms"] = latency_summary(self.latencies_ms)
        return out


def _check_label(label: np.ndarray, sample: Any, k: int, ignore: int) -> np.ndarray:
    if label.ndim != 2:
        raise ValueError(f"sample {getattr(sample, 'name', '?')}: label must be (H, W), got shape {label.shape}")
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"sample {getattr(sample, 'name', '?')}: label must hold integer class ids, got {label.dtype}")
    bad = (label >= k) & (label != ignore) | (label < 0)
    if bad.any():
        raise ValueError(f"sample {getattr(sample, 'name', '?')}: label value {int(label[bad][0])} is not a class id "
                         f"0..{k - 1} nor {ignore} (ignore)")
    return label


def latency_summary(ms: Sequence[float]) -> dict[str, Any]:
    """p50 / p95 / mean of per-frame latencies in milliseconds (None when nothing was timed)."""
    a = np.asarray(ms, np.float64)
    if a.size == 0:
        return {"p50": None, "p95": None, "mean": None, "frames": 0}
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean()),
            "frames": int(a.size)}


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for it in items:
        batch.append(it)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate_model(predictor: Predictor, samples: Iterable[Any], modality: str, *, batch_size: int = 8,
                   score_at: str = "label", limit: int | None = None) -> dict[str, Any]:
    """Metrics of one network over ``samples`` (those without a label or this modality's input are
    skipped and counted in "skipped"). The same loop as `evdistill evaluate`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ev = ModelEvaluator(predictor, modality, score_at=score_at)
    skipped: dict[str, int] = {}
    for batch in _batched(usable(samples, (modality,), skipped, limit), batch_size):
        ev.add(batch)
    out = ev.result()
    out["skipped"] = sum(skipped.values())
    return out


def evaluate(data: str | Path, *, aps_ckpt: str | Path | None = None, event_ckpt: str | Path | None = None,
             format: str | None = None, batch_size: int = 8, device: str = "cpu", backend: str = "auto",
             latency: bool = False, limit: int | None = None, score_at: str = "label", progress: bool = True,
             sample_options: Mapping[str, Any] | None = None, labels_classes: str | None = None,
             class_map_to: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate one or both networks on the same labelled samples of ``data``; see the module docstring.

    The labels' class set is the layout's (DSEC: dsec11 / dsec19 by `classes`; bags and the DDD17
    layouts: ddd17) unless `labels_classes` names it. A network predicting another set is refused
    in one line, unless `class_map_to` names the set to score in (both sides mapped into it)."""
    if aps_ckpt is None and event_ckpt is None:
        raise ValueError("give --aps-ckpt, --event-ckpt or both")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if not Path(data).exists():
        raise FileNotFoundError(f"data not found: {data}")
    setup = ScoringSetup.open(data, aps_ckpt=aps_ckpt, event_ckpt=event_ckpt, format=format, device=device,
                              backend=backend, sample_options=sample_options, labels_classes=labels_classes,
                              class_map_to=class_map_to)
    nets = {m: ModelEvaluator(p, m, score_at=score_at, time_it=latency, **setup.maps[m])
            for m, p in setup.networks.items()}
    skipped = {"no_label": 0, **{f"no_{m}": 0 for m in nets}}
    total = getattr(setup.samples, "__len__", None)
    bar = tqdm(total=min(total(), limit or total()) if callable(total) else limit, desc="evaluate", unit="frame",
               disable=not progress, dynamic_ncols=True)
    for batch in _batched(usable(setup.samples, nets, skipped, limit), batch_size):
        for ev in nets.values():
            ev.add(batch)
        bar.update(len(batch))
    bar.close()
    frames = next(iter(nets.values())).frames
    if frames == 0:
        raise ValueError(f"{data}: no sample has a label and the inputs of the given network(s) "
                         f"(skipped: {', '.join(f'{k} {v}' for k, v in skipped.items())})")
    if any(skipped.values()):
        log(f"evaluate: {frames} frames scored; skipped " + ", ".join(f"{v} {k.replace('_', ' ')}"
                                                                      for k, v in skipped.items() if v))
    results: dict[str, Any] = {}
    for modality, ev in nets.items():
        r = ev.result()
        ran = describe(ev.predictor.backend)  # auto: the backend it chose, and its table
        r.update(checkpoint=setup.checkpoints[modality], data=str(data), format=setup.fmt, skipped=dict(skipped),
                 device=str(device), batch_size=batch_size, backend=ran["backend"], backend_requested=backend,
                 **({"backend_timings": ran["auto"]} if "auto" in ran else {}))
        r["class_set"] = ev.classes.name
        if modality == "events":
            r["representation"] = ev.predictor.representation
        results[modality] = r
    return results


# ---------------------------------------------------------------------------------------------
# report


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Per-class IoU, both mIoU conventions and accuracy (in %) of each network, as a markdown table."""
    cols = [m for m in MODALITIES if m in results]
    if not cols:
        return ""
    title = {"aps": "APS network (frames)", "events": "event network (events)"}
    names = list(results[cols[0]]["iou"])
    lines = ["| class | " + " | ".join(title[c] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(_pct(results[c]["iou"].get(n)) for c in cols) + " |")
    rows = [("**mIoU** (EvDistill: absent classes dropped)", "miou"), ("mIoU (Ev-SegNet/ESS: absent = 0)", "miou_all"),
            ("pixel accuracy", "accuracy")]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(_pct(results[c].get(key)) for c in cols) + " |")
    lines.append("| frames | " + " | ".join(str(results[c].get("frames", "")) for c in cols) + " |")
    if any("latency_ms" in results[c] for c in cols):
        def lat(c: str) -> str:
            L = results[c].get("latency_ms") or {}
            return "–" if L.get("p50") is None else f"{L['p50']:.1f} / {L['p95']:.1f}"
        lines.append("| latency p50 / p95 (ms/frame) | " + " | ".join(lat(c) for c in cols) + " |")
    return "\n".join(lines)
