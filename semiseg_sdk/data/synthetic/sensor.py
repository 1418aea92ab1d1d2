"""Camera effects shared by the synthetic scenes: uneven illumination, roll, blur, white balance, gamma, noise."""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from .textures import fractal_noise, linear_ramp


def illumination(rng: np.random.Generator, shape: Tuple[int, int], ramp: float, blotches: float) -> np.ndarray:
    """Multiplicative light map (H, W): a linear gradient of strength ``ramp`` plus soft cloud-like blotches."""
    light = 1.0 + rng.uniform(0.0, ramp) * linear_ramp(shape, rng.uniform(0.0, 2.0 * np.pi))
    light += rng.uniform(0.0, blotches) * fractal_noise(rng, shape, max(shape) / 2.5, octaves=2)
    return light.astype(np.float32)


def roll(image: np.ndarray, mask: np.ndarray, degrees: float) -> Tuple[np.ndarray, np.ndarray]:
    """Rotate image (linear) and mask (nearest) about the centre, zoomed just enough to leave no empty corners."""
    h, w = mask.shape
    a = np.deg2rad(abs(degrees))
    zoom = np.cos(a) + max(w / h, h / w) * np.sin(a)
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, zoom)
    image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    return image, mask


def develop(image: np.ndarray, rng: np.random.Generator, blur: Tuple[float, float] = (0.2, 0.9),
            noise: Tuple[float, float] = (1.0, 7.0), gamma: Tuple[float, float] = (0.8, 1.25),
            gains: float = 0.08, extra_noise: Optional[float] = None) -> np.ndarray:
    """Turn a float RGB scene into the uint8 picture a camera would write: blur, white balance, gamma, noise."""
    h, w = image.shape[:2]
    sigma = rng.uniform(*blur)
    image = cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.3 else image.copy()
    image *= rng.uniform(1.0 - gains, 1.0 + gains, size=3).astype(np.float32)
    image += np.float32(0.5)
    np.clip(image, 0.0, 255.0, out=image)
    curve = 255.0 * np.linspace(0.0, 1.0, 256) ** rng.uniform(*gamma)
    image = cv2.LUT(image.astype(np.uint8), curve.astype(np.float32))
    sd = np.float32(rng.uniform(*noise))
    if extra_noise is not None:  # a domain overrides the noise level
        sd = np.float32(extra_noise)
    grain = rng.standard_normal((h, w, 1), dtype=np.float32)
    grain *= sd
    image += grain
    chroma = rng.standard_normal(((h + 1) // 2, (w + 1) // 2, 3), dtype=np.float32)
    chroma = cv2.resize(chroma, (w, h), interpolation=cv2.INTER_NEAREST)
    chroma *= np.float32(0.5) * sd
    image += chroma
    image += np.float32(0.5)
    np.clip(image, 0.0, 255.0, out=image)
    return image.astype(np.uint8)
