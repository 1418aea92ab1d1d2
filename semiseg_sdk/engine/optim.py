"""Optimiser construction and the poly learning-rate schedule."""
from __future__ import annotations

from typing import Any, Dict, List

import torch


def build_optimizer(groups: List[Dict[str, Any]], name: str, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """SGD (momentum, as in every SSS recipe) or AdamW over parameter groups that carry their own ``lr``."""
    for g in groups:
        g["initial_lr"] = g["lr"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def poly_factor(step: int, total: int, power: float = 0.9) -> float:
    """``(1 - step/total) ** power``: the poly schedule of DeepLab and every SSS method."""
    return max(0.0, 1.0 - step / max(1, total)) ** power


def set_poly_lr(optimizer: torch.optim.Optimizer, step: int, total: int, power: float = 0.9) -> float:
    """Set each group's lr to its initial lr times the poly factor; returns the first group's lr."""
    f = poly_factor(step, total, power)
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] * f
    return optimizer.param_groups[0]["lr"]
