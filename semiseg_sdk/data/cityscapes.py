"""Cityscapes layout (``build_dataset("cityscapes", split="train", root=...)``).

    root/leftImg8bit/{split}/{city}/{name}_leftImg8bit.png
    root/gtFine/{split}/{city}/{name}_gtFine_labelIds.png      34 label ids, mapped to the 19 train ids (others 255)

``label_type="labelTrainIds"`` reads masks already converted to train ids (``{name}_gtFine_labelTrainIds.png``);
``gt_dir="gtCoarse"`` reads the coarse annotations. A split without its annotation folder is unlabelled.
Item names are ``{city}_{seq}_{frame}`` (the file name without its suffix).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

import numpy as np

from ..errors import DataError
from .base import IGNORE_INDEX, DatasetInfo
from .folder import FileListDataset, pair_by_stem
from .image_io import PathLike, read_mask
from .registry import register_dataset

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
CITYSCAPES_INFO = DatasetInfo("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE)

NUM_LABEL_IDS = 34  # ids 0..33 of cityscapesScripts' labels.py; every id not listed below is ignored in training
LABEL_ID_TO_TRAIN_ID: Dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


def label_id_lut() -> np.ndarray:
    """A 256-entry uint8 table mapping Cityscapes label ids to train ids (255 for ignored ids)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


_LUT = label_id_lut()


@register_dataset("cityscapes")
class CityscapesDataset(FileListDataset):
    """Cityscapes with the 19 evaluation classes; 255 = ignore."""

    def __init__(
        self,
        split: str = "train",
        *,
        root: PathLike,
        gt_dir: str = "gtFine",
        label_type: str = "labelIds",
    ) -> None:
        if label_type not in ("labelIds", "labelTrainIds"):
            raise DataError(f"label_type must be 'labelIds' or 'labelTrainIds', got '{label_type}'")
        self.root = Path(os.path.abspath(os.path.expanduser(root)))  # errors name the path that was tried
        self.label_type = label_type
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        image_dir = self.root / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise DataError(f"{image_dir}: image folder not found (expected leftImg8bit/{split}/<city>/*.png)")
        images = _by_name(image_dir, "_leftImg8bit.png")
        if not images:
            raise DataError(f"{image_dir}: no *_leftImg8bit.png images in its city folders")
        mask_dir = self.root / gt_dir / split
        if mask_dir.is_dir():
            files = pair_by_stem(images, _by_name(mask_dir, f"_{gt_dir}_{label_type}.png"), image_dir, mask_dir)
        else:
            files = [(name, images[name], None) for name in sorted(images)]
        super().__init__(CITYSCAPES_INFO, files)

    def read_label(self, path: Path) -> np.ndarray:
        mask = read_mask(path)
        if self.label_type == "labelTrainIds":
            return mask
        counts = np.bincount(mask.ravel(), minlength=256)
        bad = np.flatnonzero(counts[NUM_LABEL_IDS:IGNORE_INDEX]) + NUM_LABEL_IDS
        if bad.size:
            raise DataError(f"{path}: values {bad[:8].tolist()} are not Cityscapes label ids (0..33)")
        return _LUT[mask]


def _by_name(folder: Path, suffix: str) -> Dict[str, Path]:
    """Files ``{folder}/{city}/{name}{suffix}`` by name."""
    return {p.name[: -len(suffix)]: p for p in sorted(folder.glob(f"*/*{suffix}")) if p.is_file()}
