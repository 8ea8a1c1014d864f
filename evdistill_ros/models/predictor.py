"""A checkpoint ready for inference on single inputs: load, preprocess, run, restore.

    p = Predictor("student.pth", device="auto", fp16=False)
    labels = p(embedding_or_image)          # uint8 (H, W) class ids at the input's size
    p.representation                        # "aps" or {"name", "params", "window_ns"}

Used by the segmentation node; the evaluator batches through the same `prepare_input` /
`restore_output`, so all of them see the network's inputs the same way.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .preprocess import Preprocessor, restore_output


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as torch understands it."""
    if device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available")
    return dev


class Predictor:
    """Inference wrapper around a checkpoint (ours or the EvDistill authors')."""

    def __init__(self, checkpoint: str | os.PathLike, device: str = "auto", fp16: bool = False):
        self.device = resolve_device(device)
        self.model, self.meta = load_checkpoint(checkpoint, device=self.device)
        self.preprocess = Preprocessor.from_metadata(self.meta)
        self.fp16 = bool(fp16 and self.device.type == "cuda")  # fp16 only pays off (and is safe) on CUDA
        if self.fp16:
            self.model.half()
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    @property
    def representation(self) -> Any:
        return self.meta.get("representation", "aps")

    @property
    def is_event_network(self) -> bool:
        return isinstance(self.representation, dict)

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """One embedding (C, H, W) float or image (H, W[, C]) uint8/uint16 -> uint8 labels (H, W)."""
        hw = x.shape[-2:] if (x.ndim == 3 and x.dtype.kind == "f") else x.shape[:2]
        t = self.preprocess(x, device=self.device)
        if self.fp16:
            t = t.half()
        if self.device.type == "cuda":
            t = t.contiguous(memory_format=torch.channels_last)
        logits = self.model(t)
        return restore_output(logits.float(), tuple(hw))[0]
