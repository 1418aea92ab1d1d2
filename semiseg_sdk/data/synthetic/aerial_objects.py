"""Buildings (flat, gable or hip roofs, L-shapes, cast shadows) and trees (irregular crowns, shadows) from above."""
from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np

from .aerial_looks import BUILDING, ROAD, TREE, WATER
from .aerial_roads import resample_polyline
from .aerial_terrain import AerialScene
from .canvas import blob_outlines, box_corners, to_polys
from .textures import hsv_colour

Box = Tuple[Tuple[float, float], Tuple[float, float], float]  # OpenCV rotated rect: centre, (length, depth), degrees


def place_buildings(s: AerialScene) -> None:
    """Rows of buildings facing the roads (dense blocks in town, houses in suburbs), a few farms in the country."""
    h, w = s.canvas.shape
    dense = {"urban": 0.85, "suburban": 0.6, "rural": 0.25}[s.style]
    size = {"urban": (12, 45), "suburban": (8, 18), "rural": (8, 25)}[s.style]
    back = {"urban": (1, 5), "suburban": (4, 12), "rural": (5, 20)}[s.style]
    for pts, width in s.roads:
        line = resample_polyline(pts, 1.0)
        if len(line) < 3:
            continue
        k = int(len(line) / (size[0] * s.ppm)) + 1
        lengths = s.lay.uniform(*size, k) * s.ppm
        at = np.cumsum(lengths + s.lay.uniform(1, 8, k) * s.ppm) - lengths
        at = at[at < len(line) - 2].astype(int)
        lengths = lengths[: len(at)]
        d = line[at + 1] - line[at]
        d /= np.maximum(1e-6, np.hypot(d[:, 0], d[:, 1]))[:, None]
        n = np.stack([-d[:, 1], d[:, 0]], -1)
        for side in (-1, 1):
            depth = (s.lay.uniform(0.6, 1.3, len(at)) * lengths if s.style != "urban"
                     else s.lay.uniform(10, 30, len(at)) * s.ppm)
            off = width / 2 + s.lay.uniform(*back, len(at)) * s.ppm + depth / 2
            centres = line[at] + d * (lengths / 2)[:, None] + side * n * off[:, None]
            near_tile = (np.abs(centres - [w / 2, h / 2]) < [w / 2 + 30, h / 2 + 30]).all(1)
            keep = (s.lay.random(len(at)) < dense) & near_tile
            angles = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
            for i in np.flatnonzero(keep):
                _building(s, ((centres[i, 0], centres[i, 1]), (lengths[i] * 0.92, depth[i]), angles[i]))
    for _ in range(int(s.lay.integers(0, 4 if s.style == "rural" else 2))):
        length = s.lay.uniform(*size) * s.ppm
        box = ((s.lay.uniform(0, w), s.lay.uniform(0, h)), (length, length * s.lay.uniform(0.4, 1.0)),
               s.lay.uniform(0, 180))
        _building(s, box)


_BLOCKED = np.zeros(256, bool)
_BLOCKED[[ROAD, WATER, BUILDING]] = True


def _free(s: AerialScene, box: Box) -> bool:
    """Whether a footprint stays off roads, water and other buildings (checked at corners, edge midpoints, centre)."""
    h, w = s.canvas.shape
    corners = cv2.boxPoints(box)
    probe = np.concatenate([corners, 0.5 * (corners + corners[[1, 2, 3, 0]]), [box[0]]])
    inside = (probe[:, 0] >= 0) & (probe[:, 0] < w) & (probe[:, 1] >= 0) & (probe[:, 1] < h)
    if not inside.any():
        return False
    probe = probe[inside].astype(int)
    return not _BLOCKED[s.canvas.mask[probe[:, 1], probe[:, 0]]].any()


def _building(s: AerialScene, box: Box) -> None:
    """A footprint (with an optional wing making an L) if it is free: shadow, then roof with its shading and details."""
    if not _free(s, box):
        return
    parts = [box]
    if s.lay.random() < 0.25:
        (cx, cy), (length, depth), angle = box
        a = np.deg2rad(angle)
        wing = (length * s.lay.uniform(0.3, 0.5), depth * s.lay.uniform(0.6, 1.2))
        shift = np.array([np.cos(a), np.sin(a)]) * (length - wing[0]) / 2 * (1 if s.lay.random() < 0.5 else -1)
        shift += np.array([-np.sin(a), np.cos(a)]) * (depth + wing[1]) / 2 * 0.95
        wing_box = ((cx + shift[0], cy + shift[1]), wing, angle)
        if _free(s, wing_box):
            parts.append(wing_box)
    height = s.lay.uniform(*{"urban": (8, 45), "suburban": (4, 10), "rural": (4, 12)}[s.style])
    roof = s.look("roof", 0.1)
    kind = int(s.lay.choice(3, p=[0.45, 0.35, 0.2]))  # flat, gable, hip
    for part in parts:
        corners = cv2.boxPoints(part)
        hull = cv2.convexHull(np.concatenate([corners, corners + s.shadow_shift(height)]).astype(np.float32))
        s.canvas.fill([to_polys(hull[:, 0])], shade=s.app.uniform(0.35, 0.65))
    for part in parts:
        _roof(s, part, roof, kind)
    if s.style == "suburban" and s.lay.random() < 0.15:
        _pool(s, box)


def _pool(s: AerialScene, box: Box) -> None:
    """A swimming pool in the garden behind a house (if that spot is free)."""
    (cx, cy), (length, depth), angle = box
    a = np.deg2rad(angle)
    n = np.array([-np.sin(a), np.cos(a)]) * (1 if s.lay.random() < 0.5 else -1)
    size = (s.lay.uniform(5, 12) * s.ppm, s.lay.uniform(3, 6) * s.ppm)
    centre = np.array([cx, cy]) + n * (depth / 2 + size[1] / 2 + s.lay.uniform(2, 6) * s.ppm)
    pool = ((float(centre[0]), float(centre[1])), size, angle)
    if _free(s, pool):
        blue = s.canvas.add_look(hsv_colour(s.app, (180, 205), (0.4, 0.9), (0.6, 0.95)), (0.0, 0.05, 0.0, 0.05))
        s.canvas.fill([to_polys(cv2.boxPoints(pool))], WATER, blue, shade=1.0)


def _roof(s: AerialScene, box: Box, roof: int, kind: int) -> None:
    """Paint a roof: flat (rim and rooftop units), gable (two pitches) or hip (four); sometimes solar panels."""
    (cx, cy), (length, depth), angle = box
    corners = to_polys(cv2.boxPoints(box))
    s.canvas.fill([corners], BUILDING, roof, shade=1.0)
    a = np.deg2rad(angle)
    d, n, c = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)]), np.array([cx, cy])
    if kind == 0:
        rim = s.variant(roof, s.app.uniform(0.6, 1.3))
        s.canvas.draw(lambda img, v: cv2.polylines(img, [corners], True, v, 1), look=rim)
        for _ in range(int(s.lay.integers(0, 5))):
            p = c + d * length * s.lay.uniform(-0.35, 0.35) + n * depth * s.lay.uniform(-0.35, 0.35)
            size = (s.lay.uniform(1, 4) * s.ppm, s.lay.uniform(1, 4) * s.ppm)
            unit = to_polys(cv2.boxPoints((tuple(p), size, angle)))
            s.canvas.fill([unit], BUILDING, s.variant(roof, s.app.uniform(0.5, 1.5)), shade=1.0)
    else:
        lit = s.app.random() < 0.5
        dark, light = s.variant(roof, s.app.uniform(0.55, 0.8)), s.variant(roof, s.app.uniform(1.0, 1.25))
        hl, hd = d * length / 2, n * depth / 2
        ridge = (depth / 2) if kind == 2 else 0.0
        r0, r1 = c - d * max(0.0, length / 2 - ridge), c + d * max(0.0, length / 2 - ridge)
        s.canvas.fill([to_polys(np.array([c - hl - hd, c + hl - hd, r1, r0]))], look=light if lit else dark)
        s.canvas.fill([to_polys(np.array([c - hl + hd, c + hl + hd, r1, r0]))], look=dark if lit else light)
        if kind == 2:  # hip: the two end triangles in between shades
            mid = s.variant(roof, s.app.uniform(0.7, 1.1))
            s.canvas.fill([to_polys(np.array([c - hl - hd, c - hl + hd, r0])),
                           to_polys(np.array([c + hl - hd, c + hl + hd, r1]))], look=mid)
    if s.lay.random() < 0.2:  # solar panels: a grid of dark blue modules on one side of the roof
        k = (int(s.lay.integers(2, 6)), int(s.lay.integers(1, 4)))
        cell = (length * 0.6 / k[0], depth * 0.35 / k[1])
        gx, gy = np.meshgrid(np.arange(k[0]) - (k[0] - 1) / 2, np.arange(k[1]) + 0.5)
        centres = c + (gx.reshape(-1, 1) * cell[0]) * d + (gy.reshape(-1, 1) * cell[1] - depth * 0.02) * n
        m = len(centres)
        panels = to_polys(box_corners(centres, np.full(m, cell[0] * 0.85), np.full(m, cell[1] * 0.8), np.full(m, a)))
        s.canvas.fill(panels, BUILDING, s.canvas.add_look(hsv_colour(s.app, (210, 240), (0.3, 0.7), (0.1, 0.35))))


def place_trees(s: AerialScene) -> None:
    """Street trees along roads, and trees scattered over gardens and fields, each with a shadow."""
    h, w = s.canvas.shape
    spots: List[Tuple[float, float]] = []
    for pts, width in s.roads:
        if s.lay.random() < {"urban": 0.4, "suburban": 0.5, "rural": 0.3}[s.style]:
            dense = resample_polyline(pts, s.lay.uniform(7, 16) * s.ppm)
            if len(dense) < 2:
                continue
            d = np.diff(dense, axis=0, append=dense[-1:] + (dense[-1:] - dense[-2:-1]))
            n = np.stack([-d[:, 1], d[:, 0]], -1) / np.maximum(1e-6, np.hypot(d[:, 0], d[:, 1]))[:, None]
            side = 1 if s.lay.random() < 0.5 else -1
            row = dense + side * n * (width / 2 + s.lay.uniform(1.0, 4.0) * s.ppm)
            spots += [tuple(p) for p in row if s.lay.random() < 0.85]
    scattered = s.lay.poisson({"urban": 6, "suburban": 20, "rural": 14}[s.style] * s.lay.uniform(0.2, 1.8))
    spots += [(s.lay.uniform(0, w), s.lay.uniform(0, h)) for _ in range(scattered)]
    if spots:
        _trees(s, np.asarray(spots, np.float64))


def _trees(s: AerialScene, spots: np.ndarray) -> None:
    """Draw trees at ``spots`` (K, 2): shadow, irregular crown, and a lighter cap on the sunlit side."""
    k = len(spots)
    r = s.lay.uniform(1.5, 6.0, k) * s.ppm
    crowns = to_polys(blob_outlines(s.lay, spots, r, s.lay.uniform(0.1, 0.35)))
    sun = np.asarray(s.sun) / max(1e-6, float(np.hypot(*s.sun)))
    caps = to_polys(blob_outlines(s.lay, spots - 0.3 * r[:, None] * sun, 0.4 * r, 0.2, 10))
    heights = s.app.uniform(5.0, 15.0, k)
    shadows = crowns + to_polys(np.asarray(s.sun)[None] * (heights * s.ppm)[:, None])[:, None, :]
    shade = s.app.uniform(0.4, 0.7)
    for i in range(k):
        s.canvas.fill([shadows[i]], shade=shade)
        leaves = s.look("tree", 0.2)
        s.canvas.fill([crowns[i]], TREE, leaves, shade=1.0)
        s.canvas.fill([caps[i]], TREE, s.variant(leaves, s.app.uniform(1.1, 1.4)))
