"""LR-ASPP (Howard et al., "Searching for MobileNetV3", ICCV 2019): a segmentation head built for
the CPU, on this package's backbones.

The DeepLabV3+ decoder of the demo's student (two 3x3 convolutions of 128 channels at stride 4)
costs several times its MobileNetV2 x0.5 trunk; LR-ASPP replaces ASPP and decoder with 1x1
convolutions: the trunk's last features through a 1x1 conv, gated by a global-pool attention
branch (squeeze-and-excitation style), upsampled to the stride-4 features, and a 1x1 classifier on
each, summed. `forward_features` returns the same keys as DeepLabV3Plus (`aspp`: the gated
features, `decoder`: them at stride 4), so every distillation method (pixel and affinity KD, the
E2A reconstruction head) trains it unchanged. bench/bench_models.py measures it against the
DeepLabV3+ student.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import build_backbone
from .deeplab import _init_head_weights, check_input
from .heads import ReconstructionHead, add_reconstruction


class LRASPP(nn.Module):
    """Backbone + lite reduced ASPP head; `head_channels` is the width of the gated branch."""

    def __init__(self, backbone: str = "mobilenetv2", in_channels: int = 3, num_classes: int = 6,
                 output_stride: int = 32, head_channels: int = 128, with_reconstruction: bool = False,
                 reconstruction_channels: int = 1, backbone_options: dict | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if head_channels < 1:
            raise ValueError(f"head_channels must be >= 1, got {head_channels}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone, in_channels, output_stride, **(backbone_options or {}))
        high, low = self.backbone.high_level_channels, self.backbone.low_level_channels
        self.project = nn.Sequential(nn.Conv2d(high, head_channels, 1, bias=False), nn.BatchNorm2d(head_channels),
                                     nn.ReLU(inplace=True))
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high, head_channels, 1), nn.Sigmoid())
        self.classify_high = nn.Conv2d(head_channels, num_classes, 1)
        self.classify_low = nn.Conv2d(low, num_classes, 1)
        self.reconstruction: nn.Module | None = None
        if with_reconstruction:
            self.reconstruction = ReconstructionHead(head_channels, low, out_channels=reconstruction_channels)
        for part in (self.project, self.gate, self.classify_high, self.classify_low):
            _init_head_weights(part)

    @property
    def head(self) -> nn.Module:
        return self.classify_high

    def _head(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        check_input(x, self.in_channels)
        high, low = self.backbone(x)
        gated = self.project(high) * self.gate(high)
        up = F.interpolate(gated, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return high, low, gated, up, self.classify_high(up) + self.classify_low(low)

    def forward_features(self, x: torch.Tensor, reconstruct: int | None = None) -> dict[str, torch.Tensor]:
        """DeepLabV3Plus's keys: logits (input size), logits_lowres (stride 4), low_level, high_level,
        aspp (the gated features), decoder (them at stride 4), reconstruction (with the head;
        `reconstruct` as DeepLabV3Plus's)."""
        high, low, gated, up, logits_low = self._head(x)
        out = {
            "logits": F.interpolate(logits_low, size=x.shape[-2:], mode="bilinear", align_corners=False),
            "logits_lowres": logits_low, "low_level": low, "high_level": high, "aspp": gated, "decoder": up,
        }
        return add_reconstruction(out, self.reconstruction, up, low, x.shape[-2:], reconstruct)

    def forward(self, x: torch.Tensor, return_features: bool = False, reconstruct: int | None = None):
        if return_features:
            return self.forward_features(x, reconstruct)
        logits_low = self._head(x)[-1]
        return F.interpolate(logits_low, size=x.shape[-2:], mode="bilinear", align_corners=False)
