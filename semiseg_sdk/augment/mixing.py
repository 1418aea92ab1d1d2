"""Mixing primitives for segmentation (kornia's CutMix/MixUp do not take masks): boxes, CutOut, ClassMix.

All functions are batched tensor ops on the device. A mix mask ``m`` is bool (B, H, W); ``mix(a, b, m)`` takes
``b`` where ``m`` is True and ``a`` elsewhere, for images (B,C,H,W), probabilities (B,C,H,W) or labels (B,H,W).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

from ..data.base import IGNORE_INDEX
from ..engine.phase_timer import timed


@timed("augmentation")
def box_masks(
    batch: int,
    size: Tuple[int, int],
    n_boxes: int = 1,
    area: Sequence[float] = (0.02, 0.4),
    ratio: Sequence[float] = (0.3, 1 / 0.3),
    p: float = 1.0,
    device: torch.device | str = "cpu",
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Union of ``n_boxes`` random boxes per sample (area fraction U(area), aspect U(ratio)); a sample gets no
    box with probability ``1 - p``. Defaults = UniMatch's ``obtain_cutmix_box`` (p=0.5 there)."""
    h, w = int(size[0]), int(size[1])
    r = torch.rand(batch, n_boxes, 5, device=device, generator=generator)
    a = (area[0] + (area[1] - area[0]) * r[..., 0]) * h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    asp = torch.exp(log_lo + (log_hi - log_lo) * r[..., 1])
    bh = torch.sqrt(a / asp).clamp(max=h)
    bw = torch.sqrt(a * asp).clamp(max=w)
    y0 = r[..., 2] * (h - bh)
    x0 = r[..., 3] * (w - bw)
    on = (r[..., 4] < p)[..., None, None]
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, 1, w)
    inside = (
        (ys >= y0[..., None, None]) & (ys < (y0 + bh)[..., None, None])
        & (xs >= x0[..., None, None]) & (xs < (x0 + bw)[..., None, None])
    )
    return (inside & on).any(dim=1)


@timed("augmentation")
def classmix_masks(labels: torch.Tensor, num_classes: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """ClassMix (Olsson et al.): per image, half of the classes present (``n // 2``, chosen at random) -> True.

    ``labels`` (B,H,W) long (255 ignored). Pixels of the chosen classes are True in the returned (B,H,W) mask.
    """
    b = labels.shape[0]
    valid = labels != IGNORE_INDEX
    flat = torch.where(valid, labels, torch.zeros_like(labels)).view(b, -1)
    present = torch.zeros(b, num_classes, dtype=torch.bool, device=labels.device)
    present.scatter_(1, flat, valid.view(b, -1))
    scores = torch.rand(b, num_classes, device=labels.device, generator=generator)
    scores = torch.where(present, scores, torch.full_like(scores, -1.0))
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)
    chosen = rank < (present.sum(dim=1, keepdim=True) // 2)
    return torch.gather(chosen, 1, flat).view_as(labels) & valid


@timed("augmentation")
def mix(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Take ``b`` where ``m`` (B,H,W) is True, else ``a``; works for (B,C,H,W) and (B,H,W) tensors."""
    if a.dim() == 4:
        m = m[:, None]
    return torch.where(m, b, a)


@timed("augmentation")
def cutout(image: torch.Tensor, labels: torch.Tensor, m: torch.Tensor, fill: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """CutOut for segmentation: zero the image inside ``m`` and set the labels there to ignore (255).

    (kornia's RandomErasing would write class 0 into the mask; see PITFALLS.md.)"""
    img = torch.where(m[:, None], torch.full_like(image, fill), image)
    lab = torch.where(m, torch.full_like(labels, IGNORE_INDEX), labels)
    return img, lab
