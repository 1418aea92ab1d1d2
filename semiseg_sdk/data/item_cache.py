"""Keep decoded dataset items in memory, up to a byte budget, so that each image is decoded or generated once.

Worth it when producing an item costs more than the device needs for its share of a step: a synthetic scene takes
8-25 ms of CPU to draw, a large PNG longer to decode, while a light model trains on a 96x96 crop in a few ms on a
GPU. The cache lives in the process that reads the dataset (each loader worker holds its own copy), items are
cached whole before any patching, and cached tensors are never written to, so a cached run sees exactly the data of
an uncached one.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch.utils.data import Dataset


def item_bytes(item: Dict[str, object]) -> int:
    """Bytes held by the tensors of an item dict."""
    return sum(v.numel() * v.element_size() for v in item.values() if isinstance(v, torch.Tensor))


class CachedDataset(Dataset):
    """Memoises ``base[index]`` until ``max_bytes`` of tensors are held; later items are read through uncached."""

    def __init__(self, base: Dataset, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.base, self.max_bytes = base, int(max_bytes)
        self.items: Dict[int, Dict[str, object]] = {}
        self.bytes_held = 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Dict[str, object]:
        item = self.items.get(index)
        if item is None:
            item = self.base[index]
            size = item_bytes(item)
            if self.bytes_held + size <= self.max_bytes:
                self.items[index] = item
                self.bytes_held += size
        return dict(item)  # a fresh dict: callers may replace entries, never the cached ones

    def __getattr__(self, name: str):
        # info, names(), labelled ... of the wrapped dataset (only called for attributes not found here)
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)
