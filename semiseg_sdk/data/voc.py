"""Pascal VOC 2012 segmentation layout (``build_dataset("voc", split="train", root=...)``).

    root/JPEGImages/{name}.jpg
    root/SegmentationClass/{name}.png        indexed PNG; index 255 = object border / "difficult" = ignore
    root/ImageSets/Segmentation/{split}.txt  one name per line (train, val, trainval, or your own list)

``root`` may also be the VOCdevkit folder holding VOC2012/. ``mask_dir="SegmentationClassAug"`` reads the SBD-augmented
gray masks instead. Masks are read as palette indices; an RGB copy is mapped back through the standard VOC palette.
A split whose masks are all absent (the test set) is unlabelled.
"""
from __future__ import annotations

from collections import Counter
import os
from pathlib import Path
from typing import List

import numpy as np

from ..errors import DataError
from .base import DatasetInfo, default_palette
from .folder import FileItem, FileListDataset
from .image_io import PathLike, read_mask
from .registry import register_dataset

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# The VOC devkit palette is the bit-interleaved colour map that default_palette computes: 0 black, 1 (128, 0, 0), ...
VOC_PALETTE = tuple(default_palette(len(VOC_CLASSES)))
VOC_BORDER_COLOUR = (224, 224, 192)  # palette entry 255, drawn around objects; ignored in training and evaluation
VOC_INFO = DatasetInfo("voc", VOC_CLASSES, VOC_PALETTE)


@register_dataset("voc")
class VOCDataset(FileListDataset):
    """Pascal VOC segmentation: 21 classes (background + 20 objects), 255 = ignore."""

    def __init__(
        self,
        split: str = "train",
        *,
        root: PathLike,
        mask_dir: str = "SegmentationClass",
        list_dir: str = "ImageSets/Segmentation",
    ) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(root)))  # errors name the path that was tried
        if not (self.root / "JPEGImages").is_dir() and (self.root / "VOC2012" / "JPEGImages").is_dir():
            self.root = self.root / "VOC2012"
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        if not (self.root / "JPEGImages").is_dir():
            raise DataError(f"{self.root}: no JPEGImages/ folder; is this a Pascal VOC root (VOCdevkit/VOC2012)?")
        names = self._read_list(self.root / list_dir, split)
        images = [self.root / "JPEGImages" / f"{n}.jpg" for n in names]
        masks = [self.root / mask_dir / f"{n}.png" for n in names]
        _require_all(images, f"{self.root / 'JPEGImages'}", "images listed in the split file are missing")
        have_masks = [m.is_file() for m in masks]
        if any(have_masks):
            _require_all(masks, f"{self.root / mask_dir}", "masks of listed images are missing")
        files: List[FileItem] = [(n, i, m if any(have_masks) else None) for n, i, m in zip(names, images, masks)]
        super().__init__(VOC_INFO, files)

    @staticmethod
    def _read_list(folder: Path, split: str) -> List[str]:
        path = folder / f"{split}.txt"
        if not path.is_file():
            known = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
            raise DataError(f"{path}: split list not found (available: {', '.join(known) or 'none'})")
        names = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
        if not names:
            raise DataError(f"{path}: split list is empty")
        if len(set(names)) != len(names):
            dup = sorted(n for n, k in Counter(names).items() if k > 1)[:5]
            raise DataError(f"{path}: names listed twice: {', '.join(dup)}")
        return names

    def read_label(self, path: Path) -> np.ndarray:
        return read_mask(path, colours=VOC_PALETTE, ignore_colours=(VOC_BORDER_COLOUR,))


def _require_all(paths: List[Path], folder: str, what: str) -> None:
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise DataError(f"{folder}: {what}: {', '.join(missing[:5])}{more}")
