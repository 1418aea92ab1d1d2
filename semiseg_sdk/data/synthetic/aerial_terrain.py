"""The land of an aerial tile: bare ground, fields with crop rows, meadows, forest patches, rivers and ponds."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import cv2
import numpy as np

from .aerial_looks import BARE, LOOKS, LOW_VEGETATION, TREE, WATER
from .canvas import Canvas, to_polys
from .textures import fractal_noise, jitter_colour, value_noise

STYLES = ("urban", "suburban", "rural")


@dataclass
class AerialScene:
    """Shared state of one tile: canvas, random streams, scale (px per metre), style, sun and the road network."""

    canvas: Canvas
    lay: np.random.Generator
    app: np.random.Generator
    ppm: float
    style: str
    sun: Tuple[float, float]
    roads: List[Tuple[np.ndarray, float]] = field(default_factory=list)

    def look(self, kind: str, jitter: float = 0.0) -> int:
        """A new look drawn from the appearance distribution ``kind``."""
        colour, texture = LOOKS[kind].sample(self.app)
        if jitter:
            colour = jitter_colour(self.app, colour, jitter)
        return self.canvas.add_look(colour, texture)

    def variant(self, look: int, factor: float) -> int:
        """A darker or lighter copy of ``look`` (shaded roof side, crop rows, tree highlights)."""
        return self.canvas.add_look(tuple(min(255.0, c * factor) for c in self.canvas.colours[look]),
                                    self.canvas.textures[look])

    def shadow_shift(self, height_m: float) -> np.ndarray:
        """Pixel offset of the shadow of something ``height_m`` tall."""
        return np.asarray(self.sun) * height_m * self.ppm


def make_scene(h: int, w: int, lay: np.random.Generator, app: np.random.Generator) -> AerialScene:
    """Scale, style and sun of a tile, and a canvas covered with bare ground."""
    colour, texture = LOOKS["bare"].sample(app)
    canvas = Canvas(h, w, BARE, colour, texture)
    style = STYLES[int(lay.choice(3, p=[0.35, 0.4, 0.25]))]
    angle, length = app.uniform(0, 2 * np.pi), app.uniform(0.3, 1.2)
    return AerialScene(canvas, lay, app, lay.uniform(1.0, 3.0) * w / 192.0, style,
                       (length * np.cos(angle), length * np.sin(angle)))


def _region(s: AerialScene, poly: np.ndarray) -> np.ndarray:
    """Boolean image of a filled polygon."""
    out = np.zeros(s.canvas.shape, np.uint8)
    cv2.fillPoly(out, [poly], 1)
    return out.astype(bool)


def draw_fields(s: AerialScene) -> None:
    """Rotated plots of crops or ploughed earth, often with rows in a darker or lighter shade."""
    h, w = s.canvas.shape
    count = {"urban": (0, 2), "suburban": (0, 4), "rural": (2, 7)}[s.style]
    for _ in range(int(s.lay.integers(*count))):
        centre = (s.lay.uniform(-0.1, 1.1) * w, s.lay.uniform(-0.1, 1.1) * h)
        size = (s.lay.uniform(25, 160) * s.ppm, s.lay.uniform(20, 110) * s.ppm)
        angle = s.lay.uniform(0, 180)
        corners = cv2.boxPoints((centre, size, angle)) * s.lay.uniform(0.93, 1.07, (4, 1))
        poly = to_polys(corners)
        crop = s.lay.random() < 0.65
        look = s.look("meadow" if crop else "bare", 0.1)
        s.canvas.fill([poly], LOW_VEGETATION if crop else BARE, look)
        if s.lay.random() < 0.6:
            period = s.lay.uniform(2.5, 8.0) * w / 192.0
            theta = np.deg2rad(angle + (90 if s.lay.random() < 0.5 else 0))
            ys, xs = np.ogrid[0:h, 0:w]
            along = (xs * np.float32(np.cos(theta)) + ys * np.float32(np.sin(theta))).astype(np.float32)
            rows = np.mod(along, np.float32(period)) < period * s.lay.uniform(0.3, 0.6)
            s.canvas.look[rows & _region(s, poly)] = s.variant(look, s.app.uniform(0.6, 1.3))
        if s.lay.random() < 0.3:  # a hedgerow along the field's edge
            thick = max(1, int(s.lay.uniform(1.5, 4.0) * s.ppm))
            s.canvas.draw(lambda img, v: cv2.polylines(img, [poly], True, v, thick), TREE, s.look("tree", 0.2))
    if s.style != "rural" and s.lay.random() < 0.12:
        _sports_field(s)


def _sports_field(s: AerialScene) -> None:
    """A pitch: bright lawn with white lines (boundary, half-way line, centre circle)."""
    h, w = s.canvas.shape
    centre = (s.lay.uniform(0.2, 0.8) * w, s.lay.uniform(0.2, 0.8) * h)
    size, angle = (s.lay.uniform(60, 100) * s.ppm, s.lay.uniform(40, 65) * s.ppm), s.lay.uniform(0, 180)
    outer = to_polys(cv2.boxPoints((centre, size, angle)))
    inner = to_polys(cv2.boxPoints((centre, (size[0] * 0.9, size[1] * 0.85), angle)))
    s.canvas.fill([outer], LOW_VEGETATION, s.look("meadow"))
    chalk = s.canvas.add_look((235, 235, 230), (0.05, 0.0, 0.0, 0.0))
    a = np.deg2rad(angle)
    half = np.array([-np.sin(a), np.cos(a)]) * size[1] * 0.425
    mid = to_polys(np.array([np.asarray(centre) - half, np.asarray(centre) + half]))
    radius = max(1, int(size[1] * 0.12))
    c = (int(centre[0]), int(centre[1]))
    s.canvas.draw(lambda img, v: (cv2.polylines(img, [inner, mid], True, v, 1), cv2.circle(img, c, radius, v, 1)),
                  look=chalk)


def draw_tracks(s: AerialScene) -> None:
    """Unpaved farm tracks: long narrow strips of bare ground that look much like small roads."""
    h, w = s.canvas.shape
    p = {"urban": 0.05, "suburban": 0.25, "rural": 0.5}[s.style]
    for _ in range(2):
        if s.lay.random() < p:
            pts = meander(s.lay, h, w, step=6.0 * w / 192.0, wiggle=s.lay.uniform(0.0, 0.1))
            thick = max(2, int(s.lay.uniform(2.5, 5.0) * s.ppm))
            s.canvas.draw(lambda img, v: cv2.polylines(img, [pts], False, v, thick), BARE, s.look("bare", 0.2))


def draw_meadows(s: AerialScene) -> None:
    """Irregular grassland from thresholded fractal noise, with bare patches inside."""
    h, w = s.canvas.shape
    cover = {"urban": 0.25, "suburban": 0.45, "rural": 0.6}[s.style]
    noise = fractal_noise(s.lay, (h, w), s.lay.uniform(20, 60) * w / 192.0, octaves=3)
    grass = noise > s.lay.uniform(-0.35, 0.35) + (0.5 - cover)
    s.canvas.mask[grass] = LOW_VEGETATION
    s.canvas.look[grass] = s.look("meadow")
    spots = grass & (value_noise(s.lay, (h, w), s.lay.uniform(6, 15) * w / 192.0) > s.lay.uniform(0.45, 0.8))
    s.canvas.mask[spots] = BARE
    s.canvas.look[spots] = s.look("bare", 0.2)


def blob(s: AerialScene, centre, radii, roughness: float) -> np.ndarray:
    """Boolean image of an irregular blob: an ellipse whose edge is pushed in and out by noise."""
    h, w = s.canvas.shape
    ys, xs = np.ogrid[0:h, 0:w]
    d = ((xs - centre[0]) / radii[0]) ** 2 + ((ys - centre[1]) / radii[1]) ** 2
    rough = value_noise(s.lay, (h, w), max(2.0, 0.4 * min(radii)))
    return (d + roughness * rough) < 1.0


def draw_forest(s: AerialScene) -> None:
    """Patches of woodland: a dense canopy textured at crown scale, with a shadow along its sunlit edge."""
    h, w = s.canvas.shape
    p = {"urban": 0.15, "suburban": 0.35, "rural": 0.6}[s.style]
    for _ in range(int(s.lay.integers(1, 3))):
        if s.lay.random() > p:
            continue
        centre = (s.lay.uniform(0, w), s.lay.uniform(0, h))
        radii = (s.lay.uniform(20, 90) * s.ppm, s.lay.uniform(20, 90) * s.ppm)
        wood = blob(s, centre, radii, s.lay.uniform(0.4, 1.0))
        s.canvas.mask[wood] = TREE
        look = s.look("tree")
        crowns = value_noise(s.app, (h, w), s.app.uniform(2.5, 5.0) * s.ppm)
        s.canvas.look[wood] = look
        s.canvas.look[wood & (crowns < s.app.uniform(-0.5, -0.1))] = s.variant(look, s.app.uniform(0.4, 0.7))
        s.canvas.look[wood & (crowns > s.app.uniform(0.3, 0.6))] = s.variant(look, s.app.uniform(1.15, 1.5))
        dx, dy = s.shadow_shift(s.app.uniform(8, 20))
        shifted = cv2.warpAffine(wood.astype(np.uint8), np.float32([[1, 0, dx], [0, 1, dy]]), (w, h)).astype(bool)
        s.canvas.shade[shifted & ~wood] = np.float32(s.app.uniform(0.45, 0.7))


def draw_water(s: AerialScene) -> None:
    """A meandering river with banks, and ponds."""
    h, w = s.canvas.shape
    p_river = {"urban": 0.25, "suburban": 0.3, "rural": 0.4}[s.style]
    if s.lay.random() < p_river:
        pts = meander(s.lay, h, w, step=4.0 * w / 192.0, wiggle=s.lay.uniform(0.02, 0.12))
        width = max(3, int(s.lay.uniform(5, 40) * s.ppm))
        if s.lay.random() < 0.6:
            bank_cls = BARE if s.lay.random() < 0.5 else LOW_VEGETATION
            bank, bank_w = s.look("bare" if bank_cls == BARE else "meadow", 0.2), width + int(s.lay.integers(2, 8))
            s.canvas.draw(lambda img, v: cv2.polylines(img, [pts], False, v, bank_w), bank_cls, bank)
        s.canvas.draw(lambda img, v: cv2.polylines(img, [pts], False, v, width), WATER, s.look("water"))
    for _ in range(int(s.lay.integers(0, 3))):
        if s.lay.random() < 0.35:
            radii = (s.lay.uniform(6, 45) * s.ppm, s.lay.uniform(6, 45) * s.ppm)
            pond = blob(s, (s.lay.uniform(0, w), s.lay.uniform(0, h)), radii, s.lay.uniform(0.2, 0.6))
            s.canvas.mask[pond] = WATER
            s.canvas.look[pond] = s.look("water")


def meander(rng: np.random.Generator, h: int, w: int, step: float, wiggle: float) -> np.ndarray:
    """An int32 polyline (N, 2) entering at one edge of the tile and wandering across it with smooth turns."""
    edge = int(rng.integers(4))
    start = [(rng.uniform(0, w), -5.0), (w + 5.0, rng.uniform(0, h)), (rng.uniform(0, w), h + 5.0),
             (-5.0, rng.uniform(0, h))][edge]
    heading = np.pi / 2 + edge * np.pi / 2 + rng.uniform(-0.6, 0.6)
    n = int(3 * (h + w) / step)
    turn = np.cumsum(rng.normal(0.0, wiggle, n))
    turn = np.clip(turn, -1.2, 1.2)
    angles = heading + turn
    pts = np.asarray(start) + np.cumsum(step * np.stack([np.cos(angles), np.sin(angles)], -1), 0)
    inside = (pts[:, 0] > -w) & (pts[:, 0] < 2 * w) & (pts[:, 1] > -h) & (pts[:, 1] < 2 * h)
    pts = pts[: max(2, int(np.argmin(inside)) if not inside.all() else n)]
    return to_polys(np.concatenate([[start], pts]))
