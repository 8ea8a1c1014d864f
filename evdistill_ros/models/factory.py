"""``build_model``: every segmentation network of the project behind one call.

The returned model carries ``model.config``: the exact keyword arguments that rebuild it; the
checkpoint code stores it, so a saved network is rebuilt without guessing.
"""
from __future__ import annotations

from torch import nn

from .backbones import BACKBONES
from .deeplab import DeepLabV3Plus
from .lraspp import LRASPP

# arch -> (network class, the head options it takes)
_HEADS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "deeplabv3plus": (DeepLabV3Plus, ("aspp_channels", "decoder_channels", "with_reconstruction",
                                      "reconstruction_channels")),
    "lraspp": (LRASPP, ("head_channels", "with_reconstruction", "reconstruction_channels")),
}
ARCHS: tuple[str, ...] = tuple(_HEADS)
_BACKBONE_OPTIONS = ("multi_grid", "width_mult")


def build_model(arch: str = "deeplabv3plus", backbone: str = "resnet18", in_channels: int = 3,
                num_classes: int = 6, output_stride: int = 16, **options) -> nn.Module:
    """Build a segmentation network; ``model(x)`` gives logits (B, num_classes, H, W) for any H, W.

    arch: "deeplabv3plus" (the EvDistill authors' networks) or "lraspp" (LR-ASPP, built for the
    CPU). backbone: resnet18 / 34 / 50 / 101 or mobilenetv2. Options of deeplabv3plus:
    ``aspp_channels`` (256), ``decoder_channels`` (256); of lraspp: ``head_channels`` (128); of
    both: ``with_reconstruction`` (False; adds the E2A image head used while distilling),
    ``reconstruction_channels`` (1 or 3); of the backbone: ``multi_grid`` (ResNet layer4 dilation
    multipliers, default (1, 2, 4)), ``width_mult`` (MobileNetV2).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
    network, head_options = _HEADS[arch]
    other_heads = {o for _, opts in _HEADS.values() for o in opts} - set(head_options)
    unknown = sorted(set(options) - set(head_options) - set(_BACKBONE_OPTIONS))
    if unknown:
        hint = (f" ({arch} has no {', '.join(sorted(other_heads & set(unknown)))}: set it to null in the "
                "stage's model section)" if other_heads & set(unknown) else "")
        raise ValueError(f"unknown build_model option(s) {unknown} for {arch}; known: "
                         f"{sorted(head_options + _BACKBONE_OPTIONS)}{hint}")
    head = {k: options[k] for k in head_options if k in options}
    bb = {k: options[k] for k in _BACKBONE_OPTIONS if k in options}
    if "multi_grid" in bb and bb["multi_grid"] is not None:
        bb["multi_grid"] = [int(g) for g in bb["multi_grid"]]
    model = network(backbone, int(in_channels), int(num_classes), int(output_stride), backbone_options=bb, **head)
    model.config = {"arch": arch, "backbone": backbone, "in_channels": int(in_channels),
                    "num_classes": int(num_classes), "output_stride": int(output_stride),
                    "options": {**head, **bb}}
    return model
