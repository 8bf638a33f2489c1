"""Optimiser and schedules shared by pretraining and fine-tuning."""

from __future__ import annotations

import math

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decoupled weight decay on matrices (and embeddings) only; none on vectors (norm scales,
    biases) or on parameters flagged by their module with ``_no_weight_decay`` (Hyena filters, SSM dynamics),
    as in HyenaDNA. Frozen parameters are left out."""
    decay, no_decay = [], []
    for param in dict.fromkeys(model.parameters()):  # shared tensors once
        if not param.requires_grad:
            continue
        if param.ndim < 2 or getattr(param, "_no_weight_decay", False):
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`; the caller sets ``group["lr"]`` each step from a schedule."""
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=tuple(betas))


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate factor of 0-based ``step``: linear warm-up over ``warmup_steps`` (1/warmup_steps at
    step 0, 1 at step warmup_steps - 1), then cosine decay to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
