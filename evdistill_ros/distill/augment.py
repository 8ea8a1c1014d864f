"""Joint augmentation of (event tensor, APS frame, label) training pairs.

Geometry (random scale, crop, horizontal flip) is drawn once per sample and applied
identically to all three, so pixels stay paired; photometric changes (brightness, contrast,
gamma, noise) touch the APS frame only, because event tensors measure brightness
*changes* and have no absolute intensity to perturb.

    augment_pair(events, aps, label, augment, rng) -> (events, aps, label)
        events (C,H,W) float32 tensor, aps (1,H,W) float32 tensor in [0,1],
        label (H,W) int64 tensor or None; augment the stage's AugmentConfig;
        rng a numpy Generator (the only source of randomness: same seed, same output).
        Events and APS are resized bilinearly, labels by nearest neighbour; a crop larger
        than the scaled image pads events/APS with 0 and labels with IGNORE_INDEX.
    center_crop_pad(...)  the deterministic version used for validation (crop only).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..classes import IGNORE_INDEX
from .config import AugmentConfig


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "nearest":
        return F.interpolate(x[None, None].float(), size=size, mode="nearest")[0, 0].to(x.dtype)
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


def _crop_pad(x: torch.Tensor, top: int, left: int, size: tuple[int, int], fill: float) -> torch.Tensor:
    """Window [top:top+h, left:left+w] of the last two dims; outside the image is `fill`."""
    h, w = size
    H, W = x.shape[-2:]
    out = torch.full(x.shape[:-2] + (h, w), fill, dtype=x.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, H), min(left + w, W)
    if y1 > y0 and x1 > x0:
        out[..., y0 - top : y1 - top, x0 - left : x1 - left] = x[..., y0:y1, x0:x1]
    return out


def _photometric(aps: torch.Tensor, augment: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    b, c, g, n = (float(v or 0.0) for v in (augment.brightness, augment.contrast, augment.gamma, augment.noise))
    if g > 0:
        aps = aps.clamp(0, 1) ** float(np.exp(rng.uniform(-g, g)))
    if c > 0:
        mean = aps.mean()
        aps = (aps - mean) * float(rng.uniform(1 - c, 1 + c)) + mean
    if b > 0:
        aps = aps + float(rng.uniform(-b, b))
    if n > 0:
        noise = torch.from_numpy(rng.standard_normal(aps.shape).astype(np.float32))
        aps = aps + noise * float(rng.uniform(0, n))
    return aps.clamp(0.0, 1.0)


def augment_pair(events: torch.Tensor, aps: torch.Tensor, label: torch.Tensor | None, augment: AugmentConfig,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    H, W = events.shape[-2:]
    if aps.shape[-2:] != (H, W) or (label is not None and label.shape[-2:] != (H, W)):
        raise ValueError(f"augment_pair: events {tuple(events.shape)}, aps {tuple(aps.shape)} and label "
                         f"{None if label is None else tuple(label.shape)} must share H, W")
    lo, hi = augment.scale or (1.0, 1.0)
    s = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    size = (max(1, round(H * s)), max(1, round(W * s)))
    events, aps = _resize(events, size, "bilinear"), _resize(aps, size, "bilinear")
    if label is not None:
        label = _resize(label, size, "nearest")
    crop = tuple(augment.crop or (H, W))
    top = int(rng.integers(0, size[0] - crop[0] + 1)) if size[0] >= crop[0] else -int(rng.integers(0, crop[0] - size[0] + 1))
    left = int(rng.integers(0, size[1] - crop[1] + 1)) if size[1] >= crop[1] else -int(rng.integers(0, crop[1] - size[1] + 1))
    events, aps = _crop_pad(events, top, left, crop, 0.0), _crop_pad(aps, top, left, crop, 0.0)
    if label is not None:
        label = _crop_pad(label, top, left, crop, IGNORE_INDEX)
    if augment.hflip and rng.random() < 0.5:
        events, aps = events.flip(-1), aps.flip(-1)
        if label is not None:
            label = label.flip(-1)
    aps = _photometric(aps, augment, rng)
    return events.contiguous(), aps.contiguous(), None if label is None else label.contiguous()


def center_crop_pad(events: torch.Tensor, aps: torch.Tensor, label: torch.Tensor | None, crop: tuple[int, int] | None):
    """Deterministic centre crop (or pad) to `crop`; identity when crop is None."""
    if crop is None:
        return events, aps, label
    H, W = events.shape[-2:]
    top, left = (H - crop[0]) // 2, (W - crop[1]) // 2
    events, aps = _crop_pad(events, top, left, tuple(crop), 0.0), _crop_pad(aps, top, left, tuple(crop), 0.0)
    if label is not None:
        label = _crop_pad(label, top, left, tuple(crop), IGNORE_INDEX)
    return events, aps, label
