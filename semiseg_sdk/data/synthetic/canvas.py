"""A layered drawing surface: a class-id plane, a look-id plane (appearance), optional depth and a shade plane.

Scenes are drawn back to front with OpenCV primitives. Each primitive writes its class id into ``mask`` (or leaves it,
for details such as windows or lane markings that belong to the object under them), a look id into ``look`` (colour,
texture weights, light emission), and optionally a depth (metres, for fog) and a shade factor (for shadows).
``render_looks`` turns the look plane into a float RGB image with procedural texture.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from .textures import fractal_noise, value_noise

Texture = Tuple[float, float, float, float]  # weights of fine, medium and coarse grain noise, and of colour drift
DrawFn = Callable[[np.ndarray, float], object]
PatternFn = Callable[[], np.ndarray]  # computes a (H, W) float32 field in [0, 1]: 1 on joints, mortar, seams


class Canvas:
    """Planes of one synthetic image; ``fill`` / ``draw`` paint the same shape into each requested plane."""

    def __init__(self, height: int, width: int, cls: int, colour: Sequence[float],
                 texture: Texture = (0.0, 0.0, 0.0, 0.0), depth: Optional[float] = None) -> None:
        self.shape = (height, width)
        self.mask = np.full((height, width), cls, np.uint8)
        self.look = np.zeros((height, width), np.int32)
        self.depth = None if depth is None else np.full((height, width), depth, np.float32)
        self.shade = np.ones((height, width), np.float32)
        self.colours: list = []
        self.textures: list = []
        self.emits: list = []
        self.patterns: list = []
        self.add_look(colour, texture)

    def add_look(self, colour: Sequence[float], texture: Texture = (0.0, 0.0, 0.0, 0.0), emit: float = 0.0,
                 pattern: Tuple[int, float] = (0, 0.0)) -> int:
        """Register an appearance and return its id.

        ``colour`` is RGB 0..255, ``texture`` the noise weights, ``emit`` a light strength (lamps at night),
        ``pattern`` a (pattern id, strength) pair: how much the scene's pattern field darkens it (0 = none).
        """
        self.colours.append((float(colour[0]), float(colour[1]), float(colour[2])))
        self.textures.append((float(texture[0]), float(texture[1]), float(texture[2]), float(texture[3])))
        self.emits.append(float(emit))
        self.patterns.append((int(pattern[0]), float(pattern[1])))
        return len(self.colours) - 1

    def draw(self, fn: DrawFn, cls: Optional[int] = None, look: Optional[int] = None,
             depth: Optional[float] = None, shade: Optional[float] = None) -> None:
        """Call ``fn(plane, value)`` on each plane whose value is given (class, look, depth, shade)."""
        if cls is not None:
            fn(self.mask, int(cls))
        if look is not None:
            fn(self.look, int(look))
        if depth is not None and self.depth is not None:
            fn(self.depth, float(depth))
        if shade is not None:
            fn(self.shade, float(shade))

    def fill(self, polys, cls: Optional[int] = None, look: Optional[int] = None,
             depth: Optional[float] = None, shade: Optional[float] = None) -> None:
        """Fill polygons into the requested planes.

        ``polys`` is either a list of (N, 2) int32 arrays, filled one by one (they may overlap), or one (K, N, 2)
        int32 array of K disjoint polygons filled in a single call (OpenCV fills overlaps of one call even-odd).
        """
        if len(polys) == 0:
            return
        if isinstance(polys, np.ndarray):
            self.draw(lambda img, v: cv2.fillPoly(img, polys, v), cls, look, depth, shade)
            return
        for poly in polys:
            if cls is not None:
                cv2.fillPoly(self.mask, [poly], int(cls))
            if look is not None:
                cv2.fillPoly(self.look, [poly], int(look))
            if depth is not None and self.depth is not None:
                cv2.fillPoly(self.depth, [poly], float(depth))
            if shade is not None:
                cv2.fillPoly(self.shade, [poly], float(shade))


def to_polys(points: np.ndarray) -> np.ndarray:
    """Round float pixel coordinates (..., N, 2) to an int32 polygon array, clamped to a sane range."""
    return np.clip(np.rint(points), -30000, 30000).astype(np.int32)


def render_looks(canvas: Canvas, rng: np.random.Generator, cells: Tuple[float, float, float],
                 patterns: Optional[Dict[int, PatternFn]] = None) -> np.ndarray:
    """Float32 RGB (H, W, 3) image: each look's colour modulated by its mix of fine/medium/coarse noise.

    ``patterns`` maps pattern ids to functions computing their field; a field is computed only when some look
    uses it, and darkens each such look by its strength (tiles, panels, siding).
    """
    h, w = canvas.shape
    colours = np.asarray(canvas.colours, np.float32)
    tex = np.asarray(canvas.textures, np.float32)
    look = canvas.look
    img = np.take(colours, look, axis=0)  # np.take is several times faster than fancy indexing here
    mod = value_noise(rng, (h, w), cells[0])
    mod *= np.take(tex[:, 0], look)
    for k, (cell, octaves) in enumerate(((cells[1], 2), (cells[2], 2)), start=1):
        layer = fractal_noise(rng, (h, w), cell, octaves=octaves)
        layer *= np.take(tex[:, k], look)
        mod += layer
    if patterns:
        ids, strengths = np.asarray(canvas.patterns, np.float32).T
        for pid, field in patterns.items():
            used = np.where(ids == pid, strengths, np.float32(0.0))
            if used.any():
                layer = field()
                layer *= np.take(used, look)
                mod -= layer
    mod += np.float32(1.0)
    img *= mod[..., None]
    drift = fractal_noise(rng, (h, w), cells[2], octaves=2, channels=3, smooth=False)
    drift *= np.take(np.float32(60.0) * tex[:, 3], look)[..., None]
    img += drift
    return img


def emission(canvas: Canvas) -> np.ndarray:
    """Float32 RGB (H, W, 3) light emitted by looks with ``emit > 0`` (lamps, lit windows, car lights)."""
    colours = np.asarray(canvas.colours, np.float32) * np.asarray(canvas.emits, np.float32)[:, None]
    return np.take(colours, canvas.look, axis=0)


def ellipse_poly(u: float, v: float, a: float, b: float, angle: float) -> np.ndarray:
    """Polygon of an ellipse at (u, v) with semi-axes a, b (pixels, at least one), rotated by ``angle`` degrees."""
    return cv2.ellipse2Poly((int(round(u)), int(round(v))), (max(1, int(round(a))), max(1, int(round(b)))),
                            int(angle) % 360, 0, 360, 20)


def box_corners(centres: np.ndarray, lengths: np.ndarray, widths: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Corners (K, 4, 2) of K rotated rectangles: centres (K, 2), side lengths along / across ``angles`` (radians)."""
    d = np.stack([np.cos(angles), np.sin(angles)], -1) * (np.asarray(lengths) / 2)[:, None]
    n = np.stack([-np.sin(angles), np.cos(angles)], -1) * (np.asarray(widths) / 2)[:, None]
    c = np.asarray(centres, np.float64)
    return np.stack([c - d - n, c + d - n, c + d + n, c - d + n], 1)


def blob_outlines(rng: np.random.Generator, centres: np.ndarray, radii: np.ndarray, rough: float,
                  vertices: int = 18) -> np.ndarray:
    """Outlines (K, vertices, 2) of K irregular round shapes (tree crowns): a circle with random low lobes."""
    k = len(radii)
    theta = np.linspace(0.0, 2.0 * np.pi, vertices, endpoint=False)
    lobes = np.arange(2, 5)[None, :, None] * theta[None, None, :] + rng.uniform(0, 2 * np.pi, (k, 3, 1))
    wobble = 1.0 + (rng.uniform(0.0, rough, (k, 3, 1)) * np.sin(lobes)).sum(1)
    wobble += rng.uniform(-0.3 * rough, 0.3 * rough, (k, vertices))
    r = np.asarray(radii, np.float64)[:, None] * wobble
    return np.asarray(centres, np.float64)[:, None, :] + r[..., None] * np.stack([np.cos(theta), np.sin(theta)], -1)
