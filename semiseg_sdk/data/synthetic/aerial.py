"""``synthetic-aerial``: top-down tiles of towns and countryside, generated on the fly and deterministic by seed.

A tile has a style (urban grid, suburban winding streets, rural fields), a ground resolution of 0.33-1 m per pixel,
fields with crop rows, meadows, woodland, rivers and ponds, roads with markings and parking lots, cars, buildings
with flat, gable or hip roofs and cast shadows, and trees with irregular crowns. ``domain`` changes the season or the
sensor but not the labels.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..registry import register_dataset
from .aerial_domains import AERIAL_DOMAINS, season, sensor
from .aerial_looks import AERIAL_INFO
from .aerial_objects import place_buildings, place_trees
from .aerial_roads import draw_parking, draw_roads, place_cars
from .aerial_terrain import draw_fields, draw_forest, draw_meadows, draw_tracks, draw_water, make_scene
from .canvas import render_looks
from .scene_dataset import APPEARANCE, DOMAIN, LAYOUT, SyntheticSceneDataset
from .sensor import develop, illumination


def generate_aerial(h: int, w: int, lay: np.random.Generator, app: np.random.Generator,
                    dom: np.random.Generator, domain: str = "summer") -> Tuple[np.ndarray, np.ndarray]:
    """One aerial tile: (H, W, 3) uint8 RGB image and (H, W) uint8 class ids, from the three random streams."""
    s = make_scene(h, w, lay, app)
    draw_meadows(s)
    draw_fields(s)
    draw_forest(s)
    draw_tracks(s)
    draw_water(s)
    draw_roads(s)
    slots = draw_parking(s)
    place_cars(s, slots)
    place_buildings(s)
    place_trees(s)
    k = w / 192.0
    img = render_looks(s.canvas, app, (max(1.0, 1.2 * k), 5.0 * k, 24.0 * k))
    img = season(domain, img, s.canvas.mask, dom)
    img *= (s.canvas.shade * illumination(app, (h, w), 0.25, 0.1))[..., None]
    img, camera = sensor(domain, img, s.canvas.mask, dom)
    return develop(img, app, **camera), s.canvas.mask


@register_dataset("synthetic-aerial")
class SyntheticAerial(SyntheticSceneDataset):
    """Aerial tiles, 7 classes; ``domain`` in summer (default), autumn, winter, sensor-tint."""

    info = AERIAL_INFO
    domains = AERIAL_DOMAINS

    def __init__(self, split: str = "train", length: int | None = None, size: Tuple[int, int] = (192, 192),
                 seed: int = 0, domain: str = "summer", val_length: int | None = None) -> None:
        super().__init__(split=split, length=length, size=size, seed=seed, domain=domain, val_length=val_length)

    def generate_arrays(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Numpy (H, W, 3) uint8 RGB image and (H, W) uint8 class ids of item ``index``."""
        index = self._check_index(index)
        h, w = self.size
        return generate_aerial(h, w, self.rng(index, LAYOUT), self.rng(index, APPEARANCE),
                               self.rng(index, DOMAIN), self.domain)
