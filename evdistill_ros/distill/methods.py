"""Training methods as strategies: what each one needs, builds and computes.

`method_for(stage, method, use_labels, config.student)` gives the immutable strategy of one run.
Each method says what it needs (`needs_labels`, `needs_teacher`, `modality`), checks the teacher
before any work (`check_teacher`), builds its networks (`build`), makes once what its losses need
(`prepare` -> LossContext: the label loss and the pixel KD class weights), computes the
unweighted loss terms of a batch (`loss_terms`), and says what its checkpoint records and what a
resumed run must share (`metadata`, `record`, `fingerprint`).

    Teacher       DeepLabv3+ on grey APS frames, cross-entropy on labels
    Supervised    event student, cross-entropy on event labels (the baseline)
    KD            event student, pixel-wise KD from the teacher's predictions on the paired frames
    EvDistill     E2A reconstruction + pixel-wise KD + affinity KD + A2E crafted pairs (+ CE
                  with use_labels); a term with weight 0 is neither built nor computed

The loop in distill.trainer knows none of these names: it asks the method.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import frames
from ..classes import ClassSet
from ..io.pair_cache import PairCache
from ..models import Preprocessor, build_a2e, build_model, load_pretrained
from ..models.files import load_network, read_card
from . import losses
from .config import CE_CLASS_WEIGHTINGS, METHODS, AugmentConfig, DataConfig, ModelConfig, StudentConfig, TrainConfig
from .dataset import PairDataset, aps_batch, mix_seed
from .teacher import TeacherView, class_groups


@dataclass(frozen=True)
class LossConfig:
    """The `student` section's loss settings, typed."""

    weights: dict[str, float]
    temperature: float
    affinity_nodes: int
    kd_class_weighting: str = "none"  # one of config.CE_CLASS_WEIGHTINGS, counted on the teacher's predictions
    kd_class_weight_frames: str = "plain"  # ... on the cached training frames or on augmented ones

    @classmethod
    def from_config(cls, student: StudentConfig) -> "LossConfig":
        return cls({k: float(v) for k, v in student.weights.items()}, float(student.temperature),
                   int(student.affinity_nodes), str(student.kd_class_weighting or "none"),
                   str(student.kd_class_weight_frames or "plain"))


@dataclass(frozen=True)
class LossContext:
    """What the loss terms need besides the batch, made once by Method.prepare."""

    ce: losses.CrossEntropy = field(default_factory=losses.CrossEntropy)  # the label loss
    kd_weight: torch.Tensor | None = None  # per-class weights of the pixel KD terms


@dataclass
class Networks:
    """What one training run optimises and what it only reads."""

    net: nn.Module
    prep: Preprocessor | None = None  # network input from a batch (set by the loop)
    a2e: nn.Module | None = None
    teacher: TeacherView | None = None

    def trained(self) -> list[nn.Module]:
        return [m for m in (self.net, self.a2e) if m is not None]

    @property
    def num_classes(self) -> int:
        return int(getattr(self.net, "module", self.net).config["num_classes"])


def _as_list(value) -> list | None:
    return None if value is None else [float(v) for v in value]


def build_net(model: ModelConfig, in_channels: int, with_reconstruction: bool = False,
              log: Callable[[str], None] = print, reconstruction_channels: int = 1) -> nn.Module:
    """A network from the `model` section (plus `model.pretrained`, adapted to `in_channels`)."""
    opts = {k: v for k, v in {"width_mult": model.width_mult, **model.options}.items() if v is not None}
    if with_reconstruction:
        opts["with_reconstruction"] = True
        opts["reconstruction_channels"] = int(reconstruction_channels)
    net = build_model(arch=model.arch, backbone=model.backbone, in_channels=in_channels,
                      num_classes=int(model.num_classes), output_stride=int(model.output_stride), **opts)
    if model.pretrained:
        try:
            report = load_pretrained(net, model.pretrained)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"model.pretrained: {exc}") from None
        log(f"model.pretrained: {report.summary()}")
    return net


def class_pixel_counts(cache: PairCache, indices: np.ndarray, num_classes: int, chunk: int = 256) -> np.ndarray:
    """Labelled pixels per class over the cached frames `indices` (ignore and unknown ids left out)."""
    counts = np.zeros(256, np.int64)
    idx = np.sort(np.asarray(indices))
    for s in range(0, len(idx), chunk):
        counts += np.bincount(np.asarray(cache.labels[idx[s:s + chunk]]).ravel(), minlength=256)
    return counts[:num_classes]


def label_loss(train: TrainConfig, cache: PairCache, indices: np.ndarray, num_classes: int, device: torch.device,
               log: Callable[[str], None]) -> losses.CrossEntropy:
    """The stage's cross-entropy: `train.ce_class_weighting` (none | median_frequency |
    median_frequency_sqrt, from the training labels) and `train.ce_top_fraction` (1 = every labelled
    pixel; < 1 bootstrapped)."""
    weighting, top = train.ce_class_weighting or "none", float(train.ce_top_fraction or 1.0)
    weight = None
    power = CE_CLASS_WEIGHTINGS[weighting]
    if power is not None:
        counts = class_pixel_counts(cache, indices, num_classes)
        weight = losses.median_frequency_weights(counts, power=power).to(device)
        log(f"cross-entropy class weights ({weighting.replace('_', ' ')}): "
            + ", ".join(f"{w:.2f}" for w in weight.tolist()))
    return losses.CrossEntropy(weight, top)


@dataclass(frozen=True)
class Method:
    losses: LossConfig
    name: str = ""
    stage: str = "student"
    modality: str = "events"
    needs_labels: bool = False
    needs_teacher: bool = False
    method: str = ""  # the student method's name (supervised | kd | evdistill); "" for the teacher
    use_labels: bool = False

    def record(self, teacher: str | None) -> dict[str, Any]:
        """What the checkpoint's training record says of the method (beside the config)."""
        if self.stage != "student":
            return {}
        return {"method": self.method, "use_labels": self.use_labels, "teacher": str(teacher) if teacher else None}

    @property
    def weights(self) -> dict[str, float]:
        return self.losses.weights

    def check_teacher(self, path: str | None, classes: ClassSet | None = None, frame: str | None = None,
                      augment: AugmentConfig | None = None) -> list[str]:
        """A teacher must be an APS-frame network: said in one line before any work is done. Returns
        warnings (not errors): the student's batches crop differently from the teacher's training
        (`augment`), so the teacher labels inputs unlike any it was trained on."""
        if not self.needs_teacher:
            return []
        if not path:
            raise ValueError(f"method {self.name} needs a teacher checkpoint (--teacher or student.teacher)")
        card = read_card(path)
        if card.is_event_network:
            raise ValueError(f"--teacher {path} is not an APS-frame network (its input is "
                             f"{card.event_input.to_dict()!r}): give the teacher's checkpoint.pt or a teacher card")
        if classes is not None:
            try:
                class_groups(card.classes, classes)
            except ValueError as exc:
                raise ValueError(f"--teacher {path}: {exc}") from None
        pre = card.preprocessing
        teacher_frame = pre.get("frame") or "gray"
        # an RGB network that repeats a grey frame sees exactly what frames.to_frame(grey, "rgb") gives
        grey_to_rgb = teacher_frame == "rgb" and frame == "gray" and pre.get("channels") == "repeat"
        if frame is not None and teacher_frame != frame and not grey_to_rgb:
            raise ValueError(f"--teacher {path} takes {teacher_frame} frames but data.frame is {frame}: "
                             f"set data.frame: {teacher_frame} (the teacher sees the frames it was trained on)")
        notes = []
        if card.classes != classes and classes is not None:
            notes.append(f"note: the teacher's {card.classes.name} probabilities are summed into the "
                         f"student's {classes.name} classes before the KD terms")
        if card.source == "teacher_card" and self.weights.get("affinity", 0) > 0:
            notes.append("note: a teacher card's network offers no features: the affinity term compares the "
                         "student's features with the teacher's (mapped) probabilities")
        conf = card.to_dict()["training"].get("config") or {}  # plain data: the config helpers copy it
        if augment is None or "augment" not in conf:
            return notes
        # the teacher's training config is a file's plain record: its teacher-stage augment read as such
        theirs = {**(conf.get("augment") or {}), **((conf.get("teacher") or {}).get("augment") or {})}
        ours = augment.to_dict()
        # the geometry decides what a teacher's input looks like (photometric changes are APS-only noise)
        differs = [k for k in ("crop", "scale") if _as_list(theirs.get(k)) != _as_list(ours.get(k))]
        if not differs:
            return notes

        def say(a: dict) -> str:
            crop = a.get("crop")
            text = "whole frames" if crop is None else f"{crop[0]}x{crop[1]} crops"
            if "scale" in differs:
                scale = a.get("scale")
                text += " not rescaled" if scale is None else f" rescaled by {scale[0]}-{scale[1]}"
            return text
        return notes + [f"note: the teacher trained on {say(theirs)}, the student's batches are {say(ours)}: "
                        "the teacher labels inputs unlike its training ones (docs/experiments, small classes: a whole-frame "
                        f"teacher distilled on crops taught a worse student); set student.augment."
                        f"{'/'.join(differs)} to match"]

    def build(self, model: ModelConfig, cache: PairCache, teacher_path: str | None, device: torch.device,
              log: Callable[[str], None], classes: ClassSet | None = None) -> Networks:
        nets = Networks(build_net(model, int(cache.meta["channels"]), self._reconstruction(), log=log,
                                  reconstruction_channels=frames.frame_channels(cache.frame)))
        if self.needs_teacher:
            net, card = load_network(teacher_path, device=device)
            nets.teacher = TeacherView(net, card, classes, self.losses.temperature, device, teacher_path)
        return nets

    def _reconstruction(self) -> bool:
        return False

    def prepare(self, nets: Networks, dataset: PairDataset, train: TrainConfig, device: torch.device,
                log: Callable[[str], None], outputs=None) -> LossContext:
        """What the losses need, once before the first step: the label loss (train.ce_class_weighting,
        ce_top_fraction) and the pixel KD class weights."""
        cache, indices = dataset.cache, dataset.indices
        ce = label_loss(train, cache, indices, nets.num_classes, device, log) if self.needs_labels or \
            self.use_labels else losses.CrossEntropy()
        return LossContext(ce, self._kd_weight(nets, dataset, int(train.seed), device, log, outputs=outputs))

    def _kd_weight(self, nets: Networks, dataset: PairDataset, seed: int, device: torch.device,
                   log: Callable[[str], None], max_frames: int = 256, outputs=None) -> torch.Tensor | None:
        """`student.kd_class_weighting`: the pixel KD terms weight each pixel by the class the teacher
        gives it, median-frequency weights of the teacher's predictions on up to `max_frames` evenly
        spaced training frames: the label-free student's version of `train.ce_class_weighting`, whose
        labels are the teacher's. `student.kd_class_weight_frames`: plain counts the teacher's
        low-resolution argmax (what the KD sees) on the frames as cached; augmented counts it on the
        frames as the training batches see them (the dataset's augmentation, drawn from `seed`; with
        stored outputs their augmented maps, pixels the crop padded left out)."""
        power = CE_CLASS_WEIGHTINGS[self.losses.kd_class_weighting]
        if power is None or not self.needs_teacher:
            return None
        idx = np.asarray(dataset.indices)
        positions = np.unique(np.linspace(0, len(idx) - 1, min(max_frames, len(idx))).astype(np.int64))
        augmented = self.losses.kd_class_weight_frames == "augmented"
        counts = np.zeros(nets.teacher.student_classes.num_classes, np.int64)
        for s in range(0, len(positions), 16):
            chunk = positions[s:s + 16]
            if augmented:
                items = [dataset[(int(i), mix_seed(seed, -1, int(i)))] for i in chunk]  # -1: no epoch's
                if "teacher" in items[0]:  # stored outputs, augmented with the frame; last channel: not padding
                    soft = torch.stack([it["teacher"] for it in items])
                    pred = soft[:, :-1].argmax(1)[soft[:, -1] > 0.5]
                else:
                    pred = self._teacher_native(nets, torch.stack([it["aps"] for it in items]).to(device)).argmax(1)
            elif outputs is not None:  # the stored teacher outputs: no teacher run
                pred = torch.from_numpy(np.asarray(outputs.log_probs[idx[chunk]]).argmax(1))
            else:
                aps = aps_batch(np.array(dataset.cache.aps[idx[chunk]])).to(device)  # as the training batches hold them
                pred = self._teacher_native(nets, aps).argmax(1)
            counts += np.bincount(pred.flatten().cpu().numpy(), minlength=len(counts))
        weight = losses.median_frequency_weights(counts, power=power).to(device)
        log(f"pixel KD class weights ({self.losses.kd_class_weighting.replace('_', ' ')}, from the teacher's "
            f"predictions on {len(positions)} {'augmented' if augmented else 'training'} frames): "
            + ", ".join(f"{w:.2f}" for w in weight.tolist()))
        return weight

    def metadata(self, data: DataConfig, stats: dict) -> tuple[Any, dict]:
        """(representation, preprocessing) for the checkpoint. "resize": "area" names the
        conversion the cache applied (frames.resize), so inference repeats it."""
        return data.event_input.to_dict(), {
            "resize": "area", "scale": 1.0, "channels": "exact",
            "mean": stats["events_mean"], "std": stats["events_std"]}

    def fingerprint(self, teacher: str | None = None, cached_outputs: bool = False) -> dict:
        """What a resumed run must share with the run that saved its state."""
        fp = {"temperature": self.losses.temperature, "affinity_nodes": self.losses.affinity_nodes,
              "weights": self.losses.weights, "method": self.method, "use_labels": self.use_labels,
              "teacher": str(teacher) if teacher else None}
        if self.needs_teacher and self.losses.kd_class_weighting != "none":  # (runs from before the option resume)
            fp["kd_class_weighting"] = self.losses.kd_class_weighting
            if self.losses.kd_class_weight_frames != "plain":
                fp["kd_class_weight_frames"] = self.losses.kd_class_weight_frames
        if cached_outputs:  # (runs from before the option ran the teacher live: they still resume)
            fp["teacher_outputs"] = "cached"
        return fp

    def loss_terms(self, nets: Networks, ctx: LossContext, ev: torch.Tensor | None, aps01: torch.Tensor,
                   label: torch.Tensor, soft: torch.Tensor | None = None) -> dict:
        raise NotImplementedError

    def _teacher_native(self, nets: Networks, aps01: torch.Tensor) -> torch.Tensor:
        """The teacher's log-probabilities in the student's classes at its own output resolution."""
        with torch.no_grad():
            out = nets.teacher.net(nets.teacher.prep(aps01, layout="bchw"), return_features=True)
        return nets.teacher.soft(out["logits_lowres"])

    def _teacher_targets(self, nets: Networks, aps01: torch.Tensor, soft: torch.Tensor | None,
                         size: tuple[int, int]) -> dict:
        """{"log_probs", "features", "mask"} at the student's low resolution `size`: the live teacher
        on the batch's frames, or the batch's cached outputs (K maps + a validity map, augmented as
        the labels were; pixels padded by the augmentation's crop do not count)."""
        if soft is None:
            return {**nets.teacher(aps01, size), "mask": None}
        soft = soft.float()
        if tuple(soft.shape[-2:]) != tuple(size):
            soft = F.interpolate(soft, size=tuple(size), mode="bilinear", align_corners=False)
        log_probs = F.log_softmax(soft[:, :-1], dim=1)  # renormalised after the geometric resampling
        return {"log_probs": log_probs, "features": log_probs.exp(), "mask": soft[:, -1] > 0.5}

@dataclass(frozen=True)
class Teacher(Method):
    name: str = "teacher"
    stage: str = "teacher"
    modality: str = "aps"
    needs_labels: bool = True

    def build(self, model, cache, teacher_path, device, log, classes=None) -> Networks:
        return Networks(build_net(model, frames.frame_channels(cache.frame), log=log))

    def metadata(self, data: DataConfig, stats: dict) -> tuple[Any, dict]:
        # "frame" and "resize" name the conversions the cache applied (frames.to_frame and
        # frames.resize), so inference gives the network the same pixels (models.preprocess)
        return "aps", {"frame": data.frame, "resize": "area", "scale": "auto",
                       "channels": "exact", "mean": stats["aps_mean"], "std": stats["aps_std"]}

    def fingerprint(self, teacher: str | None = None, cached_outputs: bool = False) -> dict:
        return {}

    def loss_terms(self, nets, ctx, ev, aps01, label, soft=None) -> dict:
        return {"ce": ctx.ce(nets.net(nets.prep(aps01, layout="bchw")), label)}


@dataclass(frozen=True)
class Supervised(Method):
    name: str = "student_supervised"
    needs_labels: bool = True
    method: str = "supervised"

    def loss_terms(self, nets, ctx, ev, aps01, label, soft=None) -> dict:
        return {"ce": ctx.ce(nets.net(ev), label)}


@dataclass(frozen=True)
class KD(Method):
    name: str = "student_kd"
    needs_teacher: bool = True
    method: str = "kd"

    def loss_terms(self, nets, ctx, ev, aps01, label, soft=None) -> dict:
        out = nets.net(ev, return_features=True)
        t = self._teacher_targets(nets, aps01, soft, out["logits_lowres"].shape[-2:])
        return {"pixel": losses.pixel_kd_soft(out["logits_lowres"], t["log_probs"], self.losses.temperature,
                                              mask=t["mask"], class_weight=ctx.kd_weight)}


@dataclass(frozen=True)
class EvDistill(Method):
    name: str = "student_evdistill"  # "_labels" appended with use_labels (method_for)
    needs_teacher: bool = True
    method: str = "evdistill"

    def _reconstruction(self) -> bool:
        return self.weights["recon"] > 0

    def build(self, model, cache, teacher_path, device, log, classes=None) -> Networks:
        nets = super().build(model, cache, teacher_path, device, log, classes)
        if self.weights["a2e"] > 0 or self.weights["a2e_gen"] > 0:
            nets.a2e = build_a2e(in_channels=nets.teacher.in_channels, out_channels=int(cache.meta["channels"]),
                                 activation="none")
        return nets

    def loss_terms(self, nets, ctx, ev, aps01, label, soft=None) -> dict:
        w, T = self.weights, self.losses.temperature
        terms: dict = {}
        B = ev.shape[0]
        inputs = ev
        if nets.a2e is not None:
            fake = nets.a2e(nets.teacher.frame_prep(aps01, layout="bchw"))
            if w["a2e_gen"] > 0:
                terms["a2e_gen"] = losses.reconstruction_loss(fake, ev)
            if w["a2e"] > 0:
                # crafted pairs: the student sees generated events, the teacher the APS frame they came
                # from; detached so the generator learns from real events only (no shortcut through the student)
                inputs = torch.cat([ev, fake.detach()])
        # E2A reconstructs the real half only; its BatchNorm still sees both halves (models.heads)
        out = nets.net(inputs, return_features=True, reconstruct=B)
        t = self._teacher_targets(nets, aps01, soft, out["logits_lowres"].shape[-2:])
        if self.use_labels and w["ce"] > 0:
            terms["ce"] = ctx.ce(out["logits"][:B], label)
        if w["recon"] > 0:
            terms["recon"] = losses.reconstruction_loss(out["reconstruction"], aps01)
        if w["pixel"] > 0:
            terms["pixel"] = losses.pixel_kd_soft(out["logits_lowres"][:B], t["log_probs"], T, mask=t["mask"],
                                                  class_weight=ctx.kd_weight)
        if w["affinity"] > 0:
            terms["affinity"] = losses.affinity_kd(out["aspp"][:B], t["features"], self.losses.affinity_nodes)
        if inputs.shape[0] > B:
            terms["a2e"] = losses.pixel_kd_soft(out["logits_lowres"][B:], t["log_probs"], T, mask=t["mask"],
                                                class_weight=ctx.kd_weight)
        return terms


def method_for(stage: str, method: str | None, use_labels: bool, student: StudentConfig) -> Method:
    """The strategy of one run: stage "teacher", or stage "student" with one of METHODS."""
    lc = LossConfig.from_config(student)
    if stage == "teacher":
        return Teacher(lc)
    if stage != "student":
        raise ValueError(f"stage must be 'teacher' or 'student', got {stage!r}")
    if method == "supervised":
        return Supervised(lc)
    if method == "kd":
        return KD(lc)
    if method == "evdistill":
        return EvDistill(lc, name="student_evdistill" + ("_labels" if use_labels else ""), use_labels=bool(use_labels))
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
