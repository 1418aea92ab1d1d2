"""``synthetic-driving``: forward camera views of streets, generated on the fly and deterministic by seed.

A scene is a perspective road (lanes, markings, curvature, a tilted horizon) with sidewalks, terrain, a skyline,
buildings, trees, hedges, street lamps, signs, cars and pedestrians placed at depths from a few metres to the
horizon and drawn far to near. Appearance (colours, textures, light, camera) is drawn from wide distributions so
that a model must learn shape and context. ``domain`` changes the weather or time of day but not the labels.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..registry import register_dataset
from .canvas import render_looks
from .driving_agents import place_cars, place_people
from .driving_domains import DRIVING_DOMAINS, apply_domain
from .driving_ground import draw_ground_shadows, draw_road, draw_sidewalks, draw_skyline, make_scene
from ...errors import ConfigError
from .driving_looks import DRIVING_INFO, MIMIC_RATE, ROAD, SIDEWALK, SKY, TERRAIN
from .driving_patterns import pattern_fields
from .driving_structures import place_buildings, place_greenery, place_poles, place_trees
from .scene_dataset import APPEARANCE, DOMAIN, LAYOUT, SyntheticSceneDataset
from .sensor import develop, illumination, roll


def generate_driving(h: int, w: int, lay: np.random.Generator, app: np.random.Generator,
                     dom: np.random.Generator, domain: str = "day",
                     look_swaps: float = MIMIC_RATE) -> Tuple[np.ndarray, np.ndarray]:
    """One driving scene: (H, W, 3) uint8 RGB image and (H, W) uint8 class ids, from the three random streams;
    ``look_swaps`` is the probability of each rare scene-wide look swap (``driving_looks.MIMICS``)."""
    s = make_scene(h, w, lay, app, look_swaps)
    draw_skyline(s)
    draw_road(s)
    draw_sidewalks(s)
    draw_ground_shadows(s)
    placed = place_cars(s) + place_people(s)
    for side in s.sides:
        placed += place_buildings(s, side) + place_greenery(s, side) + place_trees(s, side) + place_poles(s, side)
    for _, draw in sorted(placed, key=lambda item: -item[0]):
        draw()
    k = w / 256.0
    img = render_looks(s.canvas, app, (max(1.0, 1.2 * k), 6.0 * k, 28.0 * k), pattern_fields(s, app))
    img *= (_light(s) * illumination(app, (h, w), 0.35, 0.12))[..., None]
    img, camera = apply_domain(domain, img, s.canvas, s.cam.horizon, dom)
    mask = s.canvas.mask
    tilt = float(np.clip(lay.normal(0.0, 2.0), -6.0, 6.0))
    if abs(tilt) > 0.2:
        img, mask = roll(img, mask, tilt)
    return develop(img, app, **camera), mask


def _light(s) -> np.ndarray:
    """Shade map: ground shadows on ground classes only, a sky brightening towards the horizon."""
    mask, (h, _) = s.canvas.mask, s.canvas.shape
    light = np.where(np.isin(mask, (ROAD, SIDEWALK, TERRAIN)), s.canvas.shade, np.float32(1.0))
    sky = np.clip(0.8 + 0.3 * np.arange(h, dtype=np.float32) / max(1.0, s.cam.horizon), 0.8, 1.1)
    return np.where(mask == SKY, sky[:, None], light)


@register_dataset("synthetic-driving")
class SyntheticDriving(SyntheticSceneDataset):
    """Street scenes, 10 Cityscapes-like classes; ``domain`` in day (default), dusk, fog, rain, night.

    ``look_swaps`` (0..1, default ``driving_looks.MIMIC_RATE`` = 0.2) is the probability, per scene and kind, that a
    building, road, sidewalk, terrain, vegetation or car wears another kind's look (labels unchanged): the long tail
    of appearance that makes few labels fall short of many. 0 gives one look distribution per class.
    """

    info = DRIVING_INFO
    domains = DRIVING_DOMAINS

    def __init__(self, split: str = "train", length: int | None = None, size: Tuple[int, int] = (128, 256),
                 seed: int = 0, domain: str = "day", val_length: int | None = None,
                 look_swaps: float = MIMIC_RATE) -> None:
        super().__init__(split=split, length=length, size=size, seed=seed, domain=domain, val_length=val_length)
        if isinstance(look_swaps, bool) or not isinstance(look_swaps, (int, float)) or not 0.0 <= look_swaps <= 1.0:
            raise ConfigError(f"{self.info.name}: look_swaps must be a probability in 0..1, got {look_swaps!r}")
        self.look_swaps = float(look_swaps)

    def _prefix(self) -> str:
        base = super()._prefix()
        return base if self.look_swaps == MIMIC_RATE else base.replace("/", f"-swaps{self.look_swaps:g}/", 1)

    def generate_arrays(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Numpy (H, W, 3) uint8 RGB image and (H, W) uint8 class ids of item ``index``."""
        index = self._check_index(index)
        h, w = self.size
        return generate_driving(h, w, self.rng(index, LAYOUT), self.rng(index, APPEARANCE),
                                self.rng(index, DOMAIN), self.domain, self.look_swaps)
