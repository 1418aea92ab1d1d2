"""Run-length encoding of a class-id mask, as sent in the service's JSON answers.

Format (``"encoding": "rle-row-major"``): the (H, W) mask is read row by row (C order, left to right, top to
bottom) and cut into runs of equal class ids; ``values[i]`` is the class id of run ``i`` and ``counts[i]`` its
length. So ``sum(counts) == H * W`` and the mask is ``np.repeat(values, counts).reshape(H, W)``::

    {"encoding": "rle-row-major", "size": [2, 3], "values": [0, 2, 1], "counts": [2, 3, 1]}
    ->  [[0, 0, 2],
         [2, 2, 1]]

Unlike COCO's per-class column-major RLE, one list encodes all classes at once, and consecutive runs always
have different values. :func:`decode_rle` is the reference decoder.

``?mask_encoding=coco`` answers with COCO RLE instead (what pycocotools, CVAT and FiftyOne read): one binary mask per
class present, each ``{"size": [H, W], "counts": "<compressed string>"}`` exactly as ``pycocotools.mask.encode``
writes it (column-major runs, starting with the background run; :func:`coco_rle`).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np

from ..errors import ServingError

ENCODING = "rle-row-major"


def encode_rle(mask: np.ndarray) -> Dict[str, Any]:
    """(H, W) integer mask -> ``{"encoding", "size": [H, W], "values": [...], "counts": [...]}`` (plain ints)."""
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ServingError(f"rle: need an (H, W) integer mask, got shape {mask.shape} dtype {mask.dtype}")
    flat = mask.ravel()
    if flat.size == 0:
        return {"encoding": ENCODING, "size": list(mask.shape), "values": [], "counts": []}
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    counts = np.diff(np.append(starts, flat.size))
    return {"encoding": ENCODING, "size": [int(mask.shape[0]), int(mask.shape[1])],
            "values": flat[starts].tolist(), "counts": counts.tolist()}


def decode_rle(rle: Mapping[str, Any], dtype: Any = np.uint8) -> np.ndarray:
    """Inverse of :func:`encode_rle`: the (H, W) mask; ServingError naming the field that is inconsistent."""
    if rle.get("encoding") != ENCODING:
        raise ServingError(f"rle.encoding: expected {ENCODING!r}, got {rle.get('encoding')!r}")
    size = rle.get("size")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or any(int(v) < 0 for v in size):
        raise ServingError(f"rle.size: expected [height, width], got {size!r}")
    values = np.asarray(rle.get("values", []), dtype=np.int64)
    counts = np.asarray(rle.get("counts", []), dtype=np.int64)
    if values.shape != counts.shape or values.ndim != 1:
        raise ServingError(f"rle: values ({values.size}) and counts ({counts.size}) must be flat lists of one length")
    if (counts < 0).any():
        raise ServingError("rle.counts: run lengths must be >= 0")
    height, width = int(size[0]), int(size[1])
    if int(counts.sum()) != height * width:
        raise ServingError(f"rle.counts: runs cover {int(counts.sum())} pixels, size {height}x{width} "
                           f"needs {height * width}")
    return np.repeat(values, counts).astype(dtype).reshape(height, width)


COCO_ENCODING = "coco-rle"


def coco_rle(binary: np.ndarray) -> Dict[str, Any]:
    """A (H, W) boolean mask as COCO's compressed RLE ``{"size": [H, W], "counts": str}``: run lengths in
    column-major order starting with a run of zeros, each stored as the difference to the run two before (from the
    third on) in 5-bit groups offset by 48 (pycocotools' ``rleToString``)."""
    flat = np.asarray(binary, dtype=bool).ravel(order="F")
    height, width = int(binary.shape[0]), int(binary.shape[1])
    if flat.size == 0:
        return {"size": [height, width], "counts": ""}
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs  # COCO counts start with the zeros
    out = []
    for i, run in enumerate(runs):
        x = int(run) - (int(runs[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return {"size": [height, width], "counts": "".join(out)}


def encode_coco(mask: np.ndarray, classes: Any) -> Dict[str, Any]:
    """The JSON ``mask`` field with ``?mask_encoding=coco``: one COCO RLE per class present, with its area."""
    counts = np.bincount(mask.ravel().astype(np.int64), minlength=len(classes))
    per_class = [{"class_id": int(c), "class": str(classes[c]), "area": int(counts[c]), "segmentation": coco_rle(mask == c)}
                 for c in range(len(classes)) if counts[c]]
    return {"encoding": COCO_ENCODING, "size": [int(mask.shape[0]), int(mask.shape[1])], "classes": per_class}
