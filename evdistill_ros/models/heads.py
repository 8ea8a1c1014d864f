"""Distillation-only networks of EvDistill; none of them runs at inference.

``ReconstructionHead(decoder_channels, low_level_channels, out_channels=1, channels=64)``
    The student's event-to-APS (E2A) branch: from the segmentation decoder's stride-4 features and
    the backbone's low-level features to an image (B, out_channels, H, W) in [0, 1] (sigmoid).
    Two learned x2 upsamplings (transposed conv + residual conv block, as in the authors'
    DeepLab_Dual), then a bilinear resize to the exact input size so odd sizes work.
    ``forward(decoder_features, low_level, out_hw, keep=None)``: ``keep=n`` returns the first n
    images only; the batch-normalised layers still see the whole batch (their batch statistics, and
    so the n images' values and gradients, are those of the full call), the per-image upsampling
    layers, the costly part at full resolution, run on n.

``A2EGenerator(in_channels=1, out_channels=2, base_channels=32, depth=2, activation="sigmoid")``
    The APS-to-event (A2E) generator used to craft (event, APS) pairs: a small U-Net from an APS
    frame (B, in_channels, H, W) to an event embedding (B, out_channels, H, W), any H, W.
    ``activation``: "sigmoid" for embeddings in [0, 1] (evdistill_2ch), "relu" for non-negative
    counts, "none" for signed ones (voxel grids).

``build_a2e(**kwargs) -> A2EGenerator``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResidualConv(nn.Module):
    """conv-relu-conv plus a 1x1 projection of the input (the authors' EDSRConv)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.skip(x)


class ReconstructionHead(nn.Module):
    def __init__(self, decoder_channels: int, low_level_channels: int, out_channels: int = 1, channels: int = 64) -> None:
        super().__init__()
        if out_channels not in (1, 3):
            raise ValueError(f"reconstruction out_channels must be 1 or 3, got {out_channels}")
        self.low_proj = nn.Sequential(nn.Conv2d(low_level_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(_conv_bn_relu(decoder_channels + 48, 2 * channels), _conv_bn_relu(2 * channels, channels))
        self.up1 = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.res1 = ResidualConv(channels, channels)
        self.up2 = nn.ConvTranspose2d(channels, channels // 2, 2, stride=2)
        self.res2 = ResidualConv(channels // 2, channels // 2)
        self.out = nn.Conv2d(channels // 2, out_channels, 1)

    def forward(self, decoder_features: torch.Tensor, low_level: torch.Tensor, out_hw: tuple[int, int] | torch.Size,
                keep: int | None = None) -> torch.Tensor:
        x = self.fuse(torch.cat((decoder_features, self.low_proj(low_level)), 1))
        # BatchNorm ends here: the layers below act on each image alone, so images whose
        # reconstruction nobody uses can leave the batch without changing the others' numbers
        if keep is not None:
            x = x[:keep]
        x = self.res2(self.up2(self.res1(self.up1(x))))
        x = self.out(x)
        if tuple(x.shape[-2:]) != tuple(out_hw):
            x = F.interpolate(x, size=tuple(out_hw), mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


def add_reconstruction(out: dict[str, torch.Tensor], head: "ReconstructionHead | None", features: torch.Tensor,
                       low_level: torch.Tensor, out_hw, reconstruct: int | None) -> dict[str, torch.Tensor]:
    """`out["reconstruction"]` from a network's reconstruction head (None: the network has none) for
    the first `reconstruct` images of the batch (None: all, 0: none); `out` returned."""
    if head is not None and reconstruct != 0:
        out["reconstruction"] = head(features, low_level, out_hw, keep=None if reconstruct is None else int(reconstruct))
    return out


class A2EGenerator(nn.Module):
    def __init__(self, in_channels: int = 1, out_channels: int = 2, base_channels: int = 32, depth: int = 2,
                 activation: str = "sigmoid") -> None:
        super().__init__()
        if activation not in ("sigmoid", "relu", "none"):
            raise ValueError(f"A2E activation must be 'sigmoid', 'relu' or 'none', got {activation!r}")
        if depth < 1:
            raise ValueError(f"A2E depth must be >= 1, got {depth}")
        self.in_channels, self.out_channels, self.activation = in_channels, out_channels, activation
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stem = nn.Sequential(_conv_bn_relu(in_channels, widths[0]), _conv_bn_relu(widths[0], widths[0]))
        self.down = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(widths[i], widths[i + 1], 2), _conv_bn_relu(widths[i + 1], widths[i + 1]))
            for i in range(depth)
        )
        self.bottleneck = ResidualConv(widths[-1], widths[-1])
        self.up = nn.ModuleList(_conv_bn_relu(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"A2E input must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = self.bottleneck(skips.pop())
        for up in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat((y, skip), 1))
        y = self.out(y)
        if self.activation == "sigmoid":
            return torch.sigmoid(y)
        if self.activation == "relu":
            return F.relu(y)
        return y


def build_a2e(**kwargs) -> A2EGenerator:
    """An A2E generator; see A2EGenerator for the keyword arguments."""
    return A2EGenerator(**kwargs)
