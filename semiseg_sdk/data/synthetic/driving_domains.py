"""Appearance domains of the driving scenes: day, dusk, fog, rain, night. They change pixels, never labels.

Each takes the lit float image and the scene's planes (class ids, depth, light emission) and returns the new image
plus the camera settings that go with it (more blur in rain, more sensor noise at night).
"""
from __future__ import annotations

from typing import Dict, Tuple

import cv2
import numpy as np

from .canvas import Canvas, emission
from .driving_looks import ROAD, SIDEWALK, SKY

DRIVING_DOMAINS = ("day", "dusk", "fog", "rain", "night")


def _glow(canvas: Canvas, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Light of lamps, lit windows and car lights, with a soft halo around each source."""
    light = emission(canvas)
    h, w = canvas.shape
    small = cv2.resize(light, ((w + 3) // 4, (h + 3) // 4), interpolation=cv2.INTER_AREA)
    sigma = max(0.5, 0.003 * w * rng.uniform(0.7, 1.5))  # the halo is blurred at a quarter of the size
    halo = cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma), (w, h), interpolation=cv2.INTER_LINEAR)
    return strength * (0.6 * light + 2.5 * halo)


def _sky_gradient(h: int, horizon: float, low, high) -> np.ndarray:
    """Vertical blend (H, 1, 3) from ``high`` at the top of the image to ``low`` at the horizon."""
    t = np.clip(np.arange(h, dtype=np.float32) / max(1.0, horizon), 0.0, 1.0)[:, None, None]
    return (1.0 - t) * np.asarray(high, np.float32) + t * np.asarray(low, np.float32)


def dusk(img, canvas, horizon, rng) -> Tuple[np.ndarray, Dict]:
    """Low warm sun: dimmer, orange cast, orange-to-violet sky, first lights on."""
    tint = np.array([1.0, rng.uniform(0.7, 0.85), rng.uniform(0.45, 0.65)], np.float32) * rng.uniform(0.45, 0.7)
    img = img * tint
    sky = canvas.mask == SKY
    grad = _sky_gradient(canvas.shape[0], horizon, (255, rng.uniform(120, 170), rng.uniform(40, 90)),
                         (rng.uniform(60, 110), rng.uniform(40, 80), rng.uniform(100, 150)))
    mix = np.float32(rng.uniform(0.6, 0.85))
    img[sky] = (mix * np.broadcast_to(grad, img.shape)[sky] + (1 - mix) * img[sky] * 1.3)
    return img + _glow(canvas, rng, 0.35), {"noise": (2.0, 6.0)}


def fog(img, canvas, horizon, rng) -> Tuple[np.ndarray, Dict]:
    """Fog thickening with distance (Koschmieder's law) towards a pale grey."""
    visibility = rng.uniform(18.0, 70.0)
    t = np.exp(-canvas.depth / np.float32(visibility))[..., None]
    grey = rng.uniform(160.0, 225.0)
    colour = np.array([grey, grey * rng.uniform(0.98, 1.02), grey * rng.uniform(1.0, 1.06)], np.float32)
    return img * t * np.float32(rng.uniform(0.85, 1.0)) + colour * (1.0 - t), {"blur": (0.5, 1.2)}


def rain(img, canvas, horizon, rng) -> Tuple[np.ndarray, Dict]:
    """Overcast and wet: darker, desaturated, glossy ground, streaks of rain, softer focus."""
    h, w = canvas.shape
    grey = img.mean(axis=2, keepdims=True)
    img = (0.45 * img + 0.55 * grey) * np.float32(rng.uniform(0.55, 0.8))
    wet = np.isin(canvas.mask, (ROAD, SIDEWALK))
    sheen = cv2.GaussianBlur(img, (0, 0), sigmaX=0.5, sigmaY=max(1.0, 0.03 * h))
    img[wet] = 0.7 * img[wet] + 0.45 * sheen[wet]
    drops = (rng.random((h, w)) < rng.uniform(0.004, 0.015)).astype(np.float32) * rng.uniform(60, 140)
    length = max(3, int(0.06 * h * rng.uniform(0.6, 1.4)))
    kernel = np.zeros((length, length), np.float32)
    kernel[:, length // 2] = 1.0 / length
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(-20, 20), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    img = img + cv2.filter2D(drops, -1, kernel)[..., None] * 2.0
    return img, {"blur": (0.6, 1.4), "noise": (2.0, 8.0)}


def night(img, canvas, horizon, rng) -> Tuple[np.ndarray, Dict]:
    """Dark blue ambient light, black sky, lamps and car lights with halos, a noisy sensor."""
    ambient = np.array([0.7, 0.8, 1.0], np.float32) * rng.uniform(0.08, 0.2)
    img = img * ambient
    img[canvas.mask == SKY] *= np.float32(0.4)
    return img + _glow(canvas, rng, 1.0), {"noise": (4.0, 10.0), "gamma": (0.6, 0.9)}


def apply_domain(domain: str, img: np.ndarray, canvas: Canvas, horizon: float,
                 rng: np.random.Generator) -> Tuple[np.ndarray, Dict]:
    """The image as seen in ``domain`` and the camera settings (``develop`` keywords) for it."""
    if domain == "day":
        return img, {}
    return {"dusk": dusk, "fog": fog, "rain": rain, "night": night}[domain](img, canvas, horizon, rng)
