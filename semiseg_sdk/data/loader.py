"""From datasets to device batches: deterministic infinite sampling, CPU patching of large images, padding collate.

Images stay uint8 all the way to the device. Big images (aerial tiles) are cut to a random patch on the CPU by
slicing (no resampling), so a batch never holds whole 2000x1500 tiles; everything else happens on the device.
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .base import IGNORE_INDEX


class InfiniteSampler(Sampler):
    """Yields ``(index, draw)`` forever: epoch e is a permutation seeded by (seed, e); ``start`` skips draws.

    ``draw`` is the global draw counter (over all ranks; rank r takes draws ``start + r``, ``start + r + world_size``,
    ...); the patching wrapper seeds its crop position from it, so a run resumed at draw N sees exactly the data the
    uninterrupted run saw, whatever the world size and batch size before and after.
    """

    def __init__(self, length: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if length <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.length, self.seed, self.start = length, seed, start
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        draw = self.start + self.rank
        while True:
            epoch, pos = divmod(draw, self.length)
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            perm = torch.randperm(self.length, generator=g).tolist()
            while pos < self.length:
                yield perm[pos], draw
                draw += self.world_size
                pos += self.world_size


class PatchedDataset(Dataset):
    """Wraps a dataset for training: items addressed by ``(index, draw)``; images larger than ``patch`` are cut
    to a random ``patch`` window (deterministic in ``(seed, draw)``); subsets by ``indices``; ``drop_mask`` strips
    labels (unlabelled stream)."""

    def __init__(self, base: Dataset, indices: Sequence[int], patch: Optional[Tuple[int, int]], seed: int, drop_mask: bool = False) -> None:
        self.base, self.indices, self.patch, self.seed = base, list(indices), patch, seed
        self.drop_mask = drop_mask

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Tuple[int, int]) -> Dict[str, object]:
        index, draw = key
        item = dict(self.base[self.indices[index]])
        if self.drop_mask:  # unlabelled stream: labels never reach the method
            item.pop("mask", None)
        if self.patch is not None:
            h, w = item["image"].shape[-2:]
            ph, pw = self.patch
            if h > ph or w > pw:
                rng = np.random.default_rng([self.seed, draw])
                y = int(rng.integers(0, max(h - ph, 0) + 1))
                x = int(rng.integers(0, max(w - pw, 0) + 1))
                item["image"] = item["image"][:, y : y + ph, x : x + pw]
                if "mask" in item:
                    item["mask"] = item["mask"][y : y + ph, x : x + pw]
        return item


WORKER_STOP_GRACE_S = 10.0  # how long a loader worker keeps serving after a stop signal


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a SIGTERM or SIGINT ends the worker only ``WORKER_STOP_GRACE_S`` later, cleanly.

    A signal sent to the whole process group (Ctrl-C, ``kill -- -PGID``, ``pkill -f``, a scheduler cancelling a job)
    reaches the workers too. Killed at once, a worker made the main process fail torch's check on its children (or
    its wait for the batch under way) before the trainer could finish the step and checkpoint it. Here the worker
    goes on serving for the grace period, then exits with status 0, which that check accepts. Ignoring the signal
    outright would not do: at interpreter exit ``multiprocessing`` stops leftover workers with SIGTERM and joins them.
    """
    def deferred_exit(signum: int, frame: object) -> None:
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)  # one timer per worker
        timer = threading.Timer(WORKER_STOP_GRACE_S, os._exit, args=(0,))
        timer.daemon = True
        timer.start()

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, deferred_exit)


def pad_collate(items: List[Dict[str, object]]) -> Dict[str, object]:
    """Stack items padded at the bottom/right to the largest size: image 0, mask 255, ``valid`` False."""
    h = max(int(it["image"].shape[-2]) for it in items)
    w = max(int(it["image"].shape[-1]) for it in items)
    n = len(items)
    image = torch.zeros(n, 3, h, w, dtype=torch.uint8)
    mask = torch.full((n, h, w), IGNORE_INDEX, dtype=torch.uint8)
    valid = torch.zeros(n, h, w, dtype=torch.bool)
    for i, it in enumerate(items):
        ih, iw = it["image"].shape[-2:]
        image[i, :, :ih, :iw] = it["image"]
        valid[i, :ih, :iw] = True
        if "mask" in it:
            mask[i, :ih, :iw] = it["mask"]
    return {"image": image, "mask": mask, "valid": valid, "name": [str(it.get("name", "")) for it in items]}


def infinite_loader(
    dataset: Dataset,
    indices: Sequence[int],
    batch_size: int,
    seed: int,
    start_draw: int = 0,
    patch: Optional[Tuple[int, int]] = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
    drop_mask: bool = False,
) -> Iterator[Dict[str, object]]:
    """An endless iterator of padded uint8 batches, reproducible from ``seed`` and resumable after ``start_draw``
    samples drawn over all ranks.

    ``drop_mask=True`` (the unlabelled stream) removes labels: the batch's mask is all 255."""
    wrapped = PatchedDataset(dataset, indices, patch, seed, drop_mask)
    sampler = InfiniteSampler(len(wrapped), seed, start=start_draw, rank=rank, world_size=world_size)
    loader = DataLoader(
        wrapped, batch_size=batch_size, sampler=sampler, collate_fn=pad_collate, num_workers=num_workers,
        pin_memory=pin_memory, drop_last=True, persistent_workers=num_workers > 0,
        worker_init_fn=leave_stop_signals_to_the_main_process,
    )
    return iter(loader)


def to_device(batch: Dict[str, object], device: torch.device) -> Dict[str, object]:
    """Move a collated batch to ``device`` (non-blocking), masks as long."""
    nb = device.type == "cuda"
    return {
        "image": batch["image"].to(device, non_blocking=nb),
        "mask": batch["mask"].to(device, non_blocking=nb).long(),
        "valid": batch["valid"].to(device, non_blocking=nb),
        "name": batch["name"],
    }
