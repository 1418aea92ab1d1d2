"""The stage of a driving scene: camera and road, sky, ground, far skyline, road with markings, sidewalks, shadows."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

import cv2
import numpy as np

from .canvas import Canvas, to_polys
from .driving_camera import Camera, Road, ground_band
from .driving_looks import BUILDING, LOOKS, MIMIC_RATE, MIMICS, PATTERNS, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION
from .look_spec import pick_pattern
from .textures import jitter_colour

STYLES = ("city", "suburb", "rural")
FAR = 400.0  # depth (m) given to the far skyline


@dataclass
class Side:
    """What lies along one side of the road: style, sidewalk width and the grass verge beyond it (metres)."""

    sign: int
    style: str
    sidewalk: float
    verge: float

    def edge(self, road: Road) -> float:
        """Lateral offset from the road centre of the outer edge of sidewalk and verge."""
        return self.sign * (road.width / 2 + self.sidewalk + self.verge)


@dataclass
class DrivingScene:
    """Everything the drawing steps share: the canvas, geometry, the two sides, the random streams and the scene's
    appearance swaps (kind -> the kind whose look it wears, see ``driving_looks.MIMICS``)."""

    canvas: Canvas
    cam: Camera
    road: Road
    sides: tuple
    lay: np.random.Generator
    app: np.random.Generator
    swaps: Dict[str, str] = field(default_factory=dict)

    def look(self, kind: str, jitter: float = 0.0, emit: float = 0.0) -> int:
        """A new look drawn from the appearance distribution ``kind`` (with a surface pattern for some kinds), or
        from the distribution of the kind it is swapped for in this scene."""
        kind = self.swaps.get(kind, kind)
        colour, texture = LOOKS[kind].sample(self.app)
        if jitter:
            colour = jitter_colour(self.app, colour, jitter)
        pattern = pick_pattern(self.app, PATTERNS[kind]) if kind in PATTERNS else (0, 0.0)
        return self.canvas.add_look(colour, texture, emit, pattern)


def make_scene(h: int, w: int, lay: np.random.Generator, app: np.random.Generator,
               swap_rate: float = MIMIC_RATE) -> DrivingScene:
    """Draw camera, road and side parameters, and a canvas filled with sky above the horizon and terrain below;
    ``swap_rate``: probability of each look swap of ``MIMICS`` (see :func:`draw_swaps`)."""
    focal = w * lay.uniform(0.5, 0.95)
    cam = Camera(focal, w * (0.5 + lay.uniform(-0.15, 0.15)), h * lay.uniform(0.28, 0.55), lay.uniform(1.2, 1.9))
    width = lay.uniform(5.5, 17.0)
    lanes = max(1, int(width / 3.1))
    lane = (int(lay.integers(lanes)) + 0.5) * width / lanes - width / 2 + lay.normal(0.0, 0.25)
    near = focal * cam.height / (1.5 * h - cam.horizon)
    road = Road(-lane, lay.normal(0.0, 0.05), lay.normal(0.0, 0.003), width, lanes, near, 300.0)
    sides = []
    for sign in (-1, 1):
        style = STYLES[int(lay.choice(3, p=[0.45, 0.35, 0.2]))]
        walk = 0.0 if (style == "rural" and lay.random() < 0.7) or lay.random() < 0.08 else lay.uniform(1.2, 5.0)
        verge = 0.0 if style == "city" else lay.uniform(0.5, 8.0)
        sides.append(Side(sign, style, walk, verge))
    sky_colour, sky_tex = LOOKS["sky"].sample(app)
    canvas = Canvas(h, w, SKY, sky_colour, sky_tex, depth=1e4)
    scene = DrivingScene(canvas, cam, road, tuple(sides), lay, app, draw_swaps(app, swap_rate))
    top = int(np.ceil(cam.horizon))
    rows = np.arange(h, dtype=np.float32)
    canvas.fill(to_polys(np.array([[[-1, top], [w, top], [w, h], [-1, h]]])), TERRAIN, scene.look("terrain"))
    canvas.depth[:] = cam.ground_depth(rows)[:, None]
    return scene


def draw_swaps(app: np.random.Generator, rate: float) -> Dict[str, str]:
    """The scene's appearance swaps: each kind of ``MIMICS`` wears one of its listed looks with probability ``rate``."""
    swaps = {}
    for kind, others in MIMICS.items():
        if app.random() < rate:
            swaps[kind] = others[int(app.integers(len(others)))]
    return swaps


def draw_skyline(s: DrivingScene) -> None:
    """Far buildings and tree lines standing on the horizon, hazy and small."""
    h, w = s.canvas.shape
    u, base = -2.0, s.cam.horizon + 1.5
    rural = sum(side.style == "rural" for side in s.sides) / 2.0
    while u < w:
        seg = s.lay.uniform(0.02, 0.18) * w
        weights = np.array([0.55 - 0.45 * rural, 0.35 + 0.3 * rural, 0.2])
        kind = s.lay.choice(3, p=weights / weights.sum())
        if kind == 0:
            top = base - s.lay.uniform(0.02, 0.25) * h
            poly = np.array([[[u, base], [u + seg, base], [u + seg, top], [u, top]]])
            s.canvas.fill(to_polys(poly), BUILDING, s.look("distant", 0.15), FAR)
        elif kind == 1:
            xs = np.linspace(u, u + seg, 7)
            tops = base - s.lay.uniform(0.01, 0.09) * h - s.lay.uniform(0, 0.03 * h, 7)
            poly = np.concatenate([np.stack([xs, tops], -1), [[u + seg, base], [u, base]]])[None]
            s.canvas.fill(to_polys(poly), VEGETATION, s.look("vegetation", 0.1), FAR)
        u += seg


def draw_sidewalks(s: DrivingScene) -> None:
    """Sidewalk strips with kerbs along both sides (where the side has one), and occasional paving joints."""
    half = s.road.width / 2
    for side in s.sides:
        if side.sidewalk <= 0:
            continue
        a, b = sorted((side.sign * half, side.sign * (half + side.sidewalk)))
        walk = s.look("sidewalk")
        s.canvas.fill(ground_band(s.cam, s.road, a, b), SIDEWALK, walk)
        k0, k1 = sorted((side.sign * half, side.sign * (half + s.lay.uniform(0.15, 0.3))))
        s.canvas.fill(ground_band(s.cam, s.road, k0, k1), look=s.look("sidewalk", 0.3))
        if s.lay.random() < 0.4:
            z = np.arange(s.road.near, 80.0, s.lay.uniform(1.0, 3.0))
            _joints(s, a, b, z, 0.05, s.canvas.add_look(jitter_colour(s.app, s.canvas.colours[walk], 0.25)))


def _joints(s: DrivingScene, a: float, b: float, z: np.ndarray, depth: float, look: int) -> None:
    """Thin cross strips on the ground from lateral ``a`` to ``b`` at depths ``z`` (paving joints, zebra bars)."""
    _ground_quads(s, np.full_like(z, a), np.full_like(z, b), z, z + depth, None, look)


def _ground_quads(s: DrivingScene, xa, xb, z0, z1, cls, look) -> None:
    """Quads on the ground between lateral offsets xa..xb (relative to the road centre) and depths z0..z1."""
    c0, c1 = s.road.centre(z0), s.road.centre(z1)
    corners = [s.cam.project(c0 + xa, 0.0, z0), s.cam.project(c0 + xb, 0.0, z0),
               s.cam.project(c1 + xb, 0.0, z1), s.cam.project(c1 + xa, 0.0, z1)]
    pts = np.stack([np.stack(c, -1) for c in corners], 1)
    s.canvas.fill(to_polys(pts), cls, look)


def draw_road(s: DrivingScene) -> None:
    """Asphalt with repair patches, dashed lane lines, optional edge lines and a zebra crossing."""
    half, lanes = s.road.width / 2, s.road.lanes
    road_look = s.look("road")
    s.canvas.fill(ground_band(s.cam, s.road, -half, half), ROAD, road_look)
    for _ in range(int(s.lay.integers(0, 4))):
        xa = s.lay.uniform(-half, half - 1.0)
        z0 = s.lay.uniform(s.road.near, 40.0)
        _ground_quads(s, np.array([xa]), np.array([xa + s.lay.uniform(1.0, 4.0)]), np.array([z0]),
                      np.array([z0 + s.lay.uniform(2.0, 12.0)]), None,
                      s.canvas.add_look(jitter_colour(s.app, s.canvas.colours[road_look], 0.3)))
    paint = s.look("marking")
    lw = s.lay.uniform(0.1, 0.2)
    period, dash = s.lay.uniform(6.0, 12.0), s.lay.uniform(1.5, 4.0)
    for i in range(1, lanes):
        x = -half + i * s.road.width / lanes
        z0 = np.arange(s.road.near + s.lay.uniform(0, period), 150.0, period)
        _ground_quads(s, np.full_like(z0, x - lw / 2), np.full_like(z0, x + lw / 2), z0, z0 + dash, None, paint)
    if s.lay.random() < 0.6:
        for x in (-half + 0.3, half - 0.3 - lw):
            s.canvas.fill(ground_band(s.cam, s.road, x, x + lw), look=paint)
    if s.lay.random() < 0.2:
        zc = s.lay.uniform(6.0, 35.0)
        xs = np.arange(-half + 0.3, half - 0.5, 1.0)
        _ground_quads(s, xs, xs + 0.5, np.full_like(xs, zc), np.full_like(xs, zc + s.lay.uniform(2.5, 4.0)),
                      None, paint)


def draw_ground_shadows(s: DrivingScene) -> None:
    """Shadows of things out of view falling on the ground (shade plane; it darkens ground classes only)."""
    for _ in range(int(s.lay.integers(0, 4))):
        a = s.lay.uniform(-25.0, 15.0)
        z0 = s.lay.uniform(s.road.near, 60.0)
        band = ground_band(s.cam, s.road, a, a + s.lay.uniform(3.0, 30.0), z0, z0 + s.lay.uniform(3.0, 40.0), 6)
        s.canvas.fill(band, shade=s.app.uniform(0.4, 0.8))
    if s.lay.random() < 0.3:  # dappled light under trees
        h, w = s.canvas.shape
        blobs = (cv2.resize(s.lay.uniform(0, 1, (6, 12)).astype(np.float32), (w, h)) > 0.7)
        s.canvas.shade[blobs & (np.arange(h)[:, None] > s.cam.horizon)] *= np.float32(0.7)
