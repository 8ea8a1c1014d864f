"""Dilated backbones for DeepLabv3+: ResNet-18/34/50/101 and MobileNetV2, plain torch.

Every backbone maps (B, in_channels, H, W) to ``(high_level, low_level)``:
``low_level`` at stride 4 (``low_level_channels``), ``high_level`` at the output stride
(8, 16 or 32; ``high_level_channels``). Strides beyond the output stride become dilations.

The ResNets follow the layout of the DeepLab code the EvDistill authors trained with
(jfzhang95/pytorch-deeplab-xception): module names ``conv1 bn1 layer1..layer4``, blocks with
``conv1 bn1 conv2 bn2 [conv3 bn3] downsample.{0,1}``, the stride on the 3x3 convolution of a
bottleneck, the first block of a dilated stage already dilated, and a multi-grid layer4 whose
block i has dilation ``multi_grid[i] * dilation`` (default (1, 2, 4), cut to the block count),
so their state_dicts load unchanged. Those names are also torchvision's (``resnet*``: all keys but
``fc.*``; ``mobilenet_v2``: ``features.0-17``, this trunk drops the 1280-channel ``features.18``),
so ImageNet weights load into ``model.backbone`` with ``strict=False`` when in_channels is 3.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# name -> (block kind, blocks per stage)
RESNET_LAYERS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
BACKBONES: tuple[str, ...] = (*RESNET_LAYERS, "mobilenetv2")


def _stage_plan(output_stride: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Strides and dilations of ResNet stages 1-4 for an output stride."""
    if output_stride == 32:
        return (1, 2, 2, 2), (1, 1, 1, 1)
    if output_stride == 16:
        return (1, 2, 2, 1), (1, 1, 1, 2)
    if output_stride == 8:
        return (1, 2, 1, 1), (1, 1, 2, 4)
    raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Dilated ResNet; ``forward`` returns (layer4 output, layer1 output)."""

    def __init__(self, name: str = "resnet101", in_channels: int = 3, output_stride: int = 16,
                 multi_grid: Sequence[int] | None = None) -> None:
        super().__init__()
        if name not in RESNET_LAYERS:
            raise ValueError(f"unknown ResNet {name!r}; choose from {sorted(RESNET_LAYERS)}")
        kind, layers = RESNET_LAYERS[name]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        strides, dilations = _stage_plan(output_stride)
        grid = tuple(multi_grid) if multi_grid is not None else (1, 2, 4)[: layers[3]]
        if not grid or any(int(g) < 1 for g in grid):
            raise ValueError(f"multi_grid must be a non-empty list of positive ints, got {multi_grid!r}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(block, 64, [dilations[0]] * layers[0], strides[0])
        self.layer2 = self._stage(block, 128, [dilations[1]] * layers[1], strides[1])
        self.layer3 = self._stage(block, 256, [dilations[2]] * layers[2], strides[2])
        self.layer4 = self._stage(block, 512, [g * dilations[3] for g in grid], strides[3])
        self.low_level_channels = 64 * block.expansion
        self.high_level_channels = 512 * block.expansion
        del self.inplanes
        _init_weights(self)

    def _stage(self, block: type, planes: int, block_dilations: list[int], stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        blocks = [block(self.inplanes, planes, stride, block_dilations[0], downsample)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes, 1, d) for d in block_dilations[1:]]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        x = self.layer4(self.layer3(self.layer2(low)))
        return x, low


class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1, groups: int = 1) -> None:
        pad = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dilation: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, 1))
        layers += [
            ConvBNReLU6(hidden, hidden, 3, stride, dilation, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


# (expansion t, channels c, repeats n, stride s) of MobileNetV2 (Sandler et al. 2018)
_MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """MobileNetV2 trunk without the 1280-channel head; stride-4 (24 ch) and output-stride (320 ch) features."""

    def __init__(self, in_channels: int = 3, output_stride: int = 16, width_mult: float = 1.0) -> None:
        super().__init__()
        _stage_plan(output_stride)  # validates
        def ch(c: int) -> int:  # round to a multiple of 8 like the reference network
            return max(8, int(c * width_mult + 4) // 8 * 8)
        features: list[nn.Module] = [ConvBNReLU6(in_channels, ch(32), 3, 2)]
        stride, dilation, cin = 2, 1, ch(32)
        self._low_end = 0
        for t, c, n, s in _MBV2_SETTINGS:
            cout = ch(c)
            for i in range(n):
                block_stride = s if i == 0 else 1
                if block_stride > 1 and stride >= output_stride:
                    block_stride, dilation = 1, dilation * s
                elif block_stride > 1:
                    stride *= block_stride
                features.append(InvertedResidual(cin, cout, block_stride, dilation, t))
                cin = cout
            if stride == 4 and self._low_end == 0 and c == 24:
                self._low_end = len(features)
        self.features = nn.Sequential(*features)
        self.low_level_channels = ch(24)
        self.high_level_channels = cin
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.features[: self._low_end](x)
        return self.features[self._low_end:](low), low


def build_backbone(name: str, in_channels: int = 3, output_stride: int = 16, **options) -> nn.Module:
    """A backbone by name (see BACKBONES); options: ``multi_grid`` (ResNets), ``width_mult`` (MobileNetV2)."""
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if name in RESNET_LAYERS:
        return ResNet(name, in_channels, output_stride, multi_grid=options.pop("multi_grid", None), **options)
    if name == "mobilenetv2":
        return MobileNetV2(in_channels, output_stride, **options)
    raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
