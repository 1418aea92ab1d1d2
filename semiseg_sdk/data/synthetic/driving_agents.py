"""Things that move: cars and vans in lanes or parked at the kerb, pedestrians walking, standing or crossing.

Cars are drawn as a rear (or front) face at their depth plus the side face that faces the camera; pedestrians as
articulated figures (legs in stride, swinging arms, torso, head) scaled by their distance.
"""
from __future__ import annotations

from typing import List

import numpy as np

from .canvas import ellipse_poly, to_polys
from .driving_ground import DrivingScene
from .driving_looks import CAR, PERSON
from .driving_structures import Placed


def place_cars(s: DrivingScene) -> Placed:
    """Traffic in each lane (oncoming on the left of two-way roads) and rows of parked cars."""
    lay, road = s.lay, s.road
    half, lane_w = road.width / 2, road.width / road.lanes
    two_way = road.lanes >= 2 and lay.random() < 0.7
    busy = lay.uniform(0.1, 2.5)
    out: Placed = []
    for i in range(road.lanes):
        lateral = -half + (i + 0.5) * lane_w
        zs = np.sort(np.exp(lay.uniform(np.log(4.0), np.log(90.0), lay.poisson(busy))))
        last = -10.0
        for z in zs:
            if z - last > 7.0:
                x = road.centre(z) + lateral + lay.normal(0, 0.2)
                out.append((z, _car(s, x, z, two_way and i < road.lanes // 2)))
                last = z
    for side in s.sides:
        if side.style == "rural" or lay.random() > 0.4:
            continue
        z = road.near + lay.uniform(0, 6)
        while z < lay.uniform(30.0, 90.0):
            if lay.random() < 0.75:
                out.append((z, _car(s, road.centre(z) + side.sign * (half - lay.uniform(0.9, 1.3)), z, False)))
            z += lay.uniform(5.0, 8.0)
    return out


def _poly(cam, xs, ys, zs) -> np.ndarray:
    u, v = cam.project(np.asarray(xs, np.float64), np.asarray(ys, np.float64), np.asarray(zs, np.float64))
    return to_polys(np.stack([u, v], -1))[None]


def _car(s: DrivingScene, x: float, z: float, oncoming: bool):
    lay, cam = s.lay, s.cam
    kind = int(lay.choice(3, p=[0.82, 0.11, 0.07]))  # car, van, bus or lorry
    van = kind > 0
    w = (lay.uniform(1.6, 2.0), lay.uniform(1.9, 2.5), lay.uniform(2.4, 2.6))[kind]
    h = (lay.uniform(1.35, 1.9), lay.uniform(2.1, 3.0), lay.uniform(2.9, 3.8))[kind]
    length = (lay.uniform(3.8, 5.0), lay.uniform(5.0, 9.0), lay.uniform(9.0, 13.0))[kind]
    top = 0.47 * w if van else lay.uniform(0.3, 0.42) * w
    belt = (lay.uniform(0.5, 0.65), 0.45, lay.uniform(0.25, 0.5))[kind] * h
    half = w / 2
    rear = [
        _poly(cam, [x - half, x + half, x + half, x - half], [0.22, 0.22, belt, belt], [z] * 4),
        _poly(cam, [x - 0.46 * w, x + 0.46 * w, x + top, x - top], [belt, belt, h, h], [z] * 4),
    ]
    wheels = [_poly(cam, [a, a + 0.3, a + 0.3, a], [0.0, 0.0, 0.36, 0.36], [z] * 4)
              for a in (x - half + 0.05, x + half - 0.35)]
    window = _poly(cam, [x - 0.4 * w, x + 0.4 * w, x + top - 0.06 * w, x - top + 0.06 * w],
                   [belt + 0.05 * h, belt + 0.05 * h, 0.93 * h, 0.93 * h], [z] * 4)
    lights = [_poly(cam, [a, a + 0.28, a + 0.28, a], [belt - 0.14 * h] * 2 + [belt - 0.04 * h] * 2, [z] * 4)
              for a in (x - half + 0.05, x + half - 0.33)]
    side = []
    xs = x - half if x - half > 0 else (x + half if x + half < 0 else None)
    if xs is not None:
        xi = xs + 0.06 * w * np.sign(x - xs)  # the cabin is narrower than the body
        z1 = z + length
        side = [_poly(cam, [xs] * 4, [0.22, 0.22, belt, belt], [z, z1, z1, z]),
                _poly(cam, [xi] * 4, [belt, belt, h, h], [z + 0.05 * length, z + 0.9 * length,
                                                        z + (0.85 if van else 0.7) * length, z + 0.2 * length])]
        side_window = _poly(cam, [xi] * 4, [belt + 0.05 * h, belt + 0.05 * h, 0.92 * h, 0.92 * h],
                            [z + 0.12 * length, z + 0.83 * length, z + 0.68 * length, z + 0.27 * length])
        side_wheels = [_poly(cam, [xs] * 4, [0.0, 0.0, 0.66, 0.66], [zw - 0.33, zw + 0.33, zw + 0.33, zw - 0.33])
                       for zw in (z + 0.18 * length, z + 0.82 * length)]
    body = s.look("car", 0.05)
    flank = s.canvas.add_look(tuple(c * s.app.uniform(0.6, 0.95) for c in s.canvas.colours[body]),
                              s.canvas.textures[body])
    glass, tyre = s.look("glass"), s.look("tyre")
    lamp = s.canvas.add_look((255.0, 250.0, 230.0) if oncoming else (220.0, 30.0, 20.0), (0, 0, 0, 0),
                             emit=2.0 if oncoming else 1.2)

    def draw() -> None:
        if side:
            s.canvas.fill(side, CAR, flank, z)
            s.canvas.fill(side_window, look=glass)
            s.canvas.fill(side_wheels, CAR, tyre, z)
        s.canvas.fill(wheels, CAR, tyre, z)
        s.canvas.fill(rear, CAR, body, z)
        s.canvas.fill(window, look=glass)
        s.canvas.fill(lights, look=lamp)

    return draw


def place_people(s: DrivingScene) -> Placed:
    """Pedestrians on sidewalks and verges, some in small groups, a few crossing the road."""
    lay, road = s.lay, s.road
    half = road.width / 2
    out: Placed = []
    for _ in range(lay.poisson(lay.choice([0.3, 1.5, 4.0, 8.0]))):
        crossing = lay.random() < 0.12
        side = s.sides[int(lay.integers(2))]
        z = float(np.exp(lay.uniform(np.log(3.0), np.log(25.0 if crossing else 70.0))))
        if crossing:
            lateral = lay.uniform(-half, half)
        elif side.sidewalk > 0.6:
            lateral = side.sign * (half + lay.uniform(0.3, side.sidewalk - 0.3))
        else:
            lateral = side.sign * (half + side.sidewalk + lay.uniform(0.2, side.verge + 1.0))
        for k in range(1 if lay.random() < 0.7 else int(lay.integers(2, 4))):
            zk, lk = z + k * lay.uniform(-1.5, 1.5), lateral + k * lay.uniform(-0.8, 0.8)
            if zk > max(1.5, road.near):
                out.append((zk, _person(s, road.centre(zk) + lk, zk, crossing)))
    return out


def _limb(p0, p1, t: float) -> np.ndarray:
    """Quad of a thick segment from p0 to p1 (pixels), ``t`` pixels wide."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / max(1e-6, float(np.hypot(*d))) * max(t, 0.8) / 2
    return to_polys(np.stack([p0 + n, p1 + n, p1 - n, p0 - n]))


def _person(s: DrivingScene, x: float, z: float, crossing: bool):
    lay, cam = s.lay, s.cam
    hgt = lay.uniform(1.0, 1.35) if lay.random() < 0.1 else lay.uniform(1.5, 1.95)
    px = cam.scale(z)
    u, v = cam.project(x, 0.0, z)

    def pt(dx: float, dy: float):
        return (u + px * dx * hgt, v - px * dy * hgt)

    side_view = crossing or lay.random() < 0.25
    stride = lay.uniform(0.0, 0.35) if side_view else lay.uniform(0.0, 0.06)
    hip = 0.0 if side_view else 0.055
    swing = lay.uniform(-0.15, 0.15)
    legs: List[np.ndarray] = [_limb(pt(sgn * hip, 0.52), pt(sgn * (hip + stride / 2), 0.0), px * 0.075 * hgt)
                              for sgn in (-1, 1)]
    sh, hp = (0.075, 0.06) if side_view else (0.13, 0.09)
    coat = 0.3 if lay.random() < 0.3 else 0.5
    torso = [to_polys(np.array([pt(-hp, coat), pt(hp, coat), pt(sh, 0.82), pt(-sh, 0.82)]))]
    arms = [_limb(pt(sgn * sh * 0.9, 0.8), pt(sgn * (sh + 0.03) + swing * sgn * (1 if side_view else 0.2), 0.45),
                  px * 0.05 * hgt) for sgn in (-1, 1)]
    hu, hv = pt(0.0, 0.915)
    head = [ellipse_poly(hu, hv, px * 0.06 * hgt, px * 0.07 * hgt, 0)]
    if lay.random() < 0.2:
        bu, bv = pt(sh + 0.02, 0.55)
        arms.append(to_polys(np.array([[bu, bv], [bu + px * 0.1 * hgt, bv], [bu + px * 0.1 * hgt, bv + px * 0.12 * hgt],
                                       [bu, bv + px * 0.12 * hgt]])))
    lower, upper, skin = s.look("cloth"), s.look("cloth"), s.look("skin")

    def draw() -> None:
        s.canvas.fill(legs, PERSON, lower, z)
        s.canvas.fill(torso + arms, PERSON, upper, z)
        s.canvas.fill(head, PERSON, skin, z)

    return draw
