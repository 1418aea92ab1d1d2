"""The data of one refresh for the ordinary Trainer: replayed labelled images + field images of the store.

``TrainData.train`` is one dataset whose first items are the replay set (labelled: the source run's labelled
training images, never the holdout) and whose last items are field images (``folder``-style files without masks,
read from ``field/<sha256>.<ext>``); ``labelled_idx`` and ``unlabelled_idx`` point into the two parts, so the
trainer's labelled stream replays old data while its unlabelled stream carries the new domain.
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


class ReplayAndField(SegmentationDataset):
    """Items ``[0, R)`` = the replay set's chosen items (with masks), ``[R, R + F)`` = field images (no masks)."""

    labelled = False

    def __init__(self, replay: OpenedSet, field: SegmentationDataset, info: DatasetInfo) -> None:
        self.replay, self.field, self.info = replay, field, info
        self.n_replay = len(replay.indices)

    def __len__(self) -> int:
        return self.n_replay + len(self.field)

    def names(self) -> List[str]:
        names = self.replay.dataset.names()
        return [names[i] for i in self.replay.indices] + [f"field/{n}" for n in self.field.names()]

    def load(self, index: int) -> Dict[str, object]:
        if index < self.n_replay:
            return self.replay.dataset[self.replay.indices[index]]
        item = dict(self.field[index - self.n_replay])
        item["name"] = f"field/{item['name']}"
        return item


def refresh_train_data(replay: OpenedSet, field: SegmentationDataset, info: DatasetInfo, val_images: int = 8) -> TrainData:
    """TrainData for the Trainer; its val set is the first ``val_images`` replay items (a forgetting monitor for
    the training log only: the holdout and probe sets are never shown to the trainer)."""
    train = ReplayAndField(replay, field, info)
    n = train.n_replay
    val = Subset(train, range(min(val_images, n)))
    return TrainData(train, val, list(range(n)), list(range(n, n + len(field))))
