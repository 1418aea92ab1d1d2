"""Surface patterns of the driving scenes, in metres so they shrink with distance: paving tiles, concrete slabs and
cobbles on the ground (following the road's curve), panels and siding on facades. Each is faded out where its
joints would come closer than a few pixels, so far surfaces do not alias into moire."""
from __future__ import annotations

from typing import Dict

import numpy as np

from .canvas import PatternFn
from .driving_ground import DrivingScene
from .driving_looks import COBBLES, PANELS, SIDING, SLABS, TILES

def _joints(coord: np.ndarray, spacing: float, width: float, pixel: np.ndarray) -> np.ndarray:
    """Soft lines of ``width`` metres every ``spacing`` metres along ``coord``, faded where they crowd the pixels."""
    t = coord * np.float32(1.0 / spacing)
    t -= np.rint(t)
    np.abs(t, out=t)
    t *= np.float32(-spacing)
    t /= width + 0.5 * pixel  # broadcasts: pixel may be one value per row
    t += np.float32(1.0)
    np.clip(t, 0.0, 1.0, out=t)
    t *= np.clip((spacing / np.maximum(pixel, 1e-6) - 3.0) / 3.0, 0.0, 1.0)
    return t


def _ground(s: DrivingScene):
    """Road-relative lateral position, depth and pixel footprints (across, along) of the ground seen at each pixel."""
    h, w = s.canvas.shape
    cam = s.cam
    rows = np.arange(h, dtype=np.float32)[:, None]
    dv = rows - np.float32(cam.horizon)
    z = np.where(dv > 0.5, cam.focal * cam.height / np.maximum(dv, 0.5), np.float32(1e4)).astype(np.float32)
    u = np.arange(w, dtype=np.float32)[None, :]
    x = (u - np.float32(cam.cx)) * z / np.float32(cam.focal) - s.road.centre(z).astype(np.float32)
    return x, z, z / cam.focal, z * z / (cam.focal * cam.height)


def pattern_fields(s: DrivingScene, rng: np.random.Generator) -> Dict[int, PatternFn]:
    """Pattern id -> field function for this scene; parameters are drawn now, fields computed on demand."""
    tile = (rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.2), rng.uniform(0.02, 0.06))
    slab = (rng.uniform(3.0, 6.0), s.road.width / s.road.lanes, rng.uniform(0.03, 0.08))
    cobble = rng.uniform(0.12, 0.3)
    panel = (rng.uniform(1.0, 4.0), rng.uniform(1.0, 3.5), rng.uniform(0.04, 0.12))
    siding = (rng.uniform(0.15, 0.6), rng.uniform(0.02, 0.08))
    cache: dict = {}

    def ground():
        if "g" not in cache:
            cache["g"] = _ground(s)
        return cache["g"]

    def tiles() -> np.ndarray:
        x, z, px, pz = ground()
        return np.maximum(_joints(x, tile[0], tile[2], px), _joints(z, tile[1], tile[2], pz))

    def slabs() -> np.ndarray:
        x, z, px, pz = ground()
        return np.maximum(_joints(x + s.road.width / 2, slab[1], slab[2], px), _joints(z, slab[0], slab[2], pz))

    def cobbles() -> np.ndarray:
        x, z, px, pz = ground()
        bumps = np.abs(np.sin(np.pi * x / cobble) * np.sin(np.pi * z / cobble))
        fade = np.clip((cobble / np.maximum(pz, 1e-6) - 2.0) / 3.0, 0.0, 1.0)
        return np.clip(1.0 - 3.0 * bumps, 0.0, 1.0) * fade

    def facade():
        h, w = s.canvas.shape
        z = s.canvas.depth
        xm = (np.arange(w, dtype=np.float32)[None, :] - np.float32(s.cam.cx)) * z / np.float32(s.cam.focal)
        ym = (np.arange(h, dtype=np.float32)[:, None] - np.float32(s.cam.horizon)) * z / np.float32(s.cam.focal)
        return xm, ym, z / np.float32(s.cam.focal)

    def panels() -> np.ndarray:
        xm, ym, px = facade()
        return np.maximum(_joints(xm, panel[0], panel[2], px), _joints(ym, panel[1], panel[2], px))

    def siding_lines() -> np.ndarray:
        _, ym, px = facade()
        return _joints(ym, siding[0], siding[1], px)

    return {TILES: tiles, SLABS: slabs, COBBLES: cobbles, PANELS: panels, SIDING: siding_lines}
