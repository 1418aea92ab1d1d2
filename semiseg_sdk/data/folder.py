"""Datasets read from image and mask files: the shared file-list base and the generic ``folder`` layout.

Generic layout (``build_dataset("folder", split="train", root=...)``)::

    root/images/{split}/*.{jpg,jpeg,png,bmp,tif,tiff}   root/masks/{split}/*.png   (matched by file stem)
    root/images/*  + root/masks/*                        (flat form, no split folders: split "train" = everything,
                                                          or with ``holdout=0.1`` a stable 10 % goes to "val")
    root/classes.json                                    (optional: class ids, names and RGB colours)

Splits join with ``+``: ``split="val+test"`` is both folders, item names prefixed by their split (``val/0001``).
A split without its mask folder is unlabelled (items carry no "mask"). Without classes.json, pass ``num_classes``
(names become class_0, class_1, ...). When classes.json gives colours, RGB colour masks are mapped through them.

The flat form's hold-out is decided per file stem by a hash (``holdout_split``), not by a shuffle of the listing, so
images added to the folder later never move an existing image between "train" and "val".
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .base import DatasetInfo, SegmentationDataset
from .image_io import Colour, PathLike, read_image, read_mask, validate_pair
from .registry import register_dataset

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
FileItem = Tuple[str, Path, Optional[Path]]


class FileListDataset(SegmentationDataset):
    """Items from a list of (name, image path, mask path or None); decodes and validates in ``load``."""

    def __init__(self, info: DatasetInfo, files: Sequence[FileItem]) -> None:
        self.info = info
        self.files: List[FileItem] = list(files)
        self.labelled = bool(self.files) and all(mask is not None for _, _, mask in self.files)

    def __len__(self) -> int:
        return len(self.files)

    def names(self) -> List[str]:
        return [name for name, _, _ in self.files]

    def read_label(self, path: Path) -> np.ndarray:
        """Read one mask as uint8 class ids (255 = ignore); adapters override this to map their label encoding."""
        return read_mask(path)

    def load(self, index: int) -> Dict[str, object]:
        name, image_path, mask_path = self.files[index]
        image = read_image(image_path)
        item: Dict[str, object] = {"image": torch.from_numpy(image).permute(2, 0, 1).contiguous(), "name": name}
        if mask_path is not None:
            mask = self.read_label(mask_path)
            validate_pair(image, mask, image_path, mask_path, self.info.num_classes)
            item["mask"] = torch.from_numpy(mask)
        return item

    def __repr__(self) -> str:
        kind = "labelled" if self.labelled else "unlabelled"
        return f"{type(self).__name__}({self.info.name}, {len(self)} {kind} images, {self.info.num_classes} classes)"


def image_folder_dataset(root: PathLike, info: DatasetInfo) -> FileListDataset:
    """Every image under ``root`` (recursively, any layout) as an unlabelled dataset with ``info``'s classes.

    For fleet data: ``--unlabelled_root`` adds such a folder to the unlabelled stream of a training run."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"{folder}: unlabelled image folder not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    return FileListDataset(info, [(str(p.relative_to(folder)), p, None) for p in files])


def files_by_stem(folder: Path, extensions: Sequence[str]) -> Dict[str, Path]:
    """Files of ``folder`` with one of ``extensions`` (case-insensitive) by stem; hidden files are skipped."""
    found: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in extensions:
            continue
        if path.stem in found:
            raise DataError(f"{folder}: two files share the name '{path.stem}': {found[path.stem].name}, {path.name}")
        found[path.stem] = path
    return found


def pair_by_stem(images: Dict[str, Path], masks: Dict[str, Path], image_dir: Path, mask_dir: Path) -> List[FileItem]:
    """Match images and masks by stem; raise naming the stems that have no partner."""
    for missing, have, where in ((images.keys() - masks.keys(), image_dir, mask_dir),
                                 (masks.keys() - images.keys(), mask_dir, image_dir)):
        if missing:
            stems = sorted(missing)
            more = f" (and {len(stems) - 5} more)" if len(stems) > 5 else ""
            what = "image(s) without a mask" if have == image_dir else "mask(s) without an image"
            raise DataError(f"{what}: {', '.join(stems[:5])}{more} in {have} have no file of that name in {where}")
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def load_classes_json(path: Path) -> Tuple[DatasetInfo, bool, Tuple[Colour, ...]]:
    """Parse classes.json -> (info, whether it gave colours, ignore colours).

    Format: {"name": str, "classes": [{"id": 0, "name": "building", "color": [r, g, b]}, ...]} (ids 0..n-1; "color"
    optional; a plain list of names also works), optional "num_classes" and "ignore_colors" ([[r, g, b], ...]).
    """
    try:
        spec = json.loads(path.read_text())
        entries = spec["classes"]
        entries = [{"id": i, "name": e} if isinstance(e, str) else e for i, e in enumerate(entries)]
        entries = sorted(entries, key=lambda e: int(e["id"]))
        names = tuple(str(e["name"]) for e in entries)
        colours = [e.get("color", e.get("colour")) for e in entries]
        ignore = tuple(_colour(c, path) for c in spec.get("ignore_colors", spec.get("ignore_colours", [])))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: cannot read class list ({type(exc).__name__}: {exc})") from exc
    if [int(e["id"]) for e in entries] != list(range(len(entries))) or not entries:
        raise DataError(f"{path}: class ids must be 0..n-1 without gaps, got {[e['id'] for e in entries]}")
    if int(spec.get("num_classes", len(names))) != len(names):
        raise DataError(f"{path}: num_classes is {spec['num_classes']} but {len(names)} classes are listed")
    has_colours = all(c is not None for c in colours)
    palette = tuple(_colour(c, path) for c in colours) if has_colours else ()
    return DatasetInfo(str(spec.get("name", path.parent.name)), names, palette), has_colours, ignore


def _colour(value: object, path: Path) -> Colour:
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(0 <= int(v) <= 255 for v in value)):
        raise DataError(f"{path}: a colour must be [r, g, b] with values 0..255, got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]))


def holdout_split(stem: str, holdout: float, seed: int = 0) -> str:
    """``"val"`` for about ``holdout`` of all stems, else ``"train"``; fixed per (stem, seed), whatever else exists."""
    digest = hashlib.sha256(f"{seed}:{stem}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < holdout else "train"


@register_dataset("folder")
class FolderDataset(FileListDataset):
    """Your own data: images/{train,val,...}/ with class-id PNG masks in masks/ (layout in the module docstring).

    ``holdout`` (flat layout only, 0 < holdout < 1) splits the flat folder into "train" and "val" by stem hash
    (``holdout_seed`` picks another split); without it the flat layout has only "train"."""

    def __init__(self, split: str = "train", *, root: PathLike, num_classes: Optional[int] = None,
                 holdout: Optional[float] = None, holdout_seed: int = 0) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(root)))  # errors name the path that was tried, not a relative one
        if holdout is not None and not (isinstance(holdout, (int, float)) and 0 < holdout < 1):
            raise ConfigError(f"holdout must be a fraction between 0 and 1 (e.g. 0.1), got {holdout!r}")
        self.holdout, self.holdout_seed = holdout, int(holdout_seed)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        if not (self.root / "images").is_dir():
            raise DataError(f"{self.root}: no images/ folder (expected images/{split}/*.jpg or images/*.jpg)")
        parts = split.split("+")
        if not all(parts) or len(set(parts)) != len(parts):
            raise ConfigError(f"{self.root}: split {split!r}: name one split or join distinct ones with '+' "
                              "(e.g. val+test)")
        info, self._colours, self._ignore = self._class_info(num_classes)
        files: List[FileItem] = []
        for part in parts:
            found = self._split_files(part, info)
            files += found if len(parts) == 1 else [(f"{part}/{name}", img, mask) for name, img, mask in found]
        super().__init__(info, files)

    def _split_files(self, split: str, info: DatasetInfo) -> List[FileItem]:
        """The (name, image, mask or None) items of one split folder (or of the flat layout's hold-out)."""
        image_dir, mask_dir = self._split_dirs(split)
        images = files_by_stem(image_dir, IMAGE_EXTENSIONS)
        if not images:
            raise DataError(f"{image_dir}: no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
        flat_holdout = image_dir == self.root / "images" and self.holdout is not None
        if flat_holdout:
            images = self._held(images, split)
            if not images:
                raise DataError(f"{image_dir}: holdout={self.holdout} leaves no images in split '{split}' "
                                f"({len(files_by_stem(image_dir, IMAGE_EXTENSIONS))} images in all)")
        if mask_dir.is_dir():
            masks = files_by_stem(mask_dir, (".png",))
            if info.num_classes == 0:
                raise ConfigError(f"{self.root}: labelled data needs classes.json or the num_classes argument")
            return pair_by_stem(images, self._held(masks, split) if flat_holdout else masks, image_dir, mask_dir)
        level = logging.WARNING if (self.root / "masks").is_dir() else logging.INFO
        log.log(level, "%s: no mask folder %s, split '%s' is unlabelled", self.root, mask_dir, split)
        return [(stem, images[stem], None) for stem in sorted(images)]

    def _held(self, files: Dict[str, Path], split: str) -> Dict[str, Path]:
        """The files of ``split`` under the flat layout's hash hold-out."""
        return {s: p for s, p in files.items() if holdout_split(s, self.holdout, self.holdout_seed) == split}

    def _split_dirs(self, split: str) -> Tuple[Path, Path]:
        images = self.root / "images"
        found = sorted(p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
        if found and self.holdout is not None:
            raise ConfigError(f"{images}: holdout is for the flat layout only; this folder has splits {', '.join(found)}")
        if (images / split).is_dir():
            return images / split, self.root / "masks" / split
        if found:
            raise DataError(f"{images}: no split folder '{split}' (found: {', '.join(found)})")
        if self.holdout is not None:
            if split not in ("train", "val"):
                raise DataError(f"{images}: flat layout with holdout has splits 'train' and 'val', not '{split}'")
            return images, self.root / "masks"
        if split != "train":
            raise DataError(f"{images}: flat layout (no split folders) only has split 'train', not '{split}'; "
                            "hold some images out with data_args {\"holdout\": 0.1}, or use images/{train,val}/ folders")
        log.warning("%s: flat layout without split folders: split 'train' holds every image", self.root)
        return images, self.root / "masks"

    def _class_info(self, num_classes: Optional[int]) -> Tuple[DatasetInfo, Optional[Tuple[Colour, ...]], tuple]:
        path = self.root / "classes.json"
        if path.is_file():
            info, has_colours, ignore = load_classes_json(path)
            if num_classes is not None and num_classes != info.num_classes:
                raise ConfigError(f"num_classes={num_classes} but {path} lists {info.num_classes} classes")
            return info, (info.palette if has_colours else None), ignore
        count = num_classes or 0
        if count < 0:
            raise ConfigError(f"num_classes must be positive, got {num_classes}")
        return DatasetInfo(self.root.name, tuple(f"class_{i}" for i in range(count))), None, ()

    def read_label(self, path: Path) -> np.ndarray:
        return read_mask(path, colours=self._colours, ignore_colours=self._ignore)
