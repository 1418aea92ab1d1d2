"""Turn a TrainConfig into datasets, a labelled/unlabelled split and endless device-ready loaders."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Mapping, Optional

from ..config import TrainConfig
from ..data import build_dataset, run_dataset_kwargs
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..data.base import SegmentationDataset
from ..data.checks import check_training_data
from ..data.folder import image_folder_dataset
from ..data.item_cache import CachedDataset
from ..data.patches import run_training_set
from ..data.loader import infinite_loader
from ..data.splits import resolve_split
from ..errors import DataError


@dataclass
class TrainData:
    """The datasets and split indices of a run."""

    train: SegmentationDataset
    val: SegmentationDataset
    labelled_idx: List[int]
    unlabelled_idx: List[int]
    extra_unlabelled: Optional[Dataset] = None  # e.g. fleet images from --unlabelled_root

    def unlabelled_source(self) -> tuple:
        """(dataset, indices) of the unlabelled stream: the split's unlabelled images plus any extra folder."""
        if self.extra_unlabelled is None:
            return self.train, self.unlabelled_idx
        both = ConcatDataset([Subset(self.train, self.unlabelled_idx), self.extra_unlabelled])
        return both, list(range(len(both)))

    @property
    def info(self):
        return self.train.info


def build_train_data(cfg: TrainConfig, split_path: Path) -> TrainData:
    """Build train/val datasets and the labelled/unlabelled split (reused from ``split_path`` when it exists); with
    ``cfg.check_data`` every validation item and the training files are checked first (:mod:`semiseg_sdk.data.checks`)."""
    train = run_training_set(vars(cfg))
    val = build_dataset(cfg.data, split=cfg.val_split, **run_dataset_kwargs(vars(cfg)))
    if len(train) == 0:
        raise DataError(f"dataset '{cfg.data}' has no training images")
    if len(val) == 0:
        raise DataError(f"dataset '{cfg.data}' has no images in split '{cfg.val_split}'")
    names = train.names()
    split = resolve_split(str(split_path), names, cfg.labelled, cfg.seed if cfg.split_seed is None else cfg.split_seed)
    index = {n: i for i, n in enumerate(names)}
    labelled = [index[n] for n in split.labelled]
    unlabelled = [index[n] for n in split.unlabelled] or list(range(len(names)))  # "all": every image also unlabelled
    extra = image_folder_dataset(cfg.unlabelled_root, train.info) if cfg.unlabelled_root else None
    if cfg.check_data:
        check_training_data(train, val, labelled, extra)
    return TrainData(train, val, labelled, unlabelled, extra)


def train_patch(cfg: TrainConfig) -> tuple:
    """Largest CPU patch handed to the device: enough for the widest random scale of a crop (capped at 2x crop)."""
    lo = max(0.25, float(cfg.scale_range[0]))
    return tuple(int(min(2.0, 1.0 / lo) * c) for c in cfg.crop_size)


def make_loaders(
    cfg: TrainConfig, data: TrainData, start_draws: Mapping[str, int], uses_unlabelled: bool, rank: int = 0,
    world_size: int = 1, pin_memory: bool = False,
) -> tuple[Iterator, Optional[Iterator]]:
    """Endless labelled and (when the method needs it) unlabelled batch iterators, resumable after ``start_draws``
    (``{"labelled": n, "unlabelled": m}`` samples already drawn over all ranks); under DDP each rank draws every
    ``world_size``-th sample. ``cfg.data_cache_mb`` > 0 keeps decoded items in memory (that many MiB per stream and
    loader process)."""
    patch = train_patch(cfg)
    common = dict(patch=patch, num_workers=cfg.num_workers, pin_memory=pin_memory, rank=rank, world_size=world_size)
    cache = cfg.data_cache_mb * 2**20
    x_data = CachedDataset(data.train, cache) if cache else data.train
    x_iter = infinite_loader(x_data, data.labelled_idx, cfg.batch_size, seed=cfg.seed, start_draw=start_draws["labelled"], **common)
    u_iter = None
    if uses_unlabelled:
        ub = cfg.unlabelled_batch_size or cfg.batch_size
        u_data, u_idx = data.unlabelled_source()
        u_data = CachedDataset(u_data, cache) if cache else u_data
        u_iter = infinite_loader(u_data, u_idx, ub, seed=cfg.seed + 1, drop_mask=True, start_draw=start_draws["unlabelled"], **common)
    return x_iter, u_iter
