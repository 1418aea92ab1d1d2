"""The loss on labelled pixels, chosen per run (``TrainConfig.sup_loss``) and shared by every method's labelled term.

* ``"ce"``: pixel-mean cross-entropy, 255 ignored (the Pascal VOC recipes).
* ``"ohem"``: online hard example mining, ``ProbOhemCrossEntropy2d`` of CPS and UniMatch's Cityscapes configs
  (thresh 0.7, min_kept 200000): only pixels whose probability of the true class is at most ``max(thresh, p_k)``
  count, where ``p_k`` is the ``min_kept``-th smallest such probability, so at least ``min_kept`` pixels always
  count; with fewer than ``min_kept`` labelled pixels in the batch it is plain cross-entropy (as in the official
  code). ``min_kept`` counts pixels of one process's batch (official: 2 crops of 801x801 per GPU, i.e. about 16 % of
  them); scale it with the crop and batch size.

Both compute in float32 whatever the autocast dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SUP_LOSSES
from ..data.base import IGNORE_INDEX
from ..errors import ConfigError


class CrossEntropy(nn.Module):
    """Pixel-mean cross-entropy over labelled pixels (255 ignored)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the hard labelled pixels only (see the module docstring)."""

    def __init__(self, thresh: float = 0.7, min_kept: int = 200000) -> None:
        super().__init__()
        if not 0 < thresh <= 1:
            raise ConfigError(f"ohem_thresh must lie in (0, 1], got {thresh!r}")
        if min_kept < 1:
            raise ConfigError(f"ohem_min_kept must be positive, got {min_kept!r}")
        self.thresh, self.min_kept = float(thresh), int(min_kept)

    @torch.no_grad()
    def kept(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Bool (B,H,W): the labelled pixels that count."""
        valid = target != IGNORE_INDEX
        num_valid = int(valid.sum())
        if num_valid == 0 or self.min_kept > num_valid:
            return valid
        prob = logits.float().softmax(dim=1).gather(1, target.masked_fill(~valid, 0)[:, None])[:, 0]
        kth = prob[valid].kthvalue(self.min_kept).values
        return valid & (prob <= max(self.thresh, float(kth)))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.masked_fill(~self.kept(logits, target), IGNORE_INDEX)
        return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)


def build_labelled_loss(name: str = "ce", ohem_thresh: float = 0.7, ohem_min_kept: int = 200000) -> nn.Module:
    """The labelled-pixel loss called ``name`` (one of :data:`SUP_LOSSES`)."""
    if name == "ce":
        return CrossEntropy()
    if name == "ohem":
        return OhemCrossEntropy(ohem_thresh, ohem_min_kept)
    raise ConfigError(f"sup_loss must be one of {list(SUP_LOSSES)}, got {name!r}")
