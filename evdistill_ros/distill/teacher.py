"""The teacher as the distillation terms see it: soft predictions in the student's classes.

    soft_targets(logits, temperature, groups=None) -> log-probabilities (B, K_student, h, w)
        log softmax(logits / T); with `groups` (a teacher of another class set) each student
        class gets the log of the summed probabilities of its source classes (a logsumexp, so
        nothing is argmaxed and nothing underflows). Clamped at LOG_FLOOR: a class no source
        maps to has probability 0, not -inf.
    TeacherView(net, card, student_classes, temperature, device)
        A frozen teacher network (this package's checkpoint or a teacher card's network) with
        its preprocessing and its class mapping. `view(aps01, size)` runs it on a (B, 1|3, H, W)
        frame batch in [0, 1] and returns {"log_probs": at `size`, "features": what the
        affinity term compares}: the teacher's ASPP features when it has them (this package's
        DeepLab), else its mapped probabilities (a card network offers no features).
    TeacherOutputs.build(view, cache, device, log) / .open(...)
        The teacher run once per training frame (un-augmented), its log-probabilities stored
        fp16 at the pair cache's resolution beside the pair cache, keyed by the teacher's
        identity (a card's content hash, a checkpoint's sha256), the temperature and the
        student's class set. Training items carry the stored maps through the same geometric
        augmentation as their labels (distill.dataset), so the teacher never runs per step.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..atomic import atomic_dir, atomic_write_text, clean_stale
from ..classes import ClassSet, class_matrix
from ..io.pair_cache import PairCache
from ..models import Preprocessor
from ..models.card import NetworkCard
from ..models.teacher_card import content_hash, is_card
from .dataset import aps_batch

LOG_FLOOR = -60.0  # exp(-60) ~ 1e-26: a class without probability, finite in fp16 and in the KL
TEACHER_OUTPUTS_VERSION = 1


def class_groups(teacher: ClassSet, student: ClassSet) -> list[torch.Tensor] | None:
    """None for the same class set; else, per student class, the teacher classes that map to it
    (ValueError in one line naming both sets when there is no mapping)."""
    if teacher == student:
        return None
    try:
        m = class_matrix(teacher, student)
    except ValueError as exc:
        raise ValueError(f"the teacher predicts {teacher.describe()}, the student learns {student.describe()}, "
                         f"and {exc}: give a teacher whose classes map onto data.class_set") from None
    return [torch.from_numpy(np.flatnonzero(m[:, t])) for t in range(m.shape[1])]


def soft_targets(logits: torch.Tensor, temperature: float, groups: list[torch.Tensor] | None = None) -> torch.Tensor:
    """(B, K_teacher, h, w) logits -> (B, K_student, h, w) log-probabilities at `temperature`."""
    log_p = F.log_softmax(logits.float() / temperature, dim=1)
    if groups is None:
        return log_p
    out = [torch.logsumexp(log_p[:, g.to(log_p.device)], dim=1) if len(g) else
           torch.full_like(log_p[:, 0], LOG_FLOOR) for g in groups]
    return torch.stack(out, 1).clamp_min(LOG_FLOOR)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def file_identity(path: str | os.PathLike) -> str:
    """What identifies a teacher's outputs: a card's content hash (the card and its network's
    files), else the file's sha256."""
    if is_card(path):
        return content_hash(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class TeacherView:
    def __init__(self, net: nn.Module, card: NetworkCard, student_classes: ClassSet | None, temperature: float,
                 device: torch.device, path: str | os.PathLike | None = None) -> None:
        self.net = net.eval().requires_grad_(False)
        self.card = card
        self.path = path
        self.temperature = float(temperature)
        self.classes = card.classes
        self.student_classes = student_classes or self.classes
        self.groups = class_groups(self.classes, self.student_classes)
        self.foreign = card.is_foreign
        # this package's teachers are fully convolutional and ran at the cache's size in training;
        # a card network takes its own input size (models.teacher_card)
        self.prep = Preprocessor.for_card(card, any_size=not self.foreign)
        # A2E crafts events at the frame's own size from the teacher's normalised input
        self.frame_prep = Preprocessor.for_card(card, any_size=True)
        self.device = device
        self.in_channels = card.in_channels

    def release(self) -> None:
        """Drop the network once its outputs are stored (TeacherOutputs): the view keeps what the
        training still reads (preprocessing for A2E, channels, classes); calling it after is an error."""
        self.net = None

    @functools.cached_property
    def identity(self) -> dict[str, Any]:
        """What the teacher's stored outputs depend on (their key)."""
        return {"teacher": file_identity(self.path) if self.path else None,
                "temperature": self.temperature, "student_classes": list(self.student_classes.names)}

    def soft(self, logits: torch.Tensor) -> torch.Tensor:
        """The teacher's logits as log-probabilities in the student's classes (soft_targets)."""
        return soft_targets(logits.detach().float(), self.temperature, self.groups)

    @torch.no_grad()
    def __call__(self, aps01: torch.Tensor, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        if self.net is None:
            raise RuntimeError("the teacher was released after its outputs were stored: read those instead")
        out = self.net(self.prep(aps01, layout="bchw"), return_features=True)
        log_probs = self.soft(_resize(out["logits_lowres"].detach().float(), size))
        features = out["aspp"] if "aspp" in out else log_probs.exp()
        return {"log_probs": log_probs, "features": features}


def _key(view: TeacherView, cache: PairCache) -> str:
    ident = {**view.identity, "cache": cache.path.name, "n": len(cache), "version": TEACHER_OUTPUTS_VERSION}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


class TeacherOutputs:
    """Log-probabilities (n, K_student, H, W) fp16 of a teacher on every frame of a pair cache."""

    def __init__(self, path: Path, log_probs: np.ndarray, key: dict) -> None:
        self.path, self.log_probs, self.key = path, log_probs, key  # key: their meta.json (what they depend on)

    @staticmethod
    def location(view: TeacherView, cache: PairCache) -> Path:
        return cache.path / "teacher_outputs" / _key(view, cache)

    @classmethod
    def open(cls, path: Path, cache: PairCache) -> "TeacherOutputs":
        key = json.loads((path / "meta.json").read_text())
        arr = np.load(path / "log_probs.npy", mmap_mode="r")
        if arr.dtype != np.float16 or arr.ndim != 4 or arr.shape[0] != len(cache) or \
                tuple(arr.shape[2:]) != (int(cache.meta["height"]), int(cache.meta["width"])):
            raise ValueError(f"{path}: teacher outputs of shape {arr.shape} {arr.dtype} do not fit the pair cache")
        return cls(path, arr, key)

    @classmethod
    def build(cls, view: TeacherView, cache: PairCache, device: torch.device, log: Callable[[str], None] = print,
              batch_size: int = 8, progress: bool = True) -> "TeacherOutputs":
        """The stored outputs for (teacher, temperature, student classes, cache), computed when missing."""
        final = cls.location(view, cache)
        if (final / "meta.json").is_file():
            try:
                out = cls.open(final, cache)
                log(f"teacher outputs: reusing {final}")
                return out
            except (OSError, ValueError) as exc:
                log(f"teacher outputs at {final} unreadable ({exc}): computing them again")
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(final.parent)
        n, H, W = len(cache), int(cache.meta["height"]), int(cache.meta["width"])
        K = view.student_classes.num_classes
        with atomic_dir(final) as tmp:
            arr = np.lib.format.open_memmap(tmp / "log_probs.npy", mode="w+", dtype=np.float16, shape=(n, K, H, W))
            for s in tqdm(range(0, n, batch_size), desc="teacher outputs", unit="batch", disable=not progress):
                aps = aps_batch(np.array(cache.aps[s:s + batch_size])).to(device)
                arr[s:s + len(aps)] = view(aps, (H, W))["log_probs"].cpu().numpy().astype(np.float16)
            arr.flush()
            del arr
            atomic_write_text(tmp / "meta.json", json.dumps({**view.identity, "n": n, "classes": K, "height": H,
                                                             "width": W, "version": TEACHER_OUTPUTS_VERSION}))
        log(f"teacher outputs: {n} frames through the teacher once -> {final}")
        return cls.open(final, cache)
