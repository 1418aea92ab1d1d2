"""Distributions of appearance: a class's colour is a mixture of HSV boxes, its texture a box of noise weights.

The boxes of different classes overlap on purpose (grey sky and grey road, green grass and green trees, cars of any
colour), so that a pixel's colour alone does not tell its class and a model has to use texture, shape and context.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Tuple

import numpy as np


Range = Tuple[float, float]
HsvBox = Tuple[float, Range, Range, Range]  # weight, hue (degrees, may exceed 360), saturation, value


@dataclass(frozen=True)
class LookSpec:
    """Colour mixture and texture ranges (fine, medium, coarse grain and colour drift) of one kind of surface."""

    boxes: Tuple[HsvBox, ...]
    texture: Tuple[Range, Range, Range, Range] = ((0.0, 0.1), (0.0, 0.1), (0.0, 0.1), (0.0, 0.1))

    def colour(self, rng: np.random.Generator) -> Tuple[float, float, float]:
        """One RGB colour (0..255) drawn from the mixture."""
        u = rng.random(4)
        pick, acc = u[0] * sum(b[0] for b in self.boxes), 0.0
        for box in self.boxes:  # a handful of boxes: a plain scan beats Generator.choice(p=...) by far
            acc += box[0]
            if pick < acc:
                break
        _, hue, sat, val = box
        h = (hue[0] + u[1] * (hue[1] - hue[0])) % 360.0
        r, g, b = colorsys.hsv_to_rgb(h / 360.0, sat[0] + u[2] * (sat[1] - sat[0]), val[0] + u[3] * (val[1] - val[0]))
        return (255.0 * r, 255.0 * g, 255.0 * b)

    def textures(self, rng: np.random.Generator) -> Tuple[float, float, float, float]:
        """One set of texture weights drawn from the ranges."""
        u = rng.random(4)
        t = self.texture
        return tuple(float(lo + k * (hi - lo)) for k, (lo, hi) in zip(u, t))  # type: ignore[return-value]

    def sample(self, rng: np.random.Generator):
        """``(colour, texture)`` for ``Canvas.add_look``."""
        return self.colour(rng), self.textures(rng)


def pick_pattern(rng: np.random.Generator, choices: Tuple[Tuple[float, int], ...]) -> Tuple[int, float]:
    """A (pattern id, strength) drawn from ``((probability, pattern id), ...)``; (0, 0.0) when none is drawn."""
    pick, acc = rng.random(), 0.0
    for weight, pid in choices:
        acc += weight
        if pick < acc:
            return pid, (float(rng.uniform(0.15, 0.5)) if pid else 0.0)
    return 0, 0.0
