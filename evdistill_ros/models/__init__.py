"""Segmentation networks (plain torch), their checkpoints and their input/output handling.

    build_model(arch="deeplabv3plus", backbone="resnet18", in_channels=3, num_classes=6,
                output_stride=16, **options) -> nn.Module          (see models.factory)
    model(x) -> logits (B, K, H, W); model(x, return_features=True) -> dict (models.deeplab, models.lraspp)
    save_checkpoint(path, model, metadata) / load_checkpoint(path, device="cpu", strict=True)
        -> (model, metadata); read_metadata(path) -> metadata     (see models.checkpoint)
    load_pretrained(model, path) -> PretrainedReport              (see models.pretrained)
    prepare_input(x, meta), prepare_labels(labels, meta), restore_output(logits, hw),
    Preprocessor                                                  (see models.preprocess)
    ReconstructionHead, A2EGenerator, build_a2e                   (see models.heads)
"""
from .backbones import BACKBONES, build_backbone
from .checkpoint import (authors_metadata, default_metadata, git_revision, infer_config, load_checkpoint,
                         load_state_dict_checked, read_metadata, save_checkpoint)
from .pretrained import PretrainedReport, load_pretrained
from .deeplab import DeepLabV3Plus
from .lraspp import LRASPP
from .factory import ARCHS, build_model
from .heads import A2EGenerator, ReconstructionHead, build_a2e
from .preprocess import Preprocessor, prepare_input, prepare_labels, restore_output

__all__ = [
    "ARCHS", "BACKBONES", "A2EGenerator", "DeepLabV3Plus", "LRASPP", "Preprocessor", "ReconstructionHead",
    "authors_metadata", "build_a2e", "build_backbone", "build_model", "default_metadata", "git_revision",
    "infer_config", "load_checkpoint", "load_state_dict_checked", "prepare_input", "prepare_labels",
    "restore_output", "save_checkpoint", "read_metadata", "load_pretrained", "PretrainedReport",
]
