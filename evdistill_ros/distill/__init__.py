"""Offline distillation from recorded bags: APS teacher -> event student (EvDistill, CVPR'21).

    run_training(config, bags=None, stage="teacher"|"student", method=..., teacher=..., ...) -> Path
    load_config(path, overrides=None) -> dict
    run_compare(config, out_dir=None) -> dict   (teacher + students on synthetic data, one mIoU table)

Modules: config (YAML + defaults), cache (bags -> memory-mapped pairs), dataset (Dataset +
resumable sampler), augment (joint augmentation), losses, optim, trainer, ddp, compare, commands.
Heavy imports (torch) happen in the submodules, not here.
"""
from __future__ import annotations


def run_training(*args, **kwargs):
    from .trainer import run_training as _rt

    return _rt(*args, **kwargs)


def load_config(*args, **kwargs):
    from .config import load_config as _lc

    return _lc(*args, **kwargs)


def run_compare(*args, **kwargs):
    from .compare import run_compare as _rc

    return _rc(*args, **kwargs)


__all__ = ["run_training", "load_config", "run_compare"]
