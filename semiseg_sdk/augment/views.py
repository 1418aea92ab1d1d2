"""The views a method asks for: ``weak`` (geometry) and ``strong`` (photometric on top of a weak view)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..utils.phase_timer import timed
from .geometry import View, sample_scale_crop_flip, warp_view
from .photometric import StrongAugment, StrongConfig


@dataclass(frozen=True)
class ViewConfig:
    """Crop size (h, w), random scale range and flip probability of the weak view; strong view parameters."""

    crop_size: Tuple[int, int] = (128, 128)
    scale_range: Tuple[float, float] = (0.5, 2.0)
    flip_p: float = 0.5
    strong: StrongConfig = StrongConfig()


class ViewMaker(nn.Module):
    """Batched, on-device view generation shared by every method.

    ``weak(batch)`` takes a device batch (``image`` uint8 (B,3,H,W), ``mask`` long (B,H,W), ``valid`` bool (B,H,W))
    and returns a :class:`View` of fixed crop size; ``strong(image)`` adds colour jitter, grayscale and blur.
    """

    def __init__(self, cfg: ViewConfig = ViewConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.strong_aug = StrongAugment(cfg.strong)

    @timed("augmentation")
    @torch.no_grad()
    def weak(self, batch: Dict[str, torch.Tensor], crop: Optional[Tuple[int, int]] = None) -> View:
        """Random scale + crop + flip, same geometry for image, mask and validity."""
        crop = tuple(crop or self.cfg.crop_size)
        valid = batch["valid"]
        sizes = valid_sizes(valid)
        m = sample_scale_crop_flip(sizes, crop, self.cfg.scale_range, self.cfg.flip_p)
        image = batch["image"].float().div_(255.0)
        return warp_view(image, batch["mask"], valid, m, crop)

    @timed("augmentation")
    @torch.no_grad()
    def strong(self, image: torch.Tensor) -> torch.Tensor:
        """Photometric strong view of a [0,1] image batch (masks unaffected)."""
        return self.strong_aug(image)


def valid_sizes(valid: torch.Tensor) -> torch.Tensor:
    """(B, 2) height/width of the valid (non-padding) top-left region of each sample."""
    rows = valid.any(dim=2).sum(dim=1)
    cols = valid.any(dim=1).sum(dim=1)
    return torch.stack([rows, cols], dim=1)
