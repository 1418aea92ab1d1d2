"""Static things beside a road: buildings with windows, tree lines and hedges, trees, street lamps, traffic signs.

Each ``place_*`` function draws positions from the layout stream and returns ``(depth_key, draw)`` pairs; the scene
sorts all pairs far to near and calls ``draw()``, so nearer things occlude farther ones.
"""
from __future__ import annotations

from typing import Callable, List, Tuple

import numpy as np

from .canvas import ellipse_poly, to_polys
from .driving_camera import quads_on_wall, wall
from .driving_ground import DrivingScene, Side
from .driving_looks import BUILDING, POLE, SIGN, VEGETATION
from .textures import jitter_colour

Placed = List[Tuple[float, Callable[[], None]]]


def place_buildings(s: DrivingScene, side: Side) -> Placed:
    """A row of facades parallel to the road (dense in the city, sparse in suburbs, rare in the country)."""
    gap_p = {"city": 0.12, "suburb": 0.55, "rural": 0.85}[side.style]
    tall = {"city": (8.0, 40.0), "suburb": (4.0, 10.0), "rural": (4.0, 8.0)}[side.style]
    out: Placed = []
    z, end = s.road.near - s.lay.uniform(0, 10), s.lay.uniform(50.0, 160.0)
    back = s.lay.uniform(0.0, 2.0) if side.style == "city" else s.lay.uniform(2.0, 15.0)
    while z < end:
        length = s.lay.uniform(6.0, 35.0)
        if s.lay.random() >= gap_p:
            offset = side.edge(s.road) + side.sign * (back + s.lay.uniform(0.0, 1.5))
            out.append((z + length, _building(s, offset, side.sign, z, z + length, s.lay.uniform(*tall))))
        z += length + (s.lay.uniform(2.0, 15.0) if s.lay.random() < gap_p else 0.0)
    return out


def _building(s: DrivingScene, offset: float, sign: int, z0: float, z1: float, height: float):
    cam, road, lay = s.cam, s.road, s.lay
    z0 = max(z0, 0.3)
    depth, floor = lay.uniform(8.0, 16.0), lay.uniform(2.8, 3.8)
    ground = lay.uniform(3.0, 4.5)
    col, win_w, win_h = lay.uniform(2.0, 4.0), lay.uniform(0.7, 1.8), lay.uniform(0.9, 1.8)
    ys = np.arange(ground, height - 1.0, floor)
    zs = np.arange(z0 + lay.uniform(0.5, 2.0), z1 - win_w, col)
    yy, zz = [a.ravel() for a in np.meshgrid(ys, zs)]
    lit = s.app.random(yy.shape) < s.app.uniform(0.1, 0.5)
    shop = lay.random() < 0.4 and side_is_near(offset, road.width)
    face = s.look("building", 0.1)
    if s.app.random() < 0.12:  # a glass facade mirroring the sky
        s.canvas.colours[face] = jitter_colour(s.app, s.canvas.colours[0], 0.15)
    wall_look = s.canvas.add_look(tuple(c * s.app.uniform(0.6, 1.15) for c in s.canvas.colours[face]),
                                  s.canvas.textures[face])
    glass = s.look("glass")
    glass_lit = s.canvas.add_look((255.0, 220.0, 150.0), s.canvas.textures[glass], emit=1.0)
    shop_look = s.look("building", 0.3) if shop else 0
    x_end = road.centre(z0) + offset

    def draw() -> None:
        zc = 0.5 * (z0 + z1)
        s.canvas.fill(wall(cam, road, offset, z0, z1, 0.0, height), BUILDING, face, zc)
        if shop:
            s.canvas.fill(wall(cam, road, offset, z0, z1, 0.0, ground - 0.4), look=shop_look)
        if yy.size:
            windows = quads_on_wall(cam, road, offset, zz, zz + win_w, yy, yy + win_h)
            s.canvas.fill(windows[~lit], look=glass)
            s.canvas.fill(windows[lit], look=glass_lit)
        us, vs = cam.project(np.array([x_end, x_end + sign * depth]), np.array([0.0, height]), z0)
        end_face = np.array([[[us[0], vs[0]], [us[1], vs[0]], [us[1], vs[1]], [us[0], vs[1]]]])
        s.canvas.fill(to_polys(end_face), BUILDING, wall_look, z0)

    return draw


def side_is_near(offset: float, width: float) -> bool:
    """Whether a facade stands close enough to the road for a shop front."""
    return abs(offset) < width / 2 + 8.0


def place_greenery(s: DrivingScene, side: Side) -> Placed:
    """Hedges along suburban plots and tree lines behind country verges."""
    out: Placed = []
    if side.style != "city" and s.lay.random() < 0.6:
        z0, z1 = s.road.near + s.lay.uniform(0, 20), s.lay.uniform(40.0, 250.0)
        offset = side.edge(s.road) + side.sign * s.lay.uniform(3.0, 35.0)
        tops = s.lay.uniform(5.0, 18.0) + s.lay.uniform(-2.5, 2.5, 24)
        out.append((z1, _wall_draw(s, offset, z0, z1, tops, "vegetation", VEGETATION)))
    if side.style == "suburb" and side.verge > 0.8 and s.lay.random() < 0.6:
        z0 = s.road.near + s.lay.uniform(0, 15)
        z1 = z0 + s.lay.uniform(10.0, 60.0)
        offset = side.edge(s.road) - side.sign * s.lay.uniform(0.2, 0.6)
        tops = s.lay.uniform(0.6, 1.8) + s.lay.uniform(-0.15, 0.15, 12)
        out.append((z1, _wall_draw(s, offset, z0, z1, tops, "vegetation", VEGETATION)))
    return out


def _wall_draw(s: DrivingScene, offset, z0, z1, tops, kind, cls):
    look = s.look(kind, 0.15)
    return lambda: s.canvas.fill(wall(s.cam, s.road, offset, z0, z1, 0.0, tops, n=len(tops)), cls, look,
                                 0.5 * (z0 + z1))


def place_trees(s: DrivingScene, side: Side) -> Placed:
    """Street trees at the sidewalk's outer edge, or scattered trees on the verge."""
    if s.lay.random() < (0.45 if side.style == "city" else 0.25):
        return []
    step = s.lay.uniform(7.0, 22.0)
    zs = np.arange(s.road.near + s.lay.uniform(0, step), s.lay.uniform(30.0, 90.0), step)
    zs = zs + s.lay.uniform(-0.25, 0.25, zs.shape) * step
    base = s.road.width / 2 + side.sidewalk
    out: Placed = []
    for z in zs[zs > s.road.near]:
        lateral = base - s.lay.uniform(0.5, 0.9) if side.sidewalk > 0 else base + s.lay.uniform(0.5, 6.0)
        out.append((z, _tree(s, side.sign * lateral + s.road.centre(z), z)))
    return out


def _tree(s: DrivingScene, x: float, z: float):
    lay, cam = s.lay, s.cam
    trunk_h, trunk_w, r = lay.uniform(1.8, 4.0), lay.uniform(0.2, 0.45), lay.uniform(1.2, 4.0)
    u, v = cam.project(x, 0.0, z)
    px = cam.scale(z)
    cy = v - px * (trunk_h + 0.7 * r)
    n = int(lay.integers(5, 10))
    offs = lay.uniform(-0.6, 0.6, (n, 2)) * r * px
    radii = lay.uniform(0.45, 0.8, (n, 2)) * r * px
    angles = lay.uniform(0, 180, n)
    blobs = [ellipse_poly(u + o[0], cy + o[1], a, b, t) for o, (a, b), t in zip(offs, radii, angles)]
    clumps = [ellipse_poly(u + o[0] * 0.8, cy + o[1] * 0.8 + 0.2 * r * px, a * 0.5, b * 0.4, t)
              for o, (a, b), t in zip(offs[:3], radii[:3], angles[:3])]
    if lay.random() < 0.25:  # a conifer: stacked triangles from low on the trunk to a pointed top
        tiers = int(lay.integers(2, 5))
        ys = np.linspace(v - px * trunk_h * 0.4, v - px * (trunk_h + 2.8 * r), tiers + 1)
        half = px * r * (1.0 - 0.5 * np.arange(tiers) / tiers)
        tips = ys[1:] - 0.3 * (ys[:-1] - ys[1:])
        blobs = [to_polys(np.array([[u - half[k], ys[k]], [u + half[k], ys[k]], [u, tips[k]]])) for k in range(tiers)]
        clumps = []
    trunk = to_polys(np.array([[[u - px * trunk_w / 2, v], [u + px * trunk_w / 2, v],
                                [u + px * trunk_w / 3, cy], [u - px * trunk_w / 3, cy]]]))
    leaves = s.look("vegetation", 0.2)
    dark = s.canvas.add_look(tuple(c * s.app.uniform(0.4, 0.75) for c in s.canvas.colours[leaves]),
                             s.canvas.textures[leaves])
    bark = s.look("pole", 0.2)

    def draw() -> None:
        s.canvas.fill(trunk, VEGETATION, bark, z)
        s.canvas.fill(blobs, VEGETATION, leaves, z)
        s.canvas.fill(clumps, VEGETATION, dark, z)

    return draw


def place_poles(s: DrivingScene, side: Side) -> Placed:
    """Street lamps (with an arm over the road) along the kerb, and traffic signs on short posts."""
    out: Placed = []
    half = s.road.width / 2
    if s.lay.random() < (0.35 if side.style == "rural" else 0.75):
        step = s.lay.uniform(12.0, 40.0)
        height, width, arm = s.lay.uniform(5.0, 10.0), s.lay.uniform(0.12, 0.3), s.lay.uniform(0.0, 2.5)
        kerb = s.lay.uniform(0.3, 0.8) if side.sidewalk > 0 else s.lay.uniform(1.0, 4.0)
        lateral = side.sign * (half + kerb)
        for z in np.arange(s.road.near + s.lay.uniform(0, step), 100.0, step):
            out.append((z, _pole(s, s.road.centre(z) + lateral, z, height, width, -side.sign * arm)))
    for _ in range(int(s.lay.choice(4, p=[0.25, 0.4, 0.2, 0.15]))):
        z = s.lay.uniform(max(3.0, s.road.near), 70.0)
        lateral = side.sign * (half + s.lay.uniform(0.2, 1.5))
        out.append((z, _sign(s, s.road.centre(z) + lateral, z)))
    if s.lay.random() < 0.12:
        z = s.lay.uniform(max(12.0, s.road.near), 80.0)
        out.append((z, _gantry(s, s.road.centre(z) + side.sign * (half + 0.5), z, -side.sign)))
    return out


def _gantry(s: DrivingScene, x: float, z: float, inward: int):
    """A post at the kerb carrying a large direction sign over the road."""
    lay, cam = s.lay, s.cam
    width, tall, low = lay.uniform(2.5, 5.0), lay.uniform(1.2, 2.5), lay.uniform(4.8, 5.8)
    (u0, u1), (v0, v1) = cam.project(np.array([x - 0.15, x + 0.15]), np.array([0.0, low + tall]), z)
    post = to_polys(np.array([[[u0, v0], [u1, v0], [u1, v1], [u0, v1]]]))
    (p0, p1), (q0, q1) = cam.project(np.array([x + inward * 0.2, x + inward * (0.2 + width)]),
                                     np.array([low, low + tall]), z)
    panel = to_polys(np.array([[[p0, q0], [p1, q0], [p1, q1], [p0, q1]]]))
    (i0, i1), (j0, j1) = cam.project(np.array([x + inward * 0.35, x + inward * (0.05 + width)]),
                                     np.array([low + 0.15, low + tall - 0.15]), z)
    inner = to_polys(np.array([[[i0, j0], [i1, j0], [i1, j1], [i0, j1]]]))
    board = s.canvas.add_look(((20, 110, 60), (20, 60, 150), (240, 240, 235))[int(s.app.integers(3))],
                              (0.0, 0.05, 0.05, 0.05))
    rim, metal = s.look("marking"), s.look("pole", 0.1)

    def draw() -> None:
        s.canvas.fill(post, POLE, metal, z)
        s.canvas.fill(panel, SIGN, rim, z)
        s.canvas.fill(inner, look=board)

    return draw


def _pole(s: DrivingScene, x: float, z: float, height: float, width: float, arm: float):
    cam = s.cam
    (u0, u1), (v0, v1) = cam.project(np.array([x - width / 2, x + width / 2]), np.array([0.0, height]), z)
    shaft = to_polys(np.array([[[u0, v0], [u1, v0], [u1, v1], [u0, v1]]]))
    (a0, a1), (b0, b1) = cam.project(np.array([x, x + arm]), np.array([height - 0.15, height]), z)
    arm_poly = to_polys(np.array([[[a0, b0], [a1, b0], [a1, b1], [a0, b1]]]))
    (h0, h1), (c0, c1) = cam.project(np.array([x + arm - 0.3, x + arm + 0.3]), np.array([height - 0.25, height]), z)
    head = to_polys(np.array([[[h0, c0], [h1, c0], [h1, c1], [h0, c1]]]))
    metal = s.look("pole", 0.1)
    lamp = s.canvas.add_look((255.0, 230.0, 180.0), (0, 0, 0, 0), emit=1.5)

    def draw() -> None:
        s.canvas.fill(shaft, POLE, metal, z)
        if abs(arm) > 0.3:
            s.canvas.fill(arm_poly, POLE, metal, z)
            s.canvas.fill(head, POLE, lamp, z)

    return draw


def _sign(s: DrivingScene, x: float, z: float):
    cam, lay = s.cam, s.lay
    post_h, size = lay.uniform(1.8, 3.2), lay.uniform(0.5, 1.2)
    (u0, u1), (v0, v1) = cam.project(np.array([x - 0.05, x + 0.05]), np.array([0.0, post_h]), z)
    u0, u1 = min(u0, u1 - 1.0), max(u1, u0 + 1.0)
    post = to_polys(np.array([[[u0, v0], [u1, v0], [u1, v1], [u0, v1]]]))
    r = max(1.5, cam.scale(z) * size / 2)
    cu, cv = 0.5 * (u0 + u1), v1 - r
    shape = int(lay.integers(5))
    n = (32, 3, 3, 4, 8)[shape]
    turn = (0.0, -np.pi / 2, np.pi / 2, np.pi / 4 * lay.integers(2), np.pi / 8)[shape]
    ang = turn + np.linspace(0, 2 * np.pi, n, endpoint=False)
    outline = np.stack([np.cos(ang), np.sin(ang)], -1)
    if shape == 3:
        outline = outline * np.array([lay.uniform(1.0, 2.2), 1.0])
    face = to_polys(np.array([cu, cv]) + r * outline)[None]
    inner = to_polys(np.array([cu, cv]) + 0.72 * r * outline)[None]
    rim, core = s.look("sign"), s.look("sign")
    metal = s.look("pole", 0.1)

    def draw() -> None:
        s.canvas.fill(post, POLE, metal, z)
        s.canvas.fill(face, SIGN, rim, z)
        s.canvas.fill(inner, look=core)

    return draw
