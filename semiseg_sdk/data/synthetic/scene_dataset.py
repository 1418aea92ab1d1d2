"""Shared dataset logic of the generated scenes: argument checks, per-item random streams, names, tensors.

Item ``i`` of a split is drawn from ``np.random.default_rng([seed, split_id, i, stream])``: identical across calls,
processes and machines, independent of the order of access, and disjoint between splits. Stream 0 lays out the scene
(the label map), stream 1 draws its appearance and stream 2 the domain's own randomness (rain streaks, fog density),
so a change of domain changes the picture and never the labels.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ...errors import ConfigError
from ..base import DatasetInfo, SegmentationDataset

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTHS = {"train": 2000, "val": 200, "test": 200}
LAYOUT, APPEARANCE, DOMAIN = 0, 1, 2


class SyntheticSceneDataset(SegmentationDataset):
    """Base of the procedural datasets; subclasses set ``info``, ``domains`` and implement ``generate_arrays``.

    ``length`` sizes the split (default 2000 train, 200 val and test); ``val_length``, when given, replaces it for
    the val and test splits, so that one set of ``data_args`` can ask for many training and few evaluation images.
    """

    info: DatasetInfo
    domains: Tuple[str, ...] = ()
    labelled = True

    def __init__(self, split: str = "train", length: Optional[int] = None, size: Tuple[int, int] = (128, 256),
                 seed: int = 0, domain: Optional[str] = None, val_length: Optional[int] = None) -> None:
        name = self.info.name
        if split not in SPLIT_IDS:
            raise ConfigError(f"{name}: unknown split '{split}'; valid splits: {', '.join(SPLIT_IDS)}")
        domain = self.domains[0] if domain is None else domain
        if domain not in self.domains:
            raise ConfigError(f"{name}: unknown domain '{domain}'; valid domains: {', '.join(self.domains)}")
        if split != "train" and val_length is not None:
            length = val_length  # lets one set of data_args size the training split and the evaluation splits apart
        if length is None:
            length = DEFAULT_LENGTHS[split]
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise ConfigError(f"{name}: length must be a non-negative integer, got {length!r}")
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: size must be (height, width), got {size!r}") from None
        if h < 32 or w < 32 or h > 4096 or w > 4096:
            raise ConfigError(f"{name}: size (height, width) must lie in 32..4096, got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"{name}: seed must be a non-negative integer, got {seed!r}")
        self.split, self.length, self.size, self.seed, self.domain = split, int(length), (h, w), int(seed), domain

    def __len__(self) -> int:
        return self.length

    def _prefix(self) -> str:
        name = self.info.name if self.domain == self.domains[0] else f"{self.info.name}-{self.domain}"
        return f"{name}/{self.split}/"

    def names(self) -> List[str]:
        """``["synthetic-driving/train/000000", ...]``; a non-default domain is appended to the dataset name."""
        prefix = self._prefix()
        return [f"{prefix}{i:06d}" for i in range(self.length)]

    def rng(self, index: int, stream: int) -> np.random.Generator:
        """The random stream ``stream`` (layout, appearance or domain) of item ``index``."""
        return np.random.default_rng([self.seed, SPLIT_IDS[self.split], index, stream])

    def _check_index(self, index: int) -> int:
        if isinstance(index, (np.integer, torch.Tensor)):
            index = int(index)
        if not isinstance(index, int):
            raise TypeError(f"{self.info.name}: index must be an integer, got {type(index).__name__}")
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"{self.info.name}/{self.split}: index {index} out of range 0..{self.length - 1}")
        return index

    def generate_arrays(self, index: int) -> Tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        """Numpy (H, W, 3) uint8 RGB image and (H, W) uint8 class-id mask of item ``index``."""
        raise NotImplementedError

    def load(self, index: int) -> Dict[str, object]:
        """The item dict of the dataset contract: uint8 CHW "image", uint8 HW "mask", "name"."""
        index = self._check_index(index)
        image, mask = self.generate_arrays(index)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "name": f"{self._prefix()}{index:06d}",
        }
