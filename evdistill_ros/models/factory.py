"""``build_model``: every segmentation network of the project behind one call.

    build_model(arch="deeplabv3plus", backbone="resnet18", in_channels=3, num_classes=6,
                output_stride=16, **options) -> nn.Module

arch: "deeplabv3plus". backbone: resnet18, resnet34, resnet50, resnet101 (the EvDistill authors'
networks), mobilenetv2 (real time on a CPU). options: ``aspp_channels`` (256),
``decoder_channels`` (256), ``with_reconstruction`` (False; adds the E2A image head used while
distilling), ``reconstruction_channels`` (1 or 3), ``multi_grid`` (ResNet layer4 dilation
multipliers, default (1, 2, 4)), ``width_mult`` (MobileNetV2).

The returned model carries ``model.config``: the exact keyword arguments that rebuild it; the
checkpoint code stores it, so a saved network is rebuilt without guessing.
"""
from __future__ import annotations

from torch import nn

from .backbones import BACKBONES
from .deeplab import DeepLabV3Plus

ARCHS: tuple[str, ...] = ("deeplabv3plus",)
_HEAD_OPTIONS = ("aspp_channels", "decoder_channels", "with_reconstruction", "reconstruction_channels")
_BACKBONE_OPTIONS = ("multi_grid", "width_mult")


def build_model(arch: str = "deeplabv3plus", backbone: str = "resnet18", in_channels: int = 3,
                num_classes: int = 6, output_stride: int = 16, **options) -> nn.Module:
    """Build a segmentation network; ``model(x)`` gives logits (B, num_classes, H, W) for any H, W."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
    unknown = sorted(set(options) - set(_HEAD_OPTIONS) - set(_BACKBONE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown build_model option(s) {unknown}; known: {sorted(_HEAD_OPTIONS + _BACKBONE_OPTIONS)}")
    head = {k: options[k] for k in _HEAD_OPTIONS if k in options}
    bb = {k: options[k] for k in _BACKBONE_OPTIONS if k in options}
    if "multi_grid" in bb and bb["multi_grid"] is not None:
        bb["multi_grid"] = [int(g) for g in bb["multi_grid"]]
    model = DeepLabV3Plus(backbone, int(in_channels), int(num_classes), int(output_stride), backbone_options=bb, **head)
    model.config = {"arch": arch, "backbone": backbone, "in_channels": int(in_channels),
                    "num_classes": int(num_classes), "output_stride": int(output_stride),
                    "options": {**head, **bb}}
    return model
