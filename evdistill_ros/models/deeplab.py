"""DeepLabv3+ (Chen et al. 2018): backbone -> ASPP -> decoder with a low-level skip -> logits.

``DeepLabV3Plus(backbone, num_classes, output_stride, aspp_channels=256, ...)``:

    forward(x)                          -> logits (B, num_classes, H, W) at the input size, any H, W
    forward(x, return_features=True)    -> dict, see ``forward_features``
    forward_features(x)                 -> {"logits", "logits_lowres" (stride 4), "low_level" (backbone
                                            stride-4 features), "high_level" (backbone output = ASPP input),
                                            "aspp", "decoder" (stride-4 features before the classifier),
                                            and "reconstruction" (B, C, H, W) in [0, 1] when the model
                                            was built with a reconstruction head}
    .backbone / .decoder / .head        -> the encoder, the Decoder, its final 1x1 classifier

Submodule and parameter names (``backbone.* aspp.aspp1..4 aspp.global_avg_pool aspp.conv1 aspp.bn1
decoder.conv1 decoder.bn1 decoder.last_conv.{0,1,4,5,8}``), the ASPP rates (6/12/18 at output stride
16, doubled at 8), the image-pool branch, the 48-channel low-level projection, the dropouts (0.5 ASPP,
0.5 and 0.1 decoder) and ``align_corners=True`` bilinear resampling follow the DeepLab code used by
the EvDistill authors, so their released state_dicts load and give the same logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import build_backbone
from .heads import ReconstructionHead, add_reconstruction


class _PoolBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm of the ASPP image-pool branch: one value per channel when a training batch has one
    sample, where plain BatchNorm raises; use the running statistics there instead of failing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class ASPPBranch(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int) -> None:
        super().__init__()
        pad = 0 if kernel == 1 else dilation
        self.atrous_conv = nn.Conv2d(cin, cout, kernel, 1, pad, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1 + three dilated 3x3 + image pool, fused by a 1x1 conv."""

    def __init__(self, cin: int, output_stride: int = 16, channels: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        rates = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}.get(output_stride)
        if rates is None:
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.aspp1 = ASPPBranch(cin, channels, 1, 1)
        self.aspp2 = ASPPBranch(cin, channels, 3, rates[0])
        self.aspp3 = ASPPBranch(cin, channels, 3, rates[1])
        self.aspp4 = ASPPBranch(cin, channels, 3, rates[2])
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, channels, 1, bias=False), _PoolBatchNorm2d(channels), nn.ReLU()
        )
        self.conv1 = nn.Conv2d(5 * channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x)]
        pooled = self.global_avg_pool(x)
        branches.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=True))
        return self.dropout(self.relu(self.bn1(self.conv1(torch.cat(branches, 1)))))


class Decoder(nn.Module):
    """Projects low-level features to 48 channels, joins the upsampled ASPP output, two 3x3 convs, classifier.

    ``last_conv[:8]`` gives the decoder features, ``last_conv[8]`` is the 1x1 classifier.
    """

    def __init__(self, low_level_channels: int, aspp_channels: int, num_classes: int, channels: int = 256,
                 low_level_proj: int = 48, dropout: tuple[float, float] = (0.5, 0.1)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(low_level_channels, low_level_proj, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(low_level_proj)
        self.relu = nn.ReLU()
        self.last_conv = nn.Sequential(
            nn.Conv2d(aspp_channels + low_level_proj, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Dropout(dropout[0]),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Dropout(dropout[1]),
            nn.Conv2d(channels, num_classes, 1),
        )
        self.out_channels = channels

    def features(self, aspp: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        low = self.relu(self.bn1(self.conv1(low_level)))
        aspp = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=True)
        return self.last_conv[:8](torch.cat((aspp, low), 1))

    def forward(self, aspp: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        return self.last_conv[8](self.features(aspp, low_level))


def check_input(x: torch.Tensor, in_channels: int) -> None:
    """ValueError unless x is (B, in_channels, H, W)."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"model input must be (B, {in_channels}, H, W), got {tuple(x.shape)}")


class DeepLabV3Plus(nn.Module):
    """Backbone + ASPP + decoder; optional image-reconstruction head for distillation (see module doc)."""

    def __init__(self, backbone: str = "resnet101", in_channels: int = 3, num_classes: int = 6,
                 output_stride: int = 16, aspp_channels: int = 256, decoder_channels: int = 256,
                 with_reconstruction: bool = False, reconstruction_channels: int = 1,
                 backbone_options: dict | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone, in_channels, output_stride, **(backbone_options or {}))
        self.aspp = ASPP(self.backbone.high_level_channels, output_stride, aspp_channels)
        self.decoder = Decoder(self.backbone.low_level_channels, aspp_channels, num_classes, decoder_channels)
        self.reconstruction: nn.Module | None = None
        if with_reconstruction:
            self.reconstruction = ReconstructionHead(decoder_channels, self.backbone.low_level_channels,
                                                     out_channels=reconstruction_channels)
        _init_head_weights(self.aspp)
        _init_head_weights(self.decoder)

    @property
    def head(self) -> nn.Module:
        return self.decoder.last_conv[8]

    def forward_features(self, x: torch.Tensor, reconstruct: int | None = None) -> dict[str, torch.Tensor]:
        """`reconstruct`: reconstruct the first n images of the batch only (None: all, 0: none); their
        reconstructions equal the first n of a full call in training mode too (ReconstructionHead keep)."""
        check_input(x, self.in_channels)
        high, low = self.backbone(x)
        aspp = self.aspp(high)
        dec = self.decoder.features(aspp, low)
        logits_low = self.decoder.last_conv[8](dec)
        out = {
            "logits": F.interpolate(logits_low, size=x.shape[-2:], mode="bilinear", align_corners=True),
            "logits_lowres": logits_low,
            "low_level": low,
            "high_level": high,
            "aspp": aspp,
            "decoder": dec,
        }
        return add_reconstruction(out, self.reconstruction, dec, low, x.shape[-2:], reconstruct)

    def forward(self, x: torch.Tensor, return_features: bool = False, reconstruct: int | None = None):
        if return_features:
            return self.forward_features(x, reconstruct)
        check_input(x, self.in_channels)
        high, low = self.backbone(x)
        logits = self.decoder(self.aspp(high), low)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)


def _init_head_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
