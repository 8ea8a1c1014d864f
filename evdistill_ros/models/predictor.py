"""A network ready for inference on single inputs: load, preprocess, run, restore.

    p = Predictor("student.pth", device="auto", fp16=False, backend="torch")
    labels = p(embedding_or_image)          # uint8 (H, W) class ids at the input's size
    p.representation                        # "aps" or the EventInput dict of the checkpoint
    p.event_input                           # its EventInput (None for an APS-frame network)
    p.backend                               # models.backends.Backend that runs the network

`checkpoint` is a checkpoint (ours or the authors'), an .onnx file written by `evdistill export`
(it carries the same metadata; it runs with backend onnxruntime or openvino, and "torch" falls
back to onnxruntime for it), or a teacher card (models.teacher_card: an image network trained
elsewhere; it runs as its card says, whatever the backend). Used by the segmentation node and
evaluation; preprocessing and restoring are models.preprocess whatever the backend, so every
backend sees the network's inputs the same way.
"""
from __future__ import annotations

import functools

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..classes import ClassSet, class_set_of
from ..events.spec import EventInput
from .backends import create_backend
from .checkpoint import load_checkpoint
from .export import read_onnx_metadata
from .preprocess import Preprocessor, restore_output
from .teacher_card import CardNetwork, read_teacher_card


class NonFiniteError(ValueError):
    """An input or output of a network holds NaN or +-inf: nothing is segmented."""


# A preprocessed input beyond this is no data a network was trained on (normalised embeddings and
# frames are O(1); raw counts of a long window stay far below): e.g. 3e38 from a broken publisher,
# which ReLU6 networks turn into finite garbage labels. Rejected like NaN.
MAX_ABS_INPUT = 1e6


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as torch understands it."""
    if device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available")
    return dev


class Predictor:
    """Inference wrapper around a checkpoint or an exported .onnx model."""

    def __init__(self, checkpoint: str | os.PathLike, device: str = "auto", fp16: bool = False,
                 backend: str = "torch", log: Callable[[str], None] = lambda s: None):
        self.device = resolve_device(device)
        path = Path(checkpoint)
        if path.suffix.lower() in (".yaml", ".yml"):
            card = read_teacher_card(path)
            self.meta = card.metadata()
            self.preprocess = Preprocessor.from_metadata(self.meta)
            self.event_input = None
            if backend not in ("torch", "auto"):
                log(f"{path.name}: a teacher card's network runs as its card says ({card.kind}), not with {backend}")
            self.backend = create_backend("torch", CardNetwork(card, self.device), self.meta, self.device, fp16)
            return
        if path.suffix == ".onnx":
            self.meta = read_onnx_metadata(path)
            onnx_model, model = path.read_bytes(), None
            backend = "onnxruntime" if backend == "torch" else backend
        else:
            model, self.meta = load_checkpoint(path)
            onnx_model = None
        self.preprocess = Preprocessor.from_metadata(self.meta)
        rep = self.meta.get("representation", "aps")
        self.event_input: EventInput | None = EventInput.from_dict(rep) if isinstance(rep, dict) else None
        self.backend = create_backend(backend, model, self.meta, self.device, fp16, onnx_model, log)

    @property
    def representation(self) -> Any:
        return self.meta.get("representation", "aps")

    @functools.cached_property  # asked per window by the segmentation node: read the metadata once
    def class_set(self) -> ClassSet:
        """The classes this network predicts (its metadata; DDD17's when it names none)."""
        return class_set_of(self.meta)

    @property
    def is_event_network(self) -> bool:
        return isinstance(self.representation, dict)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """One embedding (C, H, W) float or image (H, W[, C]) uint8/uint16 -> uint8 labels (H, W).
        NonFiniteError when the input holds NaN, +-inf or values beyond +-MAX_ABS_INPUT once
        preprocessed, or the network's output is non-finite (labels of NaN logits would all be
        class 0: refused instead, the caller counts it)."""
        hw = x.shape[-2:] if (x.ndim == 3 and x.dtype.kind == "f") else x.shape[:2]
        t = self.preprocess(x, device=self.backend.device)
        if not bool(torch.isfinite(t).all()) or (t.numel() and float(t.abs().max()) > MAX_ABS_INPUT):
            raise NonFiniteError(f"the input holds NaN, infinite or absurd values (beyond +-{MAX_ABS_INPUT:g} "
                                 "once preprocessed)")
        logits = self.backend.run(t)
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteError("the network gave NaN or infinite logits (an input of extreme values?)")
        return restore_output(logits, tuple(hw))[0]
