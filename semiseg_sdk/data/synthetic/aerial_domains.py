"""Appearance domains of the aerial scenes: summer, autumn, winter, sensor-tint. They change pixels, never labels."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from .aerial_looks import BARE, BUILDING, LOW_VEGETATION, ROAD, TREE, WATER
from .textures import fractal_noise, linear_ramp, value_noise

AERIAL_DOMAINS = ("summer", "autumn", "winter", "sensor-tint")


def _recolour(img: np.ndarray, where: np.ndarray, colour: np.ndarray, amount: np.ndarray) -> None:
    """Blend pixels ``where`` towards ``colour`` scaled by their own brightness (keeps texture), in place."""
    luma = img[where].mean(axis=1, keepdims=True) / 128.0
    a = amount[where][:, None]
    img[where] = (1.0 - a) * img[where] + a * luma * colour


def autumn(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Dict]:
    """Leaves turn yellow, orange and red (patchily, tree by tree), grass dries, fields are bare and brown."""
    h, w = mask.shape
    pick = value_noise(rng, (h, w), rng.uniform(4.0, 10.0) * w / 192.0)
    shades = np.array([[200, 150, 40], [210, 100, 30], [170, 50, 30], [120, 110, 50]], np.float32)
    idx = np.clip(((pick + 1.0) * 2.0).astype(np.int32), 0, 3)
    trees = mask == TREE
    luma = img[trees].mean(axis=1, keepdims=True) / 110.0
    a = np.float32(rng.uniform(0.6, 0.95))
    img[trees] = (1 - a) * img[trees] + a * luma * shades[idx[trees]]
    grass = np.isin(mask, (LOW_VEGETATION, BARE))
    _recolour(img, grass, np.array([150, 125, 70], np.float32), np.full((h, w), rng.uniform(0.4, 0.8), np.float32))
    return img, {}


def winter(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Dict]:
    """Patchy snow on open ground, fields and roofs, bare dark trees, grey or frozen water, slushy roads."""
    h, w = mask.shape
    cover = fractal_noise(rng, (h, w), rng.uniform(10.0, 40.0) * w / 192.0) * 0.8 + rng.uniform(0.55, 1.0)
    cover = np.clip(cover, 0.0, 1.0).astype(np.float32)
    luma = img.mean(axis=2, keepdims=True)
    snow = np.array([232, 238, 248], np.float32) * (0.85 + 0.15 * luma / max(1.0, float(luma.mean())))
    trees = mask == TREE
    img[trees] = 0.35 * img[trees] + 0.65 * luma[trees] * np.array([0.75, 0.68, 0.62], np.float32)
    for classes, weight in (((BARE, LOW_VEGETATION), 1.0), ((BUILDING,), 0.85), ((ROAD,), 0.3), ((TREE,), 0.3)):
        a = (cover * np.float32(weight) * np.isin(mask, classes))[..., None]
        img = (1.0 - a) * img + a * snow
    water = mask == WATER
    _recolour(img, water, np.array([150, 165, 185], np.float32), np.full((h, w), rng.uniform(0.3, 0.9), np.float32))
    return img * np.array([0.95, 0.98, 1.06], np.float32), {}


def sensor_tint(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Dict]:
    """Another camera: a colour cross-talk matrix, haze, vignetting, a stronger blur and noisier pixels."""
    h, w = mask.shape
    mix = np.eye(3, dtype=np.float32) * rng.uniform(0.7, 0.95) + rng.uniform(0.0, 0.25, (3, 3)).astype(np.float32)
    img = img @ mix.T
    img = img * np.float32(rng.uniform(0.75, 0.95)) + np.float32(rng.uniform(15, 50)) * rng.uniform(0.8, 1.2, 3)
    ys, xs = np.ogrid[-1:1:complex(0, h), -1:1:complex(0, w)]
    img *= (1.0 - rng.uniform(0.15, 0.4) * (xs * xs + ys * ys)).astype(np.float32)[..., None]
    img *= (1.0 + 0.15 * linear_ramp((h, w), rng.uniform(0, 2 * np.pi)))[..., None]
    return img, {"blur": (0.8, 1.5), "noise": (5.0, 10.0), "gamma": (0.7, 1.0)}


def season(domain: str, img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Surfaces as they look in ``domain`` (autumn leaves, winter snow), before light and shadow are applied."""
    if domain in ("autumn", "winter"):
        return {"autumn": autumn, "winter": winter}[domain](img, mask, rng)[0]
    return img


def sensor(domain: str, img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Dict]:
    """The lit tile through the camera of ``domain`` and the camera settings (``develop`` keywords) for it."""
    if domain == "sensor-tint":
        return sensor_tint(img, mask, rng)
    return img, {}
