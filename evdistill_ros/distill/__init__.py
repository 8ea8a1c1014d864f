"""Offline distillation from recorded bags: APS teacher -> event student (EvDistill, CVPR'21).

    run_training(config, bags=None, stage="teacher"|"student", method=..., teacher=..., ...) -> Path
    load_config(path, overrides=None) -> dict
    run_compare(config, out_dir=None) -> dict   (teacher + students on synthetic data, one mIoU table)

Modules: config (YAML + defaults), methods (teacher / supervised / kd / evdistill strategies),
trainer (the loop), state (resume), cache (bags -> pair cache), dataset (Dataset + resumable
sampler), augment, losses, optim, ddp, compare, commands. Names resolve on first use
(evdistill_ros._lazy): the CLI passes through here without loading torch.
"""
from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "run_training": ".trainer", "load_config": ".config", "run_compare": ".compare",
})
