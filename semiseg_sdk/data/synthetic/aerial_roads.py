"""Roads of an aerial tile: a street grid (urban), winding roads with cul-de-sacs (suburban, rural), lane markings,
parking lots, and cars along the lanes and in the lots."""
from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np

from .aerial_looks import CAR, ROAD
from .aerial_terrain import AerialScene, meander
from .canvas import box_corners, to_polys


def plan_roads(s: AerialScene) -> List[Tuple[np.ndarray, float]]:
    """Centre lines (int32 (N, 2) pixels) and widths (pixels) of the tile's roads, by style."""
    h, w = s.canvas.shape
    roads: List[Tuple[np.ndarray, float]] = []
    if s.style == "urban":
        theta = s.lay.uniform(0, np.pi)
        for d in (np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])):
            n = np.array([-d[1], d[0]])
            gap = s.lay.uniform(45, 110) * s.ppm
            for k in np.arange(-2.0 * max(h, w), 2.0 * max(h, w), gap) + s.lay.uniform(0, gap):
                if s.lay.random() < 0.2:
                    continue
                mid = np.array([w / 2, h / 2]) + n * k
                ends = np.stack([mid - 2 * max(h, w) * d, mid + 2 * max(h, w) * d])
                if _crosses(ends, h, w):
                    roads.append((to_polys(np.linspace(ends[0], ends[1], 9)), s.lay.uniform(7, 16) * s.ppm))
    else:
        count = (1, 4) if s.style == "suburban" else (0, 3)
        for _ in range(int(s.lay.integers(*count))):
            pts = meander(s.lay, h, w, step=6.0 * w / 192.0, wiggle=s.lay.uniform(0.0, 0.08))
            width = s.lay.uniform(6, 12) if s.style == "suburban" else s.lay.uniform(4, 9)
            roads.append((pts, width * s.ppm))
        for pts, width in list(roads) if s.style == "suburban" else []:
            for _ in range(int(s.lay.integers(0, 3))):
                roads.append(_cul_de_sac(s, pts, width))
    return roads


def _crosses(ends: np.ndarray, h: int, w: int) -> bool:
    """Whether the segment between two far points passes through the tile (sampled)."""
    pts = np.linspace(ends[0], ends[1], 200)
    return bool(((pts[:, 0] > 0) & (pts[:, 0] < w) & (pts[:, 1] > 0) & (pts[:, 1] < h)).any())


def _cul_de_sac(s: AerialScene, pts: np.ndarray, width: float) -> Tuple[np.ndarray, float]:
    """A short dead-end branch leaving a road at a right angle."""
    i = int(s.lay.integers(1, len(pts)))
    d = (pts[i] - pts[i - 1]).astype(np.float64)
    n = np.array([-d[1], d[0]]) / max(1e-6, float(np.hypot(*d))) * (1 if s.lay.random() < 0.5 else -1)
    length = s.lay.uniform(25, 70) * s.ppm
    end = pts[i] + n * length
    return to_polys(np.linspace(pts[i], end, 5)), 0.7 * width


def draw_roads(s: AerialScene) -> None:
    """Pave the planned roads (with pavements in town) and paint dashed centre lines on the wide ones."""
    s.roads = plan_roads(s)
    asphalt, kerb = s.look("road"), s.look("road", 0.3)
    paint = s.look("marking")
    pavement = s.style == "urban" and s.lay.random() < 0.6
    for pts, width in s.roads:
        if pavement:
            wide = int(width + 2 * s.lay.uniform(1.5, 3.5) * s.ppm)
            s.canvas.draw(lambda img, v: cv2.polylines(img, [pts], False, v, wide), ROAD, kerb)
    for pts, width in s.roads:
        s.canvas.draw(lambda img, v: cv2.polylines(img, [pts], False, v, max(2, int(width))), ROAD, asphalt)
    for pts, width in s.roads:
        if width > 6.5 * s.ppm and s.lay.random() < 0.7:
            s.canvas.draw(lambda img, v: cv2.polylines(img, _dashes(pts, 3.0 * s.ppm, 9.0 * s.ppm), False, v, 1),
                          look=paint)


def _dashes(pts: np.ndarray, dash: float, period: float) -> List[np.ndarray]:
    """Two-point polylines, one per dash of a dashed line along ``pts``."""
    pts = pts.astype(np.float64)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    starts = np.arange(0.0, max(0.0, arc[-1] - dash), period)
    ends = np.stack([starts, starts + dash], -1).ravel()
    xy = np.stack([np.interp(ends, arc, pts[:, 0]), np.interp(ends, arc, pts[:, 1])], -1)
    return list(to_polys(xy.reshape(-1, 2, 2)))


def resample_polyline(pts: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` pixels along a polyline."""
    pts = pts.astype(np.float64)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    at = np.arange(0.0, arc[-1], step)
    return np.stack([np.interp(at, arc, pts[:, 0]), np.interp(at, arc, pts[:, 1])], -1)


def draw_parking(s: AerialScene) -> List[Tuple[float, float, float]]:
    """Paved lots beside roads with painted stalls; returns car slots (x, y, angle in degrees)."""
    slots: List[Tuple[float, float, float]] = []
    if s.style == "rural" or not s.roads:
        return slots
    for _ in range(int(s.lay.integers(0, 3))):
        pts, width = s.roads[int(s.lay.integers(len(s.roads)))]
        dense = resample_polyline(pts, 2.0)
        if len(dense) < 3:
            continue
        i = int(s.lay.integers(1, len(dense)))
        d = dense[i] - dense[i - 1]
        d = d / max(1e-6, float(np.hypot(*d)))
        n = np.array([-d[1], d[0]]) * (1 if s.lay.random() < 0.5 else -1)
        rows, cols = int(s.lay.integers(1, 4)), int(s.lay.integers(3, 12))
        stall_w, stall_l = 2.6 * s.ppm, 5.2 * s.ppm
        depth, length = rows * (stall_l + 3.0 * s.ppm) + 2.0 * s.ppm, cols * stall_w
        centre = dense[i] + n * (width / 2 + depth / 2)
        angle = float(np.degrees(np.arctan2(d[1], d[0])))
        s.canvas.fill([to_polys(cv2.boxPoints((tuple(centre), (length, depth), angle)))], ROAD, s.look("road", 0.2))
        for r in range(rows):
            row_c = centre - n * depth / 2 + n * (1.0 * s.ppm + (r + 0.5) * (stall_l + 3.0 * s.ppm))
            for c in range(cols):
                p = row_c + d * ((c + 0.5) * stall_w - length / 2)
                if s.lay.random() < 0.7:
                    slots.append((p[0], p[1], angle + 90.0 + 180.0 * float(s.lay.random() < 0.5)))
    return slots


def place_cars(s: AerialScene, slots: List[Tuple[float, float, float]]) -> None:
    """Cars driving along the lanes of every road and parked in the lot slots."""
    density = {"urban": 0.045, "suburban": 0.02, "rural": 0.008}[s.style] * s.lay.uniform(0.3, 1.7) / s.ppm
    for pts, width in s.roads:
        dense = resample_polyline(pts, 2.0)
        if len(dense) < 3:
            continue
        for j in s.lay.choice(len(dense) - 1, min(len(dense) - 1, s.lay.poisson(density * 2.0 * len(dense))),
                              replace=False):
            d = dense[j + 1] - dense[j]
            n = np.array([-d[1], d[0]]) / max(1e-6, float(np.hypot(*d)))
            lane = 1 if s.lay.random() < 0.5 else -1
            p = dense[j] + n * lane * width * s.lay.uniform(0.15, 0.3)
            slots.append((p[0], p[1], float(np.degrees(np.arctan2(d[1], d[0]))) + (180.0 if lane < 0 else 0.0)))
    if slots:
        _cars(s, np.asarray(slots, np.float64))


def _cars(s: AerialScene, slots: np.ndarray) -> None:
    """Draw cars at ``slots`` (K, 3: x, y, degrees): shadow, body, windscreen and rear window (not on vans)."""
    k = len(slots)
    van = s.lay.random(k) < 0.1
    length = np.where(van, s.lay.uniform(5.5, 7.0, k), s.lay.uniform(3.9, 5.0, k)) * s.ppm
    width = np.where(van, s.lay.uniform(2.0, 2.3, k), s.lay.uniform(1.65, 1.95, k)) * s.ppm
    centres, angles = slots[:, :2], np.deg2rad(slots[:, 2])
    ahead = np.stack([np.cos(angles), np.sin(angles)], -1)
    body = to_polys(box_corners(centres, length, width, angles))
    shadow = to_polys(box_corners(centres + s.shadow_shift(1.5)[None], length, width, angles))
    front = to_polys(box_corners(centres + ahead * (0.17 * length)[:, None], 0.16 * length, 0.85 * width, angles))
    rear = to_polys(box_corners(centres - ahead * (0.3 * length)[:, None], 0.1 * length, 0.8 * width, angles))
    shade = s.app.uniform(0.4, 0.7)
    glass = s.look("glass")
    for i in range(k):
        s.canvas.fill([shadow[i]], shade=shade)
        s.canvas.fill([body[i]], CAR, s.look("car"), shade=1.0)
        if not van[i]:
            s.canvas.fill([front[i], rear[i]], look=glass)
