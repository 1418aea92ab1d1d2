"""Pinhole geometry of the driving scenes: a forward camera above a flat ground and a road that curves.

World axes: X to the right, Y up, Z forward (metres); the camera sits at X = 0, Y = ``height``. The road centre
runs along ``X = offset + heading * Z + curve * Z**2``, so its edges, lane lines and everything placed beside it
converge at a vanishing point and bend with the road.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import to_polys


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: focal length (px), principal column and horizon row (px), height above ground (m)."""

    focal: float
    cx: float
    horizon: float
    height: float

    def project(self, x, y, z):
        """Pixel coordinates (u, v) of world points; arrays broadcast, z > 0."""
        z = np.maximum(np.asarray(z, np.float64), 1e-3)
        return self.cx + self.focal * np.asarray(x) / z, self.horizon + self.focal * (self.height - np.asarray(y)) / z

    def scale(self, z: float) -> float:
        """Pixels per metre at depth ``z``."""
        return self.focal / max(z, 1e-3)

    def ground_depth(self, rows: np.ndarray) -> np.ndarray:
        """Distance (m) to the ground seen at image rows below the horizon; far for rows above it."""
        dv = np.asarray(rows, np.float32) - np.float32(self.horizon)
        return np.where(dv > 0.5, self.focal * self.height / np.maximum(dv, 0.5), 1e4).astype(np.float32)


@dataclass(frozen=True)
class Road:
    """The road: centre line, width and lanes; ``near``/``far`` bound the depths worth drawing."""

    offset: float
    heading: float
    curve: float
    width: float
    lanes: int
    near: float
    far: float

    def centre(self, z):
        """Lateral position (m) of the road centre at depth ``z``."""
        z = np.asarray(z, np.float64)
        return self.offset + self.heading * z + self.curve * z * z

    def depths(self, n: int = 24, near=None, far=None) -> np.ndarray:
        """``n`` depths spaced geometrically from near to far (dense close to the camera)."""
        return np.geomspace(self.near if near is None else near, self.far if far is None else far, n)


def ground_band(cam: Camera, road: Road, left: float, right: float, z0=None, z1=None, n: int = 24) -> np.ndarray:
    """Polygon (1, 2n, 2) of the ground strip between lateral offsets ``left`` < ``right`` from the road centre."""
    z = road.depths(n, z0, z1)
    c = road.centre(z)
    ul, vl = cam.project(c + left, 0.0, z)
    ur, vr = cam.project(c + right, 0.0, z)
    pts = np.concatenate([np.stack([ul, vl], -1), np.stack([ur, vr], -1)[::-1]], 0)
    return to_polys(pts)[None]


def wall(cam: Camera, road: Road, offset: float, z0: float, z1: float, bottom: float, top, n: int = 4) -> np.ndarray:
    """Polygon (1, 2n, 2) of a vertical surface parallel to the road at lateral ``offset``, from depth z0 to z1.

    ``top`` is a height or an array of ``n`` heights (a ragged top edge, for hedges and tree lines).
    """
    z = np.linspace(z0, z1, n)
    x = road.centre(z) + offset
    ub, vb = cam.project(x, bottom, z)
    ut, vt = cam.project(x, np.broadcast_to(np.asarray(top, np.float64), z.shape), z)
    pts = np.concatenate([np.stack([ub, vb], -1), np.stack([ut, vt], -1)[::-1]], 0)
    return to_polys(pts)[None]


def quads_on_wall(cam: Camera, road: Road, offset: float, z_a: np.ndarray, z_b: np.ndarray,
                  y_a: np.ndarray, y_b: np.ndarray) -> np.ndarray:
    """Polygons (K, 4, 2) of K rectangles on a road-parallel wall (windows, doors), given depth and height spans."""
    xa, xb = road.centre(z_a) + offset, road.centre(z_b) + offset
    corners = [cam.project(xa, y_a, z_a), cam.project(xb, y_a, z_b), cam.project(xb, y_b, z_b),
               cam.project(xa, y_b, z_a)]
    pts = np.stack([np.stack(c, -1) for c in corners], 1)
    return to_polys(pts)
