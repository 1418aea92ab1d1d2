"""The dataset contract shared by every data source (synthetic generators and real-data adapters).

A dataset item is a dict:
    "image": torch.uint8 tensor (3, H, W), RGB
    "mask":  torch.uint8 tensor (H, W) of class ids, 255 = ignore; absent (key missing) for unlabelled-only sources
    "name":  str, a stable identifier (file stem or "synthetic-driving/000123")
Decoding happens here, on CPU workers; every augmentation happens later on the training device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

IGNORE_INDEX = 255


def default_palette(num_classes: int) -> List[Tuple[int, int, int]]:
    """Pascal-VOC style bit palette: distinct, deterministic colours for any class count."""
    palette = []
    for i in range(num_classes):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return palette


@dataclass(frozen=True)
class DatasetInfo:
    """What a model trained on a dataset must know about it: class names and their colours."""

    name: str
    classes: Tuple[str, ...]
    palette: Tuple[Tuple[int, int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.palette:
            object.__setattr__(self, "palette", tuple(default_palette(len(self.classes))))
        if len(self.palette) != len(self.classes):
            raise ValueError(f"{self.name}: {len(self.classes)} classes but {len(self.palette)} palette colours")

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class SegmentationDataset(Dataset):
    """Base class: subclasses set ``info`` and implement ``__len__``, ``load(index) -> dict`` and ``names``."""

    info: DatasetInfo
    labelled: bool = True

    def __getitem__(self, index: int) -> Dict[str, object]:
        return self.load(index)

    def load(self, index: int) -> Dict[str, object]:  # pragma: no cover - abstract
        raise NotImplementedError

    def names(self) -> List[str]:
        """Stable identifiers of all items, in index order (split files store these)."""
        raise NotImplementedError
