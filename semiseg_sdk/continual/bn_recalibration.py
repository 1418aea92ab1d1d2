"""Batch-norm statistics re-estimated on the mixture of replayed and field images (AdaBN, Li et al. 2016).

A model trained in one domain normalises another with the wrong means and variances; re-estimating them costs a few
hundred forward passes and no labels. The loop serves both domains, so the statistics are those of batches that
concatenate replay and field weak views (the mixture's variance, not an average of per-domain ones), accumulated as
a cumulative average (``momentum=None``). Only batch-norm layers run in train mode; weights do not change.
"""
from __future__ import annotations

from typing import Iterator, Mapping

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..augment import ViewMaker
from ..data.loader import to_device


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x_iter: Iterator[Mapping], u_iter: Iterator[Mapping], views: ViewMaker,
                   batches: int, device: torch.device) -> int:
    """Reset and re-estimate the BN statistics of ``model`` over ``batches`` replay+field batches; returns the
    number of BN layers updated (0: nothing to do). ``model`` is left in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns or batches < 1:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.eval()
    for m in bns:
        m.train()
    try:
        for _ in range(batches):
            x = views.weak(to_device(next(x_iter), device)).image
            u = views.weak(to_device(next(u_iter), device)).image
            model(torch.cat([x, u]))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.eval()
    return len(bns)
