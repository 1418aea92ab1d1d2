"""Strong (photometric) view on the device with kornia: colour jitter, grayscale, Gaussian blur.

Defaults follow UniMatch / ST++ (``dataset/transform.py``): ColorJitter(0.5, 0.5, 0.5, 0.25) p=0.8,
RandomGrayscale p=0.2, Gaussian blur sigma U(0.1, 2.0) p=0.5. Masks are never touched by these ops.
"""
from __future__ import annotations

from dataclasses import dataclass

import kornia.augmentation as K
import torch
from torch import nn


@dataclass(frozen=True)
class StrongConfig:
    """Photometric strength; defaults = UniMatch/ST++ strong augmentation."""

    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.25
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple = (0.1, 2.0)
    blur_kernel: int = 9


class StrongAugment(nn.Module):
    """Batched photometric augmentation of [0,1] RGB images (each sample its own parameters)."""

    def __init__(self, cfg: StrongConfig = StrongConfig()) -> None:
        super().__init__()
        self.ops = nn.Sequential(
            K.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.jitter_p),
            K.RandomGrayscale(p=cfg.grayscale_p),
            K.RandomGaussianBlur((cfg.blur_kernel, cfg.blur_kernel), cfg.blur_sigma, p=cfg.blur_p),
        )

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return a strongly augmented copy of ``image`` (B,3,H,W) float in [0,1]; always computed in fp32."""
        out = self.ops(image.float())
        return out.clamp_(0.0, 1.0).to(image.dtype)
