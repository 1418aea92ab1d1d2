"""Procedural textures: value noise and fractal noise made by resizing random grids (vectorised, no pixel loops)."""
from __future__ import annotations

import colorsys
from typing import Sequence, Tuple

import cv2
import numpy as np


def value_noise(rng: np.random.Generator, shape: Tuple[int, int], cell: float, channels: int = 0,
                smooth: bool = True) -> np.ndarray:
    """Smooth noise of feature size ``cell`` pixels, float32 in about [-1, 1], shape (H, W) or (H, W, channels).

    ``smooth=False`` interpolates linearly (ten times cheaper for several channels, slightly faceted).
    """
    h, w = shape
    extra = (channels,) if channels else ()
    if cell <= 1.0:
        return rng.random((h, w) + extra, dtype=np.float32) * np.float32(2.0) - np.float32(1.0)
    grid = rng.random((int(round(h / cell)) + 2, int(round(w / cell)) + 2) + extra, dtype=np.float32)
    grid = grid * np.float32(2.0) - np.float32(1.0)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC if smooth else cv2.INTER_LINEAR)


def fractal_noise(rng: np.random.Generator, shape: Tuple[int, int], cell: float,
                  octaves: int = 3, persistence: float = 0.5, channels: int = 0, smooth: bool = True) -> np.ndarray:
    """Sum of ``octaves`` value-noise layers from feature size ``cell`` down by halves, normalised to about [-1, 1]."""
    out = value_noise(rng, shape, cell, channels, smooth)
    amp, total = 1.0, 1.0
    for k in range(1, octaves):  # in place: large temporaries are costly where page faults are (VMs, workers)
        amp *= persistence
        layer = value_noise(rng, shape, cell / (2 ** k), channels, smooth)
        layer *= np.float32(amp)
        out += layer
        total += amp
    out *= np.float32(1.0 / total)
    return out


def linear_ramp(shape: Tuple[int, int], angle: float) -> np.ndarray:
    """A plane in [-1, 1] rising along direction ``angle`` (radians), float32 (H, W)."""
    h, w = shape
    ys = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    ramp = xs * np.float32(np.cos(angle)) + ys * np.float32(np.sin(angle))
    return ramp / max(1e-6, float(abs(np.cos(angle)) + abs(np.sin(angle))))


def hsv_colour(rng: np.random.Generator, hue: Sequence[float], sat: Sequence[float],
               val: Sequence[float]) -> Tuple[float, float, float]:
    """An RGB colour (0..255 floats) drawn uniformly from ranges of hue (degrees, may wrap), saturation and value."""
    lo, hi = hue
    hh = (rng.uniform(lo, hi) % 360.0) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hh, rng.uniform(*sat), rng.uniform(*val))
    return (255.0 * r, 255.0 * g, 255.0 * b)


def jitter_colour(rng: np.random.Generator, colour: Sequence[float], amount: float) -> Tuple[float, float, float]:
    """``colour`` scaled by a random brightness factor and nudged per channel, for per-instance variety."""
    k = rng.uniform(1.0 - amount, 1.0 + amount)
    c = np.clip(k * np.asarray(colour, np.float64) + rng.normal(0.0, 40.0 * amount, 3), 0.0, 255.0)
    return (float(c[0]), float(c[1]), float(c[2]))
