"""Colour views of a mask: palette lookup and an overlay on the image (opacity 0.5 by default)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import ImageError


def palette_lut(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table: the palette, black for ids without a colour (e.g. 255 = ignore)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
    lut[: len(colours)] = colours
    return lut


def colorize(mask: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB colours."""
    return palette_lut(palette)[mask.astype(np.intp) & 0xFF]


def overlay(image_rgb: np.ndarray, mask: np.ndarray, palette: Sequence[Sequence[int]],
            opacity: float = 0.5) -> np.ndarray:
    """Blend the mask colours over an (H, W, 3) uint8 RGB image: ``(1 - opacity) * image + opacity * colour``."""
    if image_rgb.shape[:2] != mask.shape:
        raise ImageError(f"overlay: image {image_rgb.shape[:2]} and mask {mask.shape} differ in size")
    blended = (1.0 - opacity) * image_rgb.astype(np.float32) + opacity * colorize(mask, palette).astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
