"""Exponential-moving-average teacher, shared by every teacher-based method (mean teacher, PS-MT, ReCo, ...)."""
from __future__ import annotations

import copy
import torch
from torch import nn

from .layer_modes import bn_batch_stats


class EMATeacher(nn.Module):
    """A frozen copy of a student updated as ``t = a * t + (1 - a) * s`` after each optimiser step.

    ``warmup=True`` uses ``a_t = min(1 - 1 / (t + 1), momentum)`` (ClassMix, ReCo, UniMatch-V2), else a fixed ``a``
    (French et al. 0.99, PS-MT 0.996). Floating-point buffers (BN statistics) are averaged the same way (as
    UniMatch-V2 and French et al. do; ClassMix and ReCo average parameters only), integer buffers copied. The
    teacher never receives gradients and stays in eval mode; with ``batch_stats`` it predicts with its BatchNorm
    layers on the batch's own statistics (:func:`bn_batch_stats`, as official codes that call ``ema_model.train()``
    do), dropout staying off.
    """

    def __init__(self, student: nn.Module, momentum: float = 0.99, warmup: bool = True,
                 batch_stats: bool = False) -> None:
        super().__init__()
        self.net = copy.deepcopy(student)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net.eval()
        self.momentum = float(momentum)
        self.warmup = warmup
        self.batch_stats = batch_stats

    def train(self, mode: bool = True) -> "EMATeacher":
        """The teacher stays in eval mode whatever the method's mode."""
        super().train(mode)
        self.net.eval()
        return self

    def decay(self, step: int) -> float:
        """The EMA coefficient used after optimiser step ``step`` (0-based)."""
        return min(1.0 - 1.0 / (step + 1), self.momentum) if self.warmup else self.momentum

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        """Move the teacher towards ``student``."""
        a = self.decay(step)
        for t, s in zip(self.net.parameters(), student.parameters()):
            t.mul_(a).add_(s.detach(), alpha=1.0 - a)
        for t, s in zip(self.net.buffers(), student.buffers()):
            if t.dtype.is_floating_point:
                t.mul_(a).add_(s.detach(), alpha=1.0 - a)
            else:
                t.copy_(s)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with bn_batch_stats(self.net, enabled=self.batch_stats):
            return self.net(x)
