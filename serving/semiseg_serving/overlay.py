"""Colour views of a mask: palette lookup, an overlay on the image (opacity 0.5 by default), a legend."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
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


def legend_entries(mask: np.ndarray, classes: Sequence[str]) -> List[Tuple[int, str, float]]:
    """``(class id, name, share of the pixels)`` of the classes present in ``mask``, most frequent first."""
    counts = np.bincount(mask.ravel().astype(np.intp), minlength=len(classes))[: len(classes)]
    total = max(int(counts.sum()), 1)
    return [(int(c), str(classes[c]), counts[c] / total) for c in np.argsort(-counts, kind="stable") if counts[c]]


def draw_legend(image_rgb: np.ndarray, mask: np.ndarray, classes: Sequence[str],
                palette: Sequence[Sequence[int]]) -> np.ndarray:
    """A copy of ``image_rgb`` with a legend in its top-left corner: a swatch, the name and the share of each class
    present in ``mask`` (as many as fit the image's height)."""
    out = image_rgb.copy()
    lut = palette_lut(palette)
    scale = max(0.35, min(0.6, image_rgb.shape[0] / 900))
    row = int(22 * scale / 0.5)
    entries = legend_entries(mask, classes)[: max(0, (image_rgb.shape[0] - 8) // row)]
    if not entries:
        return out
    width = min(image_rgb.shape[1], 12 + row + max(cv2.getTextSize(f"{n} 100%", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
                                                        for _, n, _ in entries))
    height = 8 + row * len(entries)
    box = out[:height, :width].astype(np.float32)
    out[:height, :width] = (0.35 * box).astype(np.uint8)  # darkened panel behind the text
    for i, (cid, name, share) in enumerate(entries):
        y = 4 + i * row
        colour = tuple(int(v) for v in lut[cid])
        cv2.rectangle(out, (6, y + 2), (6 + row - 6, y + row - 4), colour, -1)
        cv2.putText(out, f"{name} {100 * share:.0f}%", (10 + row, y + row - 7), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return out
