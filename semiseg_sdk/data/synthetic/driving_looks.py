"""Classes of the driving scenes (Cityscapes ids and colours where they exist) and their appearance distributions."""
from __future__ import annotations

from ..base import DatasetInfo
from .look_spec import LookSpec

ROAD, SIDEWALK, BUILDING, VEGETATION, TERRAIN, SKY, PERSON, CAR, POLE, SIGN = range(10)
NONE, TILES, SLABS, COBBLES, PANELS, SIDING = range(6)  # surface patterns (see driving_patterns)

PATTERNS = {
    "sidewalk": ((0.3, NONE), (0.35, TILES), (0.2, COBBLES), (0.15, SLABS)),
    "road": ((0.7, NONE), (0.2, SLABS), (0.1, COBBLES)),
    "building": ((0.35, NONE), (0.35, PANELS), (0.3, SIDING)),
}

# Rare scene-wide appearance swaps (ivy-covered, earth-rendered or stone facades, paved or brick-red roads, asphalt or
# mossy sidewalks, gravel or lush verges, dry or dusty hedges, muddy vehicles): in a scene, each kind on the left
# takes, with probability MIMIC_RATE (the default of the dataset's ``look_swaps`` argument), the look of one of the
# kinds on the right, for every surface of it. The labels keep following shape and context. Each (kind, look) pair
# is in about 7 % of scenes: a long tail of appearance modes that a model learns only from enough labelled examples
# (at 1/16 of 2000 images: about 8 scenes per pair).
MIMICS = {
    "building": ("vegetation", "terrain", "sidewalk"),
    "road": ("sidewalk", "terrain", "building"),
    "sidewalk": ("road", "terrain", "vegetation"),
    "terrain": ("road", "sidewalk", "vegetation"),
    "vegetation": ("terrain", "sidewalk"),
    "car": ("terrain", "building"),
}
MIMIC_RATE = 0.2

DRIVING_INFO = DatasetInfo(
    name="synthetic-driving",
    classes=("road", "sidewalk", "building", "vegetation", "terrain", "sky", "person", "car", "pole",
             "traffic sign"),
    palette=((128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (152, 251, 152), (70, 130, 180),
             (220, 20, 60), (0, 0, 142), (153, 153, 153), (220, 220, 0)),
)

GREY = (0.0, 360.0)
ANY_HUE = (0.0, 360.0)

LOOKS = {
    "sky": LookSpec(((0.45, (195, 225), (0.15, 0.65), (0.6, 1.0)), (0.35, GREY, (0.0, 0.08), (0.45, 0.95)),
                     (0.1, (20, 50), (0.05, 0.25), (0.7, 1.0)), (0.1, (200, 260), (0.0, 0.15), (0.25, 0.45))),
                    ((0.0, 0.02), (0.0, 0.08), (0.05, 0.35), (0.0, 0.15))),
    "road": LookSpec(((0.8, GREY, (0.0, 0.1), (0.18, 0.62)), (0.2, (15, 45), (0.05, 0.25), (0.25, 0.55))),
                     ((0.03, 0.25), (0.02, 0.15), (0.03, 0.2), (0.0, 0.08))),
    "sidewalk": LookSpec(((0.5, GREY, (0.0, 0.1), (0.3, 0.8)), (0.3, (15, 45), (0.1, 0.35), (0.35, 0.8)),
                          (0.2, (0, 20), (0.2, 0.5), (0.3, 0.6))),
                         ((0.03, 0.25), (0.02, 0.15), (0.02, 0.15), (0.0, 0.1))),
    "terrain": LookSpec(((0.5, (60, 110), (0.25, 0.65), (0.25, 0.65)), (0.35, (20, 55), (0.2, 0.6), (0.25, 0.6)),
                         (0.15, GREY, (0.0, 0.1), (0.3, 0.65))),
                        ((0.1, 0.35), (0.05, 0.25), (0.05, 0.25), (0.05, 0.3))),
    "vegetation": LookSpec(((0.8, (60, 140), (0.25, 0.8), (0.12, 0.55)), (0.2, (25, 60), (0.3, 0.7), (0.2, 0.5))),
                           ((0.15, 0.45), (0.1, 0.3), (0.02, 0.15), (0.05, 0.3))),
    "building": LookSpec(((0.35, GREY, (0.0, 0.1), (0.25, 0.92)), (0.25, (20, 45), (0.1, 0.4), (0.4, 0.9)),
                          (0.2, (0, 20), (0.3, 0.65), (0.3, 0.7)), (0.1, (190, 230), (0.1, 0.4), (0.3, 0.8)),
                          (0.1, ANY_HUE, (0.2, 0.6), (0.4, 0.9))),
                         ((0.02, 0.15), (0.02, 0.12), (0.03, 0.2), (0.0, 0.1))),
    "distant": LookSpec(((0.6, GREY, (0.0, 0.12), (0.35, 0.8)), (0.4, (80, 200), (0.05, 0.3), (0.3, 0.7))),
                        ((0.0, 0.1), (0.0, 0.1), (0.0, 0.1), (0.0, 0.1))),
    "glass": LookSpec(((0.6, (180, 240), (0.05, 0.35), (0.08, 0.4)), (0.4, GREY, (0.0, 0.1), (0.3, 0.75))),
                      ((0.0, 0.05), (0.05, 0.3), (0.0, 0.1), (0.0, 0.05))),
    "car": LookSpec(((0.45, GREY, (0.0, 0.06), (0.08, 0.95)), (0.55, ANY_HUE, (0.3, 0.9), (0.2, 0.85))),
                    ((0.0, 0.06), (0.0, 0.1), (0.0, 0.05), (0.0, 0.05))),
    "tyre": LookSpec(((1.0, GREY, (0.0, 0.05), (0.03, 0.15)),), ((0.0, 0.1), (0.0, 0.05), (0.0, 0.05), (0.0, 0.0))),
    "cloth": LookSpec(((0.5, GREY, (0.0, 0.1), (0.05, 0.85)), (0.5, ANY_HUE, (0.2, 0.8), (0.15, 0.8))),
                      ((0.0, 0.1), (0.0, 0.1), (0.0, 0.05), (0.0, 0.05))),
    "skin": LookSpec(((1.0, (10, 35), (0.2, 0.6), (0.25, 0.9)),), ((0.0, 0.05), (0.0, 0.05), (0.0, 0.0), (0.0, 0.0))),
    "pole": LookSpec(((0.7, GREY, (0.0, 0.1), (0.15, 0.75)), (0.3, (20, 40), (0.2, 0.5), (0.2, 0.5))),
                     ((0.0, 0.1), (0.0, 0.1), (0.0, 0.05), (0.0, 0.05))),
    "sign": LookSpec(((0.35, (350, 370), (0.6, 0.95), (0.5, 0.9)), (0.3, (200, 230), (0.6, 0.95), (0.4, 0.8)),
                      (0.15, (45, 60), (0.6, 0.95), (0.7, 0.95)), (0.1, (110, 150), (0.5, 0.9), (0.3, 0.6)),
                      (0.1, GREY, (0.0, 0.05), (0.5, 0.8))),
                     ((0.0, 0.05), (0.0, 0.08), (0.0, 0.05), (0.0, 0.05))),
    "marking": LookSpec(((0.8, GREY, (0.0, 0.06), (0.6, 0.95)), (0.2, (45, 55), (0.5, 0.8), (0.6, 0.9))),
                        ((0.1, 0.35), (0.0, 0.1), (0.0, 0.1), (0.0, 0.05))),
}
