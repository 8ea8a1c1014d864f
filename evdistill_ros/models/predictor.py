"""The one way from a network file to class ids: load, preprocess, run, restore.

    p = Predictor("student.pth", device="auto", fp16=False, backend="auto")
    labels = p(embedding_or_image)          # uint8 (H, W) class ids at the input's size
    preds = p.predict([x1, x2], [hw1, hw2]) # a batch: consecutive inputs of one shape run together
    p.card                                  # models.card.NetworkCard: what the file says
    p.event_input                           # its EventInput (None for an APS-frame network)
    p.backend                               # models.backends.Backend that runs the network
    Predictor.from_model(model, card)       # a network in memory (validation during training)

`checkpoint` is a checkpoint (ours or the authors'), an .onnx file written by `evdistill export`
(it carries the same metadata; it runs with backend onnxruntime or openvino, and "torch" falls
back to onnxruntime for it), or a teacher card (models.teacher_card: an image network trained
elsewhere; it runs as its card says, whatever the backend). The segmentation node, evaluation,
visualisation and the trainer's validation all predict through this class; preprocessing and
restoring are models.preprocess whatever the backend, so every backend sees the network's inputs
the same way.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..classes import ClassSet
from ..errors import CheckpointError
from ..events.spec import EventInput
from .backends import Backend, TorchBackend, create_backend
from .card import NetworkCard
from .checkpoint import authors_metadata, load_checkpoint
from .files import read_card
from .preprocess import Preprocessor, class_argmax, restore_output
from .teacher_card import CardNetwork, is_card, read_teacher_card


class NonFiniteError(ValueError):
    """An input or output of a network holds NaN or +-inf: nothing is segmented."""


# A preprocessed input beyond this is no data a network was trained on (normalised embeddings and
# frames are O(1); raw counts of a long window stay far below): e.g. 3e38 from a broken publisher,
# which ReLU6 networks turn into finite garbage labels. Rejected like NaN.
MAX_ABS_INPUT = 1e6
MODALITIES = ("aps", "events")


def _abs_max(t: torch.Tensor) -> float:
    """max |t|: NaN when any element is NaN (so `<= bound` is False), inf when one is infinite. On the
    CPU in numpy: torch's threaded elementwise kernels cost milliseconds on a small tensor when an
    inference runtime's threads hold the cores (measured: 3-4 ms against 0.02 ms)."""
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64, torch.float16):
        a = t.detach().numpy()
        return float(max(a.max(), -a.min()))  # NaN anywhere makes both NaN
    return float(t.abs().max())


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as torch understands it."""
    if device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available")
    return dev


def for_modality(card: NetworkCard, modality: str | None) -> NetworkCard:
    """`card` checked to read `modality` ("aps" | "events"; None: whatever it reads). The authors'
    released state_dicts name no input: the flag that names them decides which they are."""
    if modality is None:
        return card
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    if card.source == "evdistill_authors":
        kind = NetworkCard.from_dict(authors_metadata(modality))
        card = card.replace(event_input=kind.event_input, preprocessing=kind.preprocessing)
    if modality == "aps" and card.is_event_network:
        raise CheckpointError(f"{card.name} is an event network (representation "
                              f"{card.event_input.representation!r}), not an APS network")
    if modality == "events" and not card.is_event_network:
        raise CheckpointError(f"{card.name} is an APS-frame network (representation 'aps'), not an event network")
    return card


class Predictor:
    """Inference wrapper around a checkpoint, an exported .onnx model or a teacher card."""

    def __init__(self, checkpoint: str | os.PathLike, device: str | torch.device = "auto", fp16: bool = False,
                 backend: str = "auto", log: Callable[[str], None] = lambda s: None, modality: str | None = None):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        path = Path(checkpoint)
        if is_card(path):
            card = read_teacher_card(path)
            self.card = for_modality(NetworkCard.from_dict(card.metadata(), path=str(path)), modality)
            if backend not in ("torch", "auto"):
                log(f"{path.name}: a teacher card's network runs as its card says ({card.kind}), not with {backend}")
            self._setup(create_backend("torch", CardNetwork(card, self.device), self.meta, self.device, fp16))
            return
        if path.suffix == ".onnx":  # read_card: the one reader of a network file's card (its errors too)
            self.card = for_modality(read_card(path), modality)
            onnx_model, model = path.read_bytes(), None
            backend = "onnxruntime" if backend == "torch" else backend
        else:
            model, meta = load_checkpoint(path)
            self.card = for_modality(NetworkCard.from_dict(meta, path=str(path)), modality)
            onnx_model = None
        self._setup(create_backend(backend, model, self.meta, self.device, fp16, onnx_model, log))

    @classmethod
    def from_model(cls, model: nn.Module, card: NetworkCard) -> "Predictor":
        """A network in memory, run as it is on its own device (its weights' layout untouched); it is
        put in eval mode, which a trainer restores after validating."""
        self = cls.__new__(cls)
        self.card = card
        self.device = next(model.parameters()).device
        self._setup(TorchBackend(model, self.device, channels_last=False))
        return self

    def _setup(self, backend: Backend) -> None:
        self.backend = backend
        self.preprocess = Preprocessor.for_card(self.card)
        self.event_input: EventInput | None = self.card.event_input
        # the argmax kernel compiles (or loads numba's cache) now, not in the first window: its first
        # call in a fresh install took ~0.3 s and a live node dropped the next window as stale
        class_argmax(np.zeros((1, 2, 1, 1), np.float32))

    @property
    def meta(self) -> dict[str, Any]:
        """The card in its file form (read-only use: models' backends and exporters take it)."""
        return self.card.to_dict()

    @property
    def representation(self) -> Any:
        return "aps" if self.event_input is None else self.event_input.to_dict()

    @property
    def class_set(self) -> ClassSet:
        """The classes this network predicts."""
        return self.card.classes

    @property
    def is_event_network(self) -> bool:
        return self.card.is_event_network

    def _tensor(self, x: Any) -> torch.Tensor:
        if isinstance(x, np.ndarray) and not x.flags.writeable:
            x = np.array(x)  # memory-mapped caches are read-only; torch.from_numpy warns on those
        try:
            t = self.preprocess(x, device=self.backend.device)
        except ValueError as exc:
            raise ValueError(f"{self.card.name} does not fit the data: {exc}") from None
        if t.numel() and not _abs_max(t) <= MAX_ABS_INPUT:
            raise NonFiniteError(f"the input holds NaN, infinite or absurd values (beyond +-{MAX_ABS_INPUT:g} "
                                 "once preprocessed)")
        return t

    def logits(self, inputs: Sequence[Any]) -> list[torch.Tensor]:
        """Per-input logits (1, K, h, w) at the network's output size; consecutive inputs of one
        shape run as one batch."""
        tensors = [self._tensor(x) for x in inputs]
        out: list[torch.Tensor] = []
        i = 0
        while i < len(tensors):
            j = i + 1
            while j < len(tensors) and tensors[j].shape == tensors[i].shape:
                j += 1
            lg = self.backend.run(tensors[i] if j == i + 1 else torch.cat(tensors[i:j], 0))  # one: no copy
            if lg.numel() and not math.isfinite(_abs_max(lg)):  # NaN or inf anywhere
                raise NonFiniteError("the network gave NaN or infinite logits (an input of extreme values?)")
            out.extend(lg[k:k + 1] for k in range(lg.shape[0]))
            i = j
        return out

    def predict(self, inputs: Sequence[Any], out_sizes: Sequence[tuple[int, int] | None] | None = None
                ) -> list[np.ndarray]:
        """Class maps (uint8 (H, W)) of raw inputs, each at `out_sizes[i]` (None: the network's
        output size)."""
        logits = self.logits(inputs)
        sizes = out_sizes if out_sizes is not None else [None] * len(logits)
        return [restore_output(lg, tuple(lg.shape[-2:]) if hw is None else tuple(hw))[0]
                for lg, hw in zip(logits, sizes)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """One embedding (C, H, W) float or image (H, W[, C]) uint8/uint16 -> uint8 labels (H, W).
        NonFiniteError when the input holds NaN, +-inf or values beyond +-MAX_ABS_INPUT once
        preprocessed, or the network's output is non-finite (labels of NaN logits would all be
        class 0: refused instead, the caller counts it)."""
        hw = x.shape[-2:] if (x.ndim == 3 and x.dtype.kind == "f") else x.shape[:2]
        return self.predict([x], [tuple(hw)])[0]
