"""Mixing primitives for segmentation (kornia's CutMix/MixUp do not take masks): boxes, CutOut, ClassMix.

All functions are batched tensor ops on the device. A mix mask ``m`` is bool (B, H, W); ``mix(a, b, m)`` takes
``b`` where ``m`` is True and ``a`` elsewhere, for images (B,C,H,W), probabilities (B,C,H,W) or labels (B,H,W).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

from ..data.base import IGNORE_INDEX
from ..utils.phase_timer import timed


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
    """Union of ``n_boxes`` random boxes per sample (area fraction U(area), aspect w/h log-uniform in ``ratio``,
    sides clipped to the image); a sample gets no box with probability ``1 - p``. The ranges are those of UniMatch's
    ``obtain_cutmix_box``, not its law: :func:`unimatch_box_masks` is that law exactly."""
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
def unimatch_box_masks(
    batch: int,
    size: Tuple[int, int],
    p: float = 0.5,
    area: Sequence[float] = (0.02, 0.4),
    ratio: Sequence[float] = (0.3, 1 / 0.3),
    device: torch.device | str = "cpu",
    generator: Optional[torch.Generator] = None,
    tries: int = 256,
) -> torch.Tensor:
    """One box per sample drawn as UniMatch's ``obtain_cutmix_box`` (``dataset/transform.py``) draws it; none with
    probability ``1 - p``.

    Area ``a ~ U(area) * h * w`` once, then, until the box fits: ``r ~ U(ratio)`` (uniform, so 3 in 4 boxes are
    taller than wide), ``bw = int(sqrt(a / r))``, ``bh = int(sqrt(a * r))``, top-left ``x ~ {0..w-1}``,
    ``y ~ {0..h-1}``, accepted if ``x + bw <= w`` and ``y + bh <= h``. The loop is ``tries`` candidates drawn at once
    (the first that fits wins; none fits with probability < 1e-7 at the largest area); after that a square box."""
    h, w = int(size[0]), int(size[1])
    a = (area[0] + (area[1] - area[0]) * torch.rand(batch, 1, device=device, generator=generator)) * h * w
    r = ratio[0] + (ratio[1] - ratio[0]) * torch.rand(batch, tries, device=device, generator=generator)
    xy = torch.rand(batch, tries, 2, device=device, generator=generator)
    bw, bh = torch.sqrt(a / r).floor(), torch.sqrt(a * r).floor()
    x0, y0 = (xy[..., 0] * w).floor().clamp(max=w - 1), (xy[..., 1] * h).floor().clamp(max=h - 1)
    fits = (x0 + bw <= w) & (y0 + bh <= h)
    first, found = fits.float().argmax(dim=1, keepdim=True), fits.any(dim=1)
    bw, bh, x0, y0 = (t.gather(1, first)[:, 0] for t in (bw, bh, x0, y0))
    side = torch.sqrt(a[:, 0]).floor().clamp(max=min(h, w))
    bw, bh = torch.where(found, bw, side), torch.where(found, bh, side)
    x0 = torch.where(found, x0, (xy[:, 0, 0] * (w - side + 1)).floor())
    y0 = torch.where(found, y0, (xy[:, 0, 1] * (h - side + 1)).floor())
    on = torch.rand(batch, device=device, generator=generator) < p
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    inside = ((ys >= y0[:, None, None]) & (ys < (y0 + bh)[:, None, None])
              & (xs >= x0[:, None, None]) & (xs < (x0 + bw)[:, None, None]))
    return inside & on[:, None, None]


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
