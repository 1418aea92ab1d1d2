"""ST++'s image-level stability score and the reliable / unreliable split it induces.

Yang et al., CVPR 2022, LiheYoung/ST-PlusPlus ``train.py`` (``select_reliable``): the K models kept during SupOnly
training predict each unlabelled image; the score is the mean over ``k < K`` of the mIoU between the prediction of
model ``k`` and that of the final model ``K`` (``utils.py`` ``meanIOU``: per-class IoU on this one image, ``nanmean``
over the classes, so a class that neither map contains does not count). Images are sorted by score, highest first;
the first half is "reliable".
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch

from ..errors import ConfigError


def map_iou(pred: torch.Tensor, ref: torch.Tensor, num_classes: int) -> float:
    """mIoU of two label maps of one image, over the classes present in either (1.0 if both are empty)."""
    if pred.shape != ref.shape:
        raise ValueError(f"label maps differ in shape: {tuple(pred.shape)} vs {tuple(ref.shape)}")
    p, r = pred.reshape(-1).long(), ref.reshape(-1).long()
    keep = (r >= 0) & (r < num_classes) & (p >= 0) & (p < num_classes)
    p, r = p[keep], r[keep]
    inter = torch.bincount(r[p == r], minlength=num_classes).double()
    union = torch.bincount(p, minlength=num_classes).double() + torch.bincount(r, minlength=num_classes).double() - inter
    present = union > 0
    if not bool(present.any()):
        return 1.0
    return float((inter[present] / union[present]).mean())


def image_stability(maps: Sequence[torch.Tensor], num_classes: int) -> float:
    """``mean_{k<K} mIoU(maps[k], maps[K-1])``: agreement of earlier checkpoints with the final one (K >= 2)."""
    if len(maps) < 2:
        raise ValueError(f"the stability score needs at least 2 checkpoints' predictions, got {len(maps)}")
    ref = maps[-1]
    return sum(map_iou(m, ref, num_classes) for m in maps[:-1]) / (len(maps) - 1)


def split_reliable(scored: Sequence[Tuple[int, float]], fraction: float = 0.5) -> Tuple[List[Tuple[int, float]], List[Tuple[int, float]]]:
    """Sort ``(index, score)`` pairs by score, highest first (ties keep their order); the first
    ``int(len * fraction)`` are reliable, the rest unreliable (the official ``[:len // 2]`` for 0.5)."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"reliable_fraction must lie strictly between 0 and 1, got {fraction!r}")
    ranked = sorted(scored, key=lambda item: -item[1])
    n = int(len(ranked) * fraction)
    return ranked[:n], ranked[n:]
