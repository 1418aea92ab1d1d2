"""The data of one refresh for the ordinary Trainer: the replay set as the labelled stream, field images as the
unlabelled stream (``TrainData.extra_unlabelled``, the trainer's way to add a folder of fleet images).

The labelled stream replays the source run's labelled training images (never the holdout or probe); the field
images are ``folder``-style files without masks, read from the store ``field/<sha256>.<ext>``. Both are seen under
the deployed model's DatasetInfo, so checkpoints and ONNX metadata keep its class names and palette.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from torch.utils.data import Subset

from ..data.base import DatasetInfo, SegmentationDataset
from ..data.folder import FileListDataset
from ..engine.data_setup import TrainData
from .labelled_sets import OpenedSet


def field_dataset(root: Path, entries: Sequence[Mapping[str, Any]], info: DatasetInfo) -> FileListDataset:
    """Unlabelled dataset over stored field images (``entry["file"]`` relative to the registry ``root``)."""
    return FileListDataset(info, [(str(e["sha256"]), Path(root) / str(e["file"]), None) for e in entries])


class WithInfo(SegmentationDataset):
    """``base`` under another DatasetInfo (same items, the deployed model's class names and palette)."""

    def __init__(self, base: SegmentationDataset, info: DatasetInfo) -> None:
        self.base, self.info, self.labelled = base, info, getattr(base, "labelled", True)

    def __len__(self) -> int:
        return len(self.base)

    def names(self) -> List[str]:
        return self.base.names()

    def load(self, index: int) -> Dict[str, object]:
        return self.base[index]


def refresh_train_data(replay: OpenedSet, field: SegmentationDataset, info: DatasetInfo, val_images: int = 8) -> TrainData:
    """TrainData for the Trainer; its val set is the first ``val_images`` replay items (a forgetting monitor for
    the training log only: the holdout and probe sets are never shown to the trainer)."""
    train = WithInfo(replay.dataset, info)
    val = Subset(train, replay.indices[:val_images])
    return TrainData(train, val, list(replay.indices), [], extra_unlabelled=field)
