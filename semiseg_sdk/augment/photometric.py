"""Strong (photometric) view on the device with kornia: colour jitter, grayscale, Gaussian blur.

Defaults follow UniMatch / ST++ (``dataset/transform.py``): ColorJitter(0.5, 0.5, 0.5, 0.25) p=0.8,
RandomGrayscale p=0.2, Gaussian blur sigma U(0.1, 2.0) p=0.5. Masks are never touched by these ops.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import kornia.augmentation as K
import torch
from torch import nn

from ..errors import ConfigError


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def strong_config(overrides: Mapping[str, Any]) -> StrongConfig:
    """:class:`StrongConfig` with ``overrides`` applied (``TrainConfig.strong_aug``); a bad key or value names itself.

    Example: ``{"blur_sigma": [0.03, 0.6], "blur_kernel": 5}`` scales the blur of 321-px official crops to 96-px ones.
    """
    names = {f.name for f in dataclasses.fields(StrongConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"strong_aug: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    values = dict(overrides)
    for key, value in values.items():
        if key == "blur_sigma":
            pair = isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value))
            if not (pair and 0 < value[0] <= value[1]):
                raise ConfigError(f"strong_aug.blur_sigma must be [low, high] with 0 < low <= high, got {value!r}")
            values[key] = (float(value[0]), float(value[1]))
        elif key == "blur_kernel":
            if not (isinstance(value, int) and value >= 3 and value % 2 == 1):
                raise ConfigError(f"strong_aug.blur_kernel must be an odd integer >= 3, got {value!r}")
        elif not _is_number(value) or value < 0:
            raise ConfigError(f"strong_aug.{key} must be a non-negative number, got {value!r}")
        elif key.endswith("_p") and value > 1:
            raise ConfigError(f"strong_aug.{key} is a probability in [0, 1], got {value!r}")
        elif key == "hue" and value > 0.5:
            raise ConfigError(f"strong_aug.hue must be in [0, 0.5], got {value!r}")
    return dataclasses.replace(StrongConfig(), **values)


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
