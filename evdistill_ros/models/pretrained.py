"""Start a network from pretrained weights, whatever its number of input channels.

    load_pretrained(model, path) -> PretrainedReport
    adapt_first_conv(weight, in_channels) -> torch.Tensor

`path` may hold a backbone state_dict (torchvision / ImageNet naming: ``conv1.weight``,
``layer1.0...`` or ``features.0.0.weight``), a whole network of this project's layout (our
checkpoints, the EvDistill authors' released state_dicts: ``backbone.*``, ``aspp.*``,
``decoder.*``), with or without a ``module.`` prefix or a ``{"state_dict": ...}`` wrapper.
Files load with ``weights_only=True``: tensors and plain data, never code.

Every tensor whose name and shape fit is loaded. The first convolution is adapted when its
input channels differ, as segmentation_models_pytorch's ``patch_first_conv`` does (the same
rule as its ``set_in_channels``): for one channel the kernels are summed over the RGB
channels (a grey image then gives the activations its RGB copy, g = r = b, would give; an
average would scale them by 1/3), for more channels the RGB kernels are repeated cyclically and
scaled by 3/C (the total kernel weight stays the RGB conv's when C is a multiple of 3). What did not fit (another number of
classes, a missing reconstruction head) is listed in the report, never silently dropped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoint import find_state_dict, read_torch_file


@dataclass
class PretrainedReport:
    path: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # first conv: "name: C_old -> C_new channels"
    shape_mismatch: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # in the file, not in the model
    not_loaded: list[str] = field(default_factory=list)  # in the model, not in the file

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} tensors loaded from {self.path}"]
        if self.adapted:
            parts.append("first conv adapted (" + "; ".join(self.adapted) + ")")
        if self.shape_mismatch:
            parts.append(f"{len(self.shape_mismatch)} of another shape kept at init (e.g. {self.shape_mismatch[0]})")
        if self.not_loaded:
            parts.append(f"{len(self.not_loaded)} model tensors not in the file (e.g. {self.not_loaded[0]})")
        if self.unused:
            parts.append(f"{len(self.unused)} file tensors unused (e.g. {self.unused[0]})")
        return "; ".join(parts)


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Conv weight (out, C_old, k, k) -> (out, in_channels, k, k) (see the module docstring)."""
    c_old = weight.shape[1]
    if in_channels == c_old:
        return weight
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    idx = torch.arange(in_channels) % c_old
    return weight[:, idx] * (c_old / in_channels)


def _first_conv(module: nn.Module) -> str:
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            return f"{name}.weight"
    raise ValueError("model has no convolution")


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> PretrainedReport:
    """Load what fits of `path` into `model` (in place); ValueError when nothing fits."""
    path = Path(path)
    state = find_state_dict(read_torch_file(path), path)
    own = model.state_dict()
    if not any(k.startswith("backbone.") for k in state) and hasattr(model, "backbone"):
        state = {f"backbone.{k}": v for k, v in state.items()}  # a backbone-only file
    report = PretrainedReport(str(path))
    first = "backbone." + _first_conv(model.backbone) if hasattr(model, "backbone") else _first_conv(model)
    take: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            report.unused.append(key)
            continue
        if key == first and value.dim() == 4 and value.shape[1] != own[key].shape[1] \
                and value.shape[0] == own[key].shape[0] and value.shape[2:] == own[key].shape[2:]:
            value = adapt_first_conv(value, own[key].shape[1])
            report.adapted.append(f"{key}: {state[key].shape[1]} -> {own[key].shape[1]} channels")
        if tuple(value.shape) != tuple(own[key].shape):
            report.shape_mismatch.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
            continue
        take[key] = value.to(own[key].dtype)
        report.loaded.append(key)
    report.not_loaded = [k for k in own if k not in take and not k.endswith("num_batches_tracked")]
    if not any(not k.endswith("num_batches_tracked") for k in take):
        raise ValueError(f"pretrained weights {path}: no tensor fits this network "
                         f"({len(report.shape_mismatch)} of another shape, {len(report.unused)} unknown names)")
    model.load_state_dict(take, strict=False)
    return report
