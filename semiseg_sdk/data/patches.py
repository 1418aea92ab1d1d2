"""Large tiles cut into a fixed grid of overlapping patches, each patch one dataset item.

A remote-sensing set often holds a few dozen large tiles. Drawn as whole images, a labelled fraction picks a handful
of tiles and the split depends on which tiles were drawn; cut into patches first, the fraction is chosen among
hundreds of patches (``--patch_size 256 --patch_overlap 32``). Only the training split is cut: evaluation keeps
whole tiles and scores them by sliding window (``--eval_mode slide``).

The grid of a side ``length`` with patches of ``size`` starts every ``size - overlap`` pixels, plus one last patch
flush with the far edge, so every pixel is covered and neighbours overlap by at least ``overlap`` pixels. A tile
smaller than ``size`` on a side is one patch of its own size on that side.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from ..config import check_patch_settings
from .base import SegmentationDataset
from .registry import build_dataset, run_dataset_kwargs


def grid_starts(length: int, window: int, stride: int) -> List[int]:
    """Start offsets of ``window``-long pieces every ``stride`` pixels along ``length``, the last flush with its end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    starts.append(length - window)
    return starts


def patch_grid(height: int, width: int, size: int, overlap: int) -> List[Tuple[int, int, int, int]]:
    """The (y, x, h, w) patches covering a ``height`` x ``width`` tile (see the module docstring)."""
    ph, pw = min(size, height), min(size, width)
    return [(y, x, ph, pw) for y in grid_starts(height, ph, size - overlap) for x in grid_starts(width, pw, size - overlap)]


class PatchGridDataset(SegmentationDataset):
    """Every image of ``base`` as its grid of ``size`` x ``size`` patches overlapping by ``overlap`` pixels.

    Item names are ``"<tile name>@<y>,<x>"``, so a split file names patches and survives a resume. Building the
    grid decodes each tile once (its size, and a bad file fails here, before training, naming the file).
    """

    def __init__(self, base: SegmentationDataset, size: int, overlap: int = 0) -> None:
        check_patch_settings(size, overlap)
        self.base, self.size, self.overlap = base, size, overlap
        self.info, self.labelled = base.info, base.labelled
        tile_names = base.names()
        self.patches: List[Tuple[int, int, int, int, int]] = []  # (tile index, y, x, h, w)
        for i in range(len(base)):
            height, width = base.load(i)["image"].shape[-2:]
            self.patches += [(i, *p) for p in patch_grid(int(height), int(width), size, overlap)]
        self._names = [f"{tile_names[i]}@{y},{x}" for i, y, x, _, _ in self.patches]

    def __len__(self) -> int:
        return len(self.patches)

    def names(self) -> List[str]:
        return list(self._names)

    def load(self, index: int) -> Dict[str, object]:
        i, y, x, h, w = self.patches[index]
        item = self.base.load(i)
        out: Dict[str, object] = {"image": item["image"][:, y:y + h, x:x + w].contiguous(), "name": self._names[index]}
        if "mask" in item:
            out["mask"] = item["mask"][y:y + h, x:x + w].contiguous()
        return out

    def __repr__(self) -> str:
        return f"PatchGridDataset({self.base!r}, {len(self)} patches of {self.size} px, overlap {self.overlap})"


def run_training_set(run_cfg: Mapping[str, Any]) -> SegmentationDataset:
    """The training set of a run's configuration (``config.json`` or a ``TrainConfig``'s fields): its dataset's
    ``train`` split, cut into the run's patch grid when it has a ``patch_size``, so that split files name its items."""
    train = build_dataset(run_cfg["data"], split="train", **run_dataset_kwargs(run_cfg))
    if run_cfg.get("patch_size"):
        train = PatchGridDataset(train, run_cfg["patch_size"], run_cfg.get("patch_overlap") or 0)
    return train
