"""Optimisers and the warmup + poly learning-rate schedule.

    build_optimizer(params, train) -> torch.optim.Optimizer
        'sgd' (momentum, nesterov off, weight decay) as the EvDistill authors, or 'adamw'.
        Biases and norm weights get no weight decay.
    lr_factor(step, total_steps, warmup_steps, power=0.9, warmup_start=0.1) -> float
        Linear warmup from warmup_start to 1 over warmup_steps, then poly decay
        (1 - (step - warmup) / (total - warmup)) ** power down to 0 at total_steps.
        Warmup is capped at a fifth of a short run so tiny runs still decay.
    build_scheduler(optimizer, train) -> torch.optim.lr_scheduler.LambdaLR over lr_factor
"""
from __future__ import annotations

from typing import Iterable

import torch

from .config import TrainConfig


def lr_factor(step: int, total_steps: int, warmup_steps: int, power: float = 0.9, warmup_start: float = 0.1) -> float:
    warmup = min(warmup_steps, total_steps // 5)
    if step < warmup:
        return warmup_start + (1.0 - warmup_start) * step / warmup
    span = max(1, total_steps - warmup)
    frac = min(1.0, (step - warmup) / span)
    return (1.0 - frac) ** power


def _param_groups(named: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in named:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(named_params: Iterable[tuple[str, torch.nn.Parameter]], train: TrainConfig) -> torch.optim.Optimizer:
    """Optimiser over `module.named_parameters()` (several modules: chain them)."""
    groups = _param_groups(named_params, float(train.weight_decay))
    name = train.optimizer
    lr = float(train.lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(train.momentum))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {name!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    total, warmup = int(train.steps), int(train.warmup_steps)
    power, start = float(train.poly_power), float(train.warmup_start)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, power, start))
