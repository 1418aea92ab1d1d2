"""Weak view geometry on the device: random scale, crop (padding marked ignore) and horizontal flip.

One affine matrix per sample maps source pixel coordinates to crop coordinates; image (bilinear), mask (nearest)
and validity map (nearest) are warped with the same matrix by ``kornia.geometry.transform.warp_affine``, so they
can never disagree. The matrices are returned so a method can relate two views of one image (CAC's overlap).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import torch
from kornia.geometry.transform import warp_affine

from ..data.base import IGNORE_INDEX
from ..utils.phase_timer import timed


class View(NamedTuple):
    """A batch after geometry: image float [0,1] (B,3,h,w), mask long (B,h,w), valid bool (B,h,w), matrix (B,2,3)."""

    image: torch.Tensor
    mask: torch.Tensor
    valid: torch.Tensor
    matrix: torch.Tensor


def sample_scale_crop_flip(
    src_sizes: torch.Tensor,
    crop: Tuple[int, int],
    scale_range: Sequence[float] = (0.5, 2.0),
    flip_p: float = 0.5,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Sample (B, 2, 3) matrices on ``src_sizes.device`` (``generator``, if given, must live there): scale by U(scale_range), crop ``crop`` at a random offset, flip with ``flip_p``.

    ``src_sizes`` is (B, 2) of valid (h, w) per sample. When the scaled image is smaller than the crop, the
    offset is drawn so the padding may fall on either side; those pixels become ignore / invalid.
    """
    b = src_sizes.shape[0]
    dev = src_sizes.device
    src = src_sizes.to(torch.float32)
    lo, hi = float(scale_range[0]), float(scale_range[1])
    u = torch.rand(b, 4, generator=generator, device=dev)
    s = lo + (hi - lo) * u[:, 0]
    ch, cw = float(crop[0]), float(crop[1])
    span_y = src[:, 0] * s - ch
    span_x = src[:, 1] * s - cw
    y0 = torch.minimum(span_y, torch.zeros_like(span_y)) + u[:, 1] * span_y.abs()
    x0 = torch.minimum(span_x, torch.zeros_like(span_x)) + u[:, 2] * span_x.abs()
    flip = u[:, 3] < flip_p
    m = torch.zeros(b, 2, 3, device=dev)
    sign = torch.where(flip, -1.0, 1.0).to(dev)
    # x' = sign * (s*x - x0) + flip*(cw-1);  y' = s*y - y0   (pixel centres at integer coordinates)
    m[:, 0, 0] = sign * s
    m[:, 0, 2] = -sign * x0 + flip.to(torch.float32) * (cw - 1.0)
    m[:, 1, 1] = s
    m[:, 1, 2] = -y0
    return m


@timed("augmentation")
def warp_view(
    image: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor, matrix: torch.Tensor, crop: Tuple[int, int]
) -> View:
    """Warp image (float, bilinear), mask (nearest, outside = 255) and valid (nearest, outside = False) together."""
    size = (int(crop[0]), int(crop[1]))
    img = warp_affine(image.float(), matrix, size, mode="bilinear", padding_mode="zeros", align_corners=True)
    # masks travel as float32 (exact for ids < 2^24) shifted by +1 so that zero padding means "outside"
    packed = torch.stack([mask.float() + 1.0, valid.float()], dim=1)
    warped = warp_affine(packed, matrix, size, mode="nearest", padding_mode="zeros", align_corners=True)
    m = warped[:, 0].round().long() - 1
    v = warped[:, 1] > 0.5
    m = torch.where((m < 0) | ~v, torch.full_like(m, IGNORE_INDEX), m)
    return View(img.clamp_(0.0, 1.0), m, v, matrix)
