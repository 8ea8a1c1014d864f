"""Loss terms of the teacher, the baselines and EvDistill (Wang et al., CVPR'21).

Every function takes NCHW tensors and returns a scalar tensor (a mean over valid pixels or
graph nodes); the teacher's side never gets a gradient. The released EvDistill code has only the
test script, so the formulations follow the paper's equations; the weights (ce 10,
reconstruction 10, pixel-wise 20, affinity 0.1) are the authors' reported training configuration.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def _resize_like(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                  weight: torch.Tensor | None = None, top_fraction: float = 1.0) -> torch.Tensor:
    """Mean CE over pixels whose label is not `ignore_index`; logits (N,C,h,w), labels (N,H,W) int.

    Logits are upsampled to the label size when they differ; no labelled pixel gives 0 (with a
    graph). `weight` (C,): per-class weights, the weighted mean as torch's. `top_fraction` < 1:
    bootstrapped CE (Wu et al. 2016, "Bridging category-level and instance-level semantic image
    segmentation"): the mean over only the hardest fraction of the batch's labelled pixels
    (largest weighted losses), so the many easy road / sky pixels stop drowning the few hard
    small-object ones.
    """
    if logits.dim() != 4 or labels.dim() != 3 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"cross_entropy: expected logits (N,C,H,W) and labels (N,H,W), got "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"cross_entropy: top_fraction must be in (0, 1], got {top_fraction}")
    logits = _resize_like(logits, labels.shape[-2:])
    labels = labels.long()
    valid = labels != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    if weight is not None:
        weight = weight.to(device=logits.device, dtype=torch.float32)
    if top_fraction >= 1.0:
        return F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=ignore_index)
    per_pixel = F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=ignore_index, reduction="none")
    per_pixel = per_pixel[valid]  # already weighted by its class
    w = weight[labels[valid]] if weight is not None else torch.ones_like(per_pixel)
    k = max(1, int(round(top_fraction * per_pixel.numel())))
    hardest = torch.topk(per_pixel, k, sorted=False).indices
    return per_pixel[hardest].sum() / w[hardest].sum().clamp_min(1e-12)


class CrossEntropy:
    """cross_entropy with its class weights and hardest fraction fixed, called as ce(logits, labels)
    (the trainer builds one from `train.ce_class_weighting` and `train.ce_top_fraction`)."""

    def __init__(self, weight: torch.Tensor | None = None, top_fraction: float = 1.0) -> None:
        if not 0.0 < float(top_fraction) <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
        self.weight, self.top_fraction = weight, float(top_fraction)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, labels, weight=self.weight, top_fraction=self.top_fraction)


def median_frequency_weights(counts, max_weight: float = 10.0, power: float = 1.0) -> torch.Tensor:
    """SegNet's class balancing: (C,) pixel counts per class -> (C,) float32 weights
    (median(f) / f_c) ** power with f_c the pixel frequency of class c; absent classes get 1,
    `power` 0.5 is a gentler balance (the square root); clipped to `max_weight`."""
    c = np.asarray(counts, dtype=np.float64)
    present = c > 0
    w = np.ones(c.shape)
    if present.any():
        f = c[present] / c.sum()
        w[present] = (np.median(f) / f) ** float(power)
    return torch.from_numpy(np.minimum(w, float(max_weight)).astype(np.float32))


def pixel_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
             mask: torch.Tensor | None = None, class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise distillation: T^2 * mean over pixels of KL(softmax(t/T) || softmax(s/T)).

    EvDistill's L_KD (paper Eq. 5), the pixel-wise term of Liu et al., "Structured Knowledge
    Distillation for Semantic Segmentation" (CVPR'19), which EvDistill builds on; the T^2 keeps the
    gradient scale independent of T (Hinton et al.). Zero iff the two distributions agree.
    `mask` (N,H,W) bool at the student's resolution selects the pixels that count; `class_weight`
    (C,) weights each pixel by the teacher's argmax class (the weighted mean, as a weighted CE's).
    """
    if student_logits.shape[:2] != teacher_logits.shape[:2]:
        raise ValueError(f"pixel_kd: student {tuple(student_logits.shape)} and teacher "
                         f"{tuple(teacher_logits.shape)} differ in batch or class count")
    if temperature <= 0:
        raise ValueError(f"pixel_kd: temperature must be > 0, got {temperature}")
    teacher_logits = _resize_like(teacher_logits.detach().float(), student_logits.shape[-2:])
    return pixel_kd_soft(student_logits, F.log_softmax(teacher_logits / temperature, dim=1), temperature,
                         mask, class_weight)


def pixel_kd_soft(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float = 1.0,
                  mask: torch.Tensor | None = None, class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """pixel_kd with the teacher given as log-probabilities at temperature T, at the student's
    resolution (distill.teacher.soft_targets: a teacher of another class set, mapped)."""
    if student_logits.shape[:2] != teacher_log_probs.shape[:2] or \
            student_logits.shape[-2:] != teacher_log_probs.shape[-2:]:
        raise ValueError(f"pixel_kd: student {tuple(student_logits.shape)} and teacher "
                         f"{tuple(teacher_log_probs.shape)} differ in batch, class count or size")
    if temperature <= 0:
        raise ValueError(f"pixel_kd: temperature must be > 0, got {temperature}")
    log_pt = teacher_log_probs.detach().float()
    log_ps = F.log_softmax(student_logits.float() / temperature, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)  # (N, H, W)
    w = None
    if class_weight is not None:
        if class_weight.numel() != student_logits.shape[1]:
            raise ValueError(f"pixel_kd: class_weight has {class_weight.numel()} entries for "
                             f"{student_logits.shape[1]} classes")
        w = class_weight.to(kl.device, torch.float32)[log_pt.argmax(dim=1)]
    if mask is not None:
        mask = mask.to(kl.device, torch.bool)
        if not bool(mask.any()):
            return student_logits.sum() * 0.0
        kl = kl[mask]
        w = w[mask] if w is not None else None
    if w is not None:
        return (kl * w).sum() / w.sum().clamp_min(1e-12) * temperature ** 2
    return kl.mean() * temperature ** 2


def affinity_matrix(features: torch.Tensor, nodes: int = 16) -> torch.Tensor:
    """The affinity graph of a feature map: average-pool to at most nodes x nodes positions,
    L2-normalise each position's feature vector, all pairwise cosine similarities:
    (N,C,H,W) -> (N,P,P), P = pooled positions."""
    if features.dim() != 4:
        raise ValueError(f"affinity_matrix: expected (N,C,H,W), got {tuple(features.shape)}")
    if nodes < 1:
        raise ValueError(f"affinity_matrix: nodes must be >= 1, got {nodes}")
    h, w = features.shape[-2:]
    pooled = F.adaptive_avg_pool2d(features.float(), (min(h, nodes), min(w, nodes)))
    v = F.normalize(pooled.flatten(2), p=2, dim=1, eps=1e-8)  # (N, C, P)
    return torch.bmm(v.transpose(1, 2), v)


def affinity_kd(student_features: torch.Tensor, teacher_features: torch.Tensor, nodes: int = 16) -> torch.Tensor:
    """EvDistill's affinity-graph distillation (paper Sec. 3.3, after Liu et al.'s pair-wise
    distillation): the squared difference of the student's and the teacher's affinity graphs,
    averaged over all P^2 node pairs. Channels may differ (the graphs are P x P); zero when the
    feature maps are positive multiples of each other."""
    if student_features.shape[0] != teacher_features.shape[0]:
        raise ValueError("affinity_kd: student and teacher batch sizes differ")
    teacher_features = teacher_features.detach()
    if teacher_features.shape[-2:] != student_features.shape[-2:]:
        teacher_features = _resize_like(teacher_features.float(), student_features.shape[-2:])
    a_s = affinity_matrix(student_features, nodes)
    a_t = affinity_matrix(teacher_features, nodes)
    return ((a_s - a_t) ** 2).mean()


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between `pred` (resized to the target's H, W) and `target`; mask (N,H,W) bool optional.

    `pred`: an image reconstructed from student features (E2A) or an event tensor generated
    from an APS frame (A2E)."""
    if pred.shape[:2] != target.shape[:2]:
        raise ValueError(f"reconstruction_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "differ in batch or channel count")
    pred = _resize_like(pred.float(), target.shape[-2:])
    err = (pred - target.float()).abs()
    if mask is not None:
        m = mask.to(err.device, torch.bool).unsqueeze(1).expand_as(err)
        if not bool(m.any()):
            return pred.sum() * 0.0
        return err[m].mean()
    return err.mean()
