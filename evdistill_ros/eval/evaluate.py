"""mIoU of an APS network on frames and of an event network on events, over the same test samples.

Python API:

    evaluate(data, *, aps_ckpt=None, event_ckpt=None, format=None, batch_size=8, device="cpu",
             latency=False, limit=None, score_at="label", progress=True, log=print) -> dict
        Loads the checkpoints, reads samples with io.samples.iter_samples (or a training-pair
        cache), keeps the samples that carry a label and every input the networks need, and
        returns {"aps": {...}, "events": {...}} (one block per checkpoint given), each block the
        ConfusionMatrix.to_dict() fields (miou, miou_all, iou, accuracy, confusion, ...) plus
        checkpoint, frames, skipped, data, format, score_at, and latency_ms when asked.
    evaluate_model(model, meta, samples, modality, *, batch_size=8, device=None, score_at="label",
                   limit=None) -> dict
        The core loop for one network (the trainer's validation calls it, so validation and
        `evdistill evaluate` give the same numbers on the same samples).
    ModelEvaluator(model, meta, modality, ...)   add(samples) -> predictions; result() -> dict
    predict(model, meta, inputs, out_sizes, device=None) -> list of uint8 (H, W) class maps
    sample_input(sample, modality) -> the array a network of that modality reads, or None
    markdown_table(results) -> str
    load_network(path, modality, device="cpu") -> (model, meta)

Scoring (``score_at``):
    "label"  logits resized (bilinear) to the label's resolution, then argmax; every labelled pixel
             of the data set counts once (default).
    "input"  the EvDistill authors' released protocol (their evaluate.py): the label is resized to
             the network's input size with PIL-style nearest neighbour and compared there.
Inputs are always made by models.prepare_input from the checkpoint's metadata (for the authors'
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

from ..classes import CLASS_SETS, ClassSet, class_map, class_set, class_set_of
from ..events.spec import EventInput
from ..io.samples import FORMATS as SAMPLE_FORMATS
from ..io.samples import detect_format as detect
from ..io.samples import iter_samples
from ..models import Preprocessor, authors_metadata, load_checkpoint, restore_output
from ..models.backends import BackendModule, create_backend
from ..models.export import read_onnx_metadata
from ..models.teacher_card import is_card, load_image_network
from .metrics import ConfusionMatrix

MODALITIES = ("aps", "events")
SCORE_AT = ("label", "input")


# ---------------------------------------------------------------------------------------------
# inputs and predictions


def sample_input(sample: Any, modality: str) -> np.ndarray | None:
    """The array a network of ``modality`` reads from a Sample: its APS frame or its event embedding."""
    if modality == "aps":
        return getattr(sample, "aps", None)
    if modality == "events":
        return getattr(sample, "events", None)
    raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")


def _network_name(meta: Mapping[str, Any]) -> str:
    return str(meta.get("_path") or meta.get("backbone") or "network")


def _prepare(batch_inputs: Sequence[np.ndarray], meta: Mapping[str, Any], device: torch.device) -> list[torch.Tensor]:
    pre = Preprocessor.from_metadata(meta)
    out = []
    for x in batch_inputs:
        if isinstance(x, np.ndarray) and not x.flags.writeable:
            x = np.array(x)  # memory-mapped caches are read-only; torch.from_numpy warns on those
        try:
            out.append(pre(x, device=device))
        except ValueError as exc:
            raise ValueError(f"{_network_name(meta)} does not fit the data: {exc}") from None
    return out


def _forward(model: torch.nn.Module, tensors: list[torch.Tensor], meta: Mapping[str, Any]) -> list[torch.Tensor]:
    """Run the network on same-shape groups of consecutive inputs; returns per-sample logits (1, K, h, w)."""
    logits: list[torch.Tensor] = []
    i = 0
    while i < len(tensors):
        j = i + 1
        while j < len(tensors) and tensors[j].shape == tensors[i].shape:
            j += 1
        with torch.inference_mode():
            out = model(torch.cat(tensors[i:j], 0))
        if isinstance(out, dict):
            out = out["logits"]
        elif isinstance(out, (tuple, list)):
            out = out[0]
        logits.extend(out[k:k + 1] for k in range(out.shape[0]))
        i = j
    return logits


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


def predict(model: torch.nn.Module, meta: Mapping[str, Any], inputs: Sequence[np.ndarray],
            out_sizes: Sequence[tuple[int, int] | None] | None = None,
            device: str | torch.device | None = None) -> list[np.ndarray]:
    """Class maps (uint8 (H, W)) of ``model`` on raw inputs, each at ``out_sizes[i]`` (None: the
    network's input size). Inputs are preprocessed from ``meta`` (models.prepare_input)."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    tensors = _prepare(inputs, meta, dev)
    logits = _forward(model, tensors, meta)
    sizes = out_sizes if out_sizes is not None else [None] * len(logits)
    return [restore_output(lg, tuple(lg.shape[-2:]) if hw is None else hw)[0] for lg, hw in zip(logits, sizes)]


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

    model: torch.nn.Module
    meta: Mapping[str, Any]
    modality: str
    device: str | torch.device | None = None
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
            self.classes = class_set_of(self.meta)
        k = self.classes.num_classes
        if self.confusion is None:
            self.confusion = ConfusionMatrix(k, self.classes.ignore_index, self.classes.names)
        elif self.confusion.num_classes != k:
            raise ValueError(f"{_network_name(self.meta)} predicts {k} classes, the matrix has {self.confusion.num_classes}")
        self.device = torch.device(self.device) if self.device is not None else next(self.model.parameters()).device

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
        if self.time_it and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        logits = _forward(self.model, _prepare(inputs, self.meta, self.device), self.meta)
        if self.score_at == "label":
            preds = [restore_output(lg, lab.shape)[0] for lg, lab in zip(logits, labels)]
        else:
            preds = [restore_output(lg, tuple(lg.shape[-2:]))[0] for lg in logits]
        if self.time_it:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
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


def evaluate_model(model: torch.nn.Module, meta: Mapping[str, Any], samples: Iterable[Any], modality: str, *,
                   batch_size: int = 8, device: str | torch.device | None = None, score_at: str = "label",
                   limit: int | None = None) -> dict[str, Any]:
    """Metrics of one network over ``samples`` (those without a label or this modality's input are
    skipped and counted in "skipped"). The same loop as `evdistill evaluate`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    ev = ModelEvaluator(model, meta, modality, device=device, score_at=score_at)
    skipped = 0

    def usable() -> Iterator[Any]:
        nonlocal skipped
        taken = 0
        for s in samples:
            if limit is not None and taken >= limit:
                return
            if s.label is None or sample_input(s, modality) is None:
                skipped += 1
                continue
            taken += 1
            yield s

    try:
        for batch in _batched(usable(), batch_size):
            ev.add(batch)
    finally:
        model.train(was_training)
    out = ev.result()
    out["skipped"] = skipped
    return out


# ---------------------------------------------------------------------------------------------
# checkpoints and data


def load_network(path: str | Path, modality: str, device: str | torch.device = "cpu",
                 backend: str = "torch") -> tuple[torch.nn.Module, dict]:
    """load_checkpoint (or an exported .onnx model, or a teacher card), then check that the network is of the
    expected modality; with a backend other than torch the network runs there (BackendModule).

    The authors' released state_dicts carry no metadata; their kind is guessed from the file name
    by load_checkpoint, so here the flag that names them (--aps-ckpt / --event-ckpt) decides.
    """
    if is_card(path):
        model, meta = load_image_network(path, device)
    elif Path(path).suffix == ".onnx":
        meta = read_onnx_metadata(path)
        run = create_backend("onnxruntime" if backend == "torch" else backend, None, meta, torch.device(device),
                             onnx_model=Path(path).read_bytes())
        model: torch.nn.Module = BackendModule(run)
    else:
        model, meta = load_checkpoint(path, device=device)
        if backend != "torch":
            model = BackendModule(create_backend(backend, model, dict(meta), torch.device(device)))
    meta = dict(meta)
    k, classes = int(meta.get("num_classes", 6)), class_set_of(meta)
    if k != classes.num_classes:
        raise ValueError(f"{path} predicts {k} classes but names {classes.describe()} in its metadata")
    if meta.get("source") == "evdistill_authors":
        kind_meta = authors_metadata(modality)
        for key in ("representation", "preprocessing"):
            meta[key] = kind_meta[key]
    rep = meta.get("representation")
    is_aps = rep == "aps"
    if modality == "aps" and not is_aps:
        name = rep.get("name") if isinstance(rep, Mapping) else rep
        raise ValueError(f"--aps-ckpt {path} is an event network (representation {name!r}), not an APS network")
    if modality == "events" and is_aps:
        raise ValueError(f"--event-ckpt {path} is an APS-frame network (representation 'aps'), not an event network")
    if modality == "events" and not isinstance(rep, Mapping):
        raise ValueError(f"--event-ckpt {path}: metadata has no event representation (got {rep!r})")
    meta["_path"] = str(path)
    return model, meta


def layout_class_set(fmt: str, options: Mapping[str, Any] | None = None) -> ClassSet:
    """The class set a layout's labels are in: DSEC's 11 or 19 (`classes` option), else DDD17's."""
    if fmt == "dsec":
        return class_set(f"dsec{int((options or {}).get('classes', 11))}")
    return CLASS_SETS["ddd17"]


def scoring_maps(net: ClassSet, labels: ClassSet, target: ClassSet | None, what: str) -> dict[str, Any]:
    """ModelEvaluator's `classes`, `pred_map`, `label_map` for scoring `net`'s predictions against
    `labels`; a mismatch without a `target` set is a ValueError in one line."""
    if target is None:
        if net != labels:
            hint = next((f"; --class-map {t.name} scores both in {t.name}" for t in (net, labels)
                         if maps_onto(net, t) and maps_onto(labels, t)), "")
            raise ValueError(f"{what} predicts {net.describe()}, the labels are {labels.name} "
                             f"({labels.num_classes} classes){hint}")
        return {"classes": net}
    return {"classes": target, "pred_map": None if net == target else class_map(net, target),
            "label_map": None if labels == target else class_map(labels, target)}


def maps_onto(source: ClassSet, target: ClassSet) -> bool:
    try:
        class_map(source, target)
        return True
    except ValueError:
        return False


def detect_format(data: str | Path) -> str:
    """The data format of ``data`` (io.samples.detect_format; FileNotFoundError when missing)."""
    if not Path(data).exists():
        raise FileNotFoundError(f"data not found: {data}")
    return detect(data)


# event representation each fixed-layout format stores (bags, ESS and caches hold their own)
FIXED_REPRESENTATION = {"evdistill-png": "evdistill_2ch", "evsegnet": "evsegnet_6ch"}
FORMATS = SAMPLE_FORMATS


def network_event_input(meta: Mapping[str, Any]) -> EventInput:
    """The event input of an event network's metadata."""
    return EventInput.from_dict(meta["representation"])


def open_samples(data: str | Path, fmt: str, event_meta: Mapping[str, Any] | None = None,
                 options: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """Samples of ``data`` in format ``fmt``. Bags, ESS recordings and caches give the event
    network's own event input (``event_meta``); formats that store one fixed embedding
    (evdistill-png, evsegnet) must hold the network's representation."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; known: {', '.join(FORMATS)}")
    opts = dict(options or {})
    if "split" in opts and fmt in ("bag", "cache"):
        raise ValueError(f"--split applies to test-set directories, not to {fmt} data")
    spec = network_event_input(event_meta) if event_meta is not None else None
    if fmt in FIXED_REPRESENTATION and spec is not None and spec.representation != FIXED_REPRESENTATION[fmt]:
        raise ValueError(f"{_network_name(event_meta)} reads {spec.representation!r} event embeddings but {fmt} data "
                         f"holds {FIXED_REPRESENTATION[fmt]!r}")
    if spec is not None and fmt in ("bag", "ess", "dsec", "cache"):
        opts.setdefault("event_input", spec)
    if fmt in ("bag", "dsec") and spec is None:
        opts.setdefault("need_events", False)  # an APS network alone: no event windows to build
    if fmt != "bag" and any(opts.get(k) for k in ("events_topic", "image_topic", "labels_topic")):
        raise ValueError(f"topic names apply to bags, not to {fmt} data")
    opts = {k: v for k, v in opts.items() if v is not None}
    try:
        return iter_samples(data, fmt, **opts)
    except ValueError as exc:
        raise ValueError(f"{_network_name(event_meta) if event_meta else data}: {exc}") from None


def evaluate(data: str | Path, *, aps_ckpt: str | Path | None = None, event_ckpt: str | Path | None = None,
             format: str | None = None, batch_size: int = 8, device: str = "cpu", backend: str = "torch",
             latency: bool = False,
             limit: int | None = None, score_at: str = "label", progress: bool = True,
             sample_options: Mapping[str, Any] | None = None, labels_classes: str | None = None,
             class_map_to: str | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate one or both checkpoints on the same labelled samples of ``data``; see the module docstring.

    The labels' class set is the layout's (DSEC: dsec11 / dsec19 by `classes`; bags and the DDD17
    layouts: ddd17) unless `labels_classes` names it. A network predicting another set is refused
    in one line, unless `class_map_to` names the set to score in (both sides mapped into it)."""
    if aps_ckpt is None and event_ckpt is None:
        raise ValueError("give --aps-ckpt, --event-ckpt or both")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available to torch here")
    if not Path(data).exists():
        raise FileNotFoundError(f"data not found: {data}")
    fmt = format or detect_format(data)
    nets: dict[str, ModelEvaluator] = {}
    ckpts = {"aps": aps_ckpt, "events": event_ckpt}
    data_classes = class_set(labels_classes) if labels_classes else layout_class_set(fmt, sample_options)
    target = class_set(class_map_to) if class_map_to else None
    for modality in MODALITIES:
        if ckpts[modality] is not None:
            model, meta = load_network(ckpts[modality], modality, device, backend)
            maps = scoring_maps(class_set_of(meta), data_classes, target, str(ckpts[modality]))
            nets[modality] = ModelEvaluator(model, meta, modality, device=device, score_at=score_at, time_it=latency,
                                            **maps)
    event_meta = nets["events"].meta if "events" in nets else None
    sample_options = dict(sample_options or {})
    if fmt == "bag":  # labels are checked in their own set as they are read
        sample_options["classes"] = data_classes
    samples = open_samples(data, fmt, event_meta, sample_options)

    skipped = {"no_label": 0, **{f"no_{m}": 0 for m in nets}}

    def usable() -> Iterator[Any]:
        taken = 0
        for s in samples:
            if limit is not None and taken >= limit:
                return
            if s.label is None:
                skipped["no_label"] += 1
                continue
            missing = [m for m in nets if sample_input(s, m) is None]
            if missing:
                for m in missing:
                    skipped[f"no_{m}"] += 1
                continue
            taken += 1
            yield s

    total = getattr(samples, "__len__", None)
    bar = tqdm(total=min(total(), limit or total()) if callable(total) else limit, desc="evaluate", unit="frame",
               disable=not progress, dynamic_ncols=True)
    for batch in _batched(usable(), batch_size):
        for ev in nets.values():
            ev.add(batch)
        bar.update(len(batch))
    bar.close()
    frames = next(iter(nets.values())).frames
    if frames == 0:
        raise ValueError(f"{data}: no sample has a label and the inputs of the given network(s) "
                         f"(skipped: {', '.join(f'{k} {v}' for k, v in skipped.items())})")
    if any(skipped.values()):
        log(f"evaluate: {frames} frames scored; skipped " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items() if v))
    results: dict[str, Any] = {}
    for modality, ev in nets.items():
        r = ev.result()
        r.update(checkpoint=str(ckpts[modality]), data=str(data), format=fmt, skipped=dict(skipped), device=str(device),
                 batch_size=batch_size, backend=backend)
        r["class_set"] = ev.classes.name
        if modality == "events":
            r["representation"] = ev.meta["representation"]
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
