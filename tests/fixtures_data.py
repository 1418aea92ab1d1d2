"""Builders of tiny dataset trees on disk (in pytest's tmp_path) for the adapter and image I/O tests.

Images are written with cv2.imwrite; indexed (palette) PNGs with the hand-written writer below (zlib, no Pillow),
which can apply every PNG row filter so the reader's unfiltering is exercised.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple

import cv2
import numpy as np

Colour = Tuple[int, int, int]


def write_image(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB (or gray) uint8/uint16 array with OpenCV (which expects BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    assert cv2.imwrite(str(path), array), path
    return path


def random_rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Uniform random uint8 RGB noise (H, W, 3)."""
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def random_mask(rng: np.random.Generator, h: int, w: int, num_classes: int, ignore: bool = True) -> np.ndarray:
    """Random class ids 0..num_classes-1; the first row is 255 (ignore) when ``ignore``."""
    mask = rng.integers(0, num_classes, size=(h, w), dtype=np.uint8)
    if ignore:
        mask[0, :] = 255
    return mask


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + kind + payload + (zlib.crc32(kind + payload) & 0xFFFFFFFF).to_bytes(4, "big")


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_row(kind: int, row: bytes, prior: bytes) -> bytes:
    """Apply PNG filter ``kind`` (0..4) to one row of packed bytes (1 byte per pixel unit here)."""
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - 1] if i else 0
        b, c = prior[i], (prior[i - 1] if i else 0)
        pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
        out[i] = (x - pred) & 0xFF
    return bytes([kind]) + bytes(out)


def write_palette_png(
    path: Path,
    indices: np.ndarray,
    palette: Sequence[Colour],
    bit_depth: int = 8,
    filters: Sequence[int] = (0,),
) -> Path:
    """Write an indexed (colour type 3) PNG; row ``r`` uses filter ``filters[r % len(filters)]``."""
    h, w = indices.shape
    assert int(indices.max()) < (1 << bit_depth) and len(palette) <= (1 << bit_depth)
    per_byte = 8 // bit_depth
    raw_rows, prior = [], bytes((w * bit_depth + 7) // 8)
    for r in range(h):
        vals = np.zeros(-(-w // per_byte) * per_byte, dtype=np.uint8)
        vals[:w] = indices[r]
        packed = np.zeros(len(vals) // per_byte, dtype=np.uint8)
        for k in range(per_byte):  # most significant bits first
            packed |= vals[k::per_byte] << (8 - bit_depth * (k + 1))
        row = packed.tobytes()
        raw_rows.append(_filter_row(filters[r % len(filters)], row, prior))
        prior = row
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([bit_depth, 3, 0, 0, 0])
    plte = b"".join(bytes(c) for c in palette)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"PLTE", plte)
    data += _chunk(b"IDAT", zlib.compress(b"".join(raw_rows))) + _chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_folder_tree(
    root: Path,
    splits: Optional[Dict[str, int]] = None,
    size: Tuple[int, int] = (12, 16),
    num_classes: int = 3,
    with_masks: bool = True,
    classes: Optional[Iterable[str]] = None,
    seed: int = 0,
) -> Path:
    """root/images/{split}/*.jpg|png + root/masks/{split}/*.png; ``splits=None`` writes the flat form (4 images)."""
    rng = np.random.default_rng(seed)
    layout = splits if splits is not None else {"": 4}
    for split, count in layout.items():
        for i in range(count):
            stem = f"{split or 'img'}_{i:03d}"
            ext = ".png" if i % 2 else ".jpg"  # both formats in every split
            write_image(root / "images" / split / f"{stem}{ext}", random_rgb(rng, *size))
            if with_masks:
                write_image(root / "masks" / split / f"{stem}.png", random_mask(rng, *size, num_classes))
    if classes is not None:
        names = list(classes)
        entries = [{"id": i, "name": n, "color": [10 * i, 20 * i, 30 * i]} for i, n in enumerate(names)]
        (root / "classes.json").write_text(json.dumps({"num_classes": len(names), "classes": entries}))
    return root


def make_voc_tree(root: Path, palette: Sequence[Colour], size: Tuple[int, int] = (10, 14)) -> Dict[str, np.ndarray]:
    """Pascal VOC layout with 3 train and 2 val images; returns the written index masks by name."""
    rng = np.random.default_rng(1)
    masks = {}
    splits = {"train": ["2007_000001", "2007_000002", "2008_000003"], "val": ["2009_000004", "2010_000005"]}
    for split, names in splits.items():
        sets = root / "ImageSets" / "Segmentation"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            write_image(root / "JPEGImages" / f"{name}.jpg", random_rgb(rng, *size))
            mask = random_mask(rng, *size, 21)
            mask[:, 0] = 20  # tvmonitor
            write_palette_png(root / "SegmentationClass" / f"{name}.png", mask, palette, filters=(0, 1, 2, 3, 4))
            masks[name] = mask
    return masks


def make_cityscapes_tree(root: Path, label_ids: np.ndarray) -> Path:
    """Cityscapes layout, 2 train images in 2 cities and 1 val image, every mask = ``label_ids``."""
    rng = np.random.default_rng(2)
    h, w = label_ids.shape
    for split, city, frame in [("train", "aachen", "000000_000019"), ("train", "bochum", "000001_000019"),
                               ("val", "lindau", "000002_000019")]:
        stem = f"{city}_{frame}"
        write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", random_rgb(rng, h, w))
        write_image(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label_ids)
        write_image(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", random_rgb(rng, h, w))
    return root


def make_camvid_tree(root: Path, mask: np.ndarray) -> Path:
    """CamVid (SegNet) layout: 2 train, 1 val, 1 test image, every annotation = ``mask``."""
    rng = np.random.default_rng(3)
    h, w = mask.shape
    for split, count in [("train", 2), ("val", 1), ("test", 1)]:
        for i in range(count):
            write_image(root / split / f"0001TP_{split}{i:02d}.png", random_rgb(rng, h, w))
            write_image(root / f"{split}annot" / f"0001TP_{split}{i:02d}.png", mask)
    return root
