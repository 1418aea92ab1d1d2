"""Save a confusion matrix as CSV and as a row-normalised heat-map PNG (OpenCV drawing, no matplotlib)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..utils.atomic import atomic_path, write_text_atomic


def save_confusion(mat: np.ndarray, class_names: Sequence[str], folder: str | Path, stem: str = "confusion") -> None:
    """Write ``stem.csv`` (raw counts, rows = ground truth) and ``stem.png`` (rows normalised to 1)."""
    folder = Path(folder)
    header = "gt\\pred," + ",".join(class_names)
    rows = [f"{n}," + ",".join(str(int(v)) for v in row) for n, row in zip(class_names, mat)]
    write_text_atomic(folder / f"{stem}.csv", "\n".join([header, *rows]) + "\n")
    with atomic_path(folder / f"{stem}.png") as tmp:
        ok, buf = cv2.imencode(".png", render_confusion(mat, class_names))
        tmp.write_bytes(buf.tobytes())


def render_confusion(mat: np.ndarray, class_names: Sequence[str], cell: int = 40) -> np.ndarray:
    """A BGR image: cells shaded by the row-normalised rate, the percentage written in each cell, class names on both
    axes, under a title line that says which axis is which."""
    n = len(class_names)
    rates = mat / np.maximum(mat.sum(axis=1, keepdims=True), 1)
    margin = 8 * min(14, max(len(c) for c in class_names)) + 12
    img = np.full((margin + n * cell + 10, margin + n * cell + 10, 3), 255, np.uint8)
    heat = cv2.applyColorMap((rates * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    for i in range(n):
        for j in range(n):
            y, x = margin + i * cell, margin + j * cell
            img[y : y + cell, x : x + cell] = heat[i, j]
            colour = (0, 0, 0) if rates[i, j] > 0.5 else (255, 255, 255)
            cv2.putText(img, f"{100 * rates[i, j]:.0f}", (x + 4, y + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
        cv2.putText(img, class_names[i][:14], (4, margin + i * cell + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    for j in range(n):  # column labels, written vertically
        label = np.full((12, margin - 4, 3), 255, np.uint8)
        cv2.putText(label, class_names[j][:14], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        rot = cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE)
        x = margin + j * cell + cell // 2 - 6
        img[0 : rot.shape[0], x : x + rot.shape[1]] = rot
    title = np.full((28, img.shape[1], 3), 255, np.uint8)
    cv2.putText(title, "rows: ground truth, columns: prediction (% of row)", (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([title, img], axis=0)
