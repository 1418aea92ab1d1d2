"""CamVid in the SegNet layout (``build_dataset("camvid", split="train", root=...)``).

    root/{train,val,test}/*.png          images (480x360 in the SegNet copy)
    root/{train,val,test}annot/*.png     class ids 0..10, 11 = void (mapped to 255), matched by file stem;
                                         RGB annotations in the SegNet colours are mapped too (black = void)

The 11 classes and colours are those of the SegNet tutorial (alexgkendall/SegNet-Tutorial, Scripts/*camvid*.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import IGNORE_INDEX, DatasetInfo
from .folder import IMAGE_EXTENSIONS, FileListDataset, files_by_stem, pair_by_stem
from .image_io import PathLike, read_mask
from .registry import register_dataset

CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian", "bicyclist",
)
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)
CAMVID_VOID_ID = 11
CAMVID_INFO = DatasetInfo("camvid", CAMVID_CLASSES, CAMVID_PALETTE)


@register_dataset("camvid")
class CamVidDataset(FileListDataset):
    """CamVid, 11 classes; the void label 11 becomes 255 (ignore)."""

    def __init__(self, split: str = "train", *, root: PathLike) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(root)))  # errors name the path that was tried
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        image_dir, mask_dir = self.root / split, self.root / f"{split}annot"
        if not image_dir.is_dir():
            raise DataError(f"{image_dir}: image folder not found (SegNet layout: {split}/ and {split}annot/)")
        images = files_by_stem(image_dir, IMAGE_EXTENSIONS)
        if not images:
            raise DataError(f"{image_dir}: no images")
        if mask_dir.is_dir():
            files = pair_by_stem(images, files_by_stem(mask_dir, (".png",)), image_dir, mask_dir)
        else:
            files = [(stem, images[stem], None) for stem in sorted(images)]
        super().__init__(CAMVID_INFO, files)

    def read_label(self, path: Path) -> np.ndarray:
        mask = read_mask(path, colours=CAMVID_PALETTE, ignore_colours=((0, 0, 0),))  # SegNet colours, if RGB
        return np.where(mask == CAMVID_VOID_ID, np.uint8(IGNORE_INDEX), mask)
