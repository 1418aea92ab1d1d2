"""Segmentation metrics from a confusion matrix: per-class IoU and accuracy, mIoU, mAcc, aAcc (MMSeg conventions).

Classes absent from both prediction and ground truth have an undefined IoU (NaN) and are left out of the means.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..data.base import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates a (C, C) confusion matrix (rows = ground truth, columns = prediction) on the device."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add predictions and targets (same shape, class ids; target 255 is ignored)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        keep = target != IGNORE_INDEX
        t = target[keep].long()
        p = pred[keep].long().to(t.device)
        if t.numel() and int(t.max()) >= self.num_classes:
            raise ValueError(f"target holds class {int(t.max())} but there are {self.num_classes} classes")
        idx = t * self.num_classes + p
        self.mat += torch.bincount(idx, minlength=self.num_classes ** 2).view(self.num_classes, self.num_classes).to(self.mat.device)

    def merge(self, other: "ConfusionMatrix") -> None:
        """Add another matrix (e.g. from another process)."""
        self.mat += other.mat.to(self.mat.device)

    def compute(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
        """mIoU, mAcc, aAcc and per-class IoU / accuracy (NaN where undefined) as plain Python numbers."""
        return metrics_from_confusion(self.mat.cpu().numpy(), class_names)


def metrics_from_confusion(mat: np.ndarray, class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """Compute the metric dict from a (C, C) integer confusion matrix (rows = ground truth)."""
    mat = mat.astype(np.float64)
    tp = np.diag(mat)
    gt = mat.sum(axis=1)
    pr = mat.sum(axis=0)
    union = gt + pr - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    names: List[str] = list(class_names) if class_names is not None else [f"class_{i}" for i in range(len(tp))]
    total = mat.sum()
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "macc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "aacc": float(tp.sum() / total) if total > 0 else float("nan"),
        "iou": {n: float(v) for n, v in zip(names, iou)},
        "acc": {n: float(v) for n, v in zip(names, acc)},
        "pixels": int(total),
    }


def format_table(metrics: Dict[str, object]) -> str:
    """A per-class IoU / accuracy table in percent, with the means underneath."""
    iou, acc = metrics["iou"], metrics["acc"]
    width = max([len("class")] + [len(n) for n in iou])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}", "-" * (width + 16)]
    for name in iou:
        lines.append(f"{name:<{width}}  {_pct(iou[name]):>6}  {_pct(acc[name]):>6}")
    lines.append("-" * (width + 16))
    lines.append(f"mIoU {_pct(metrics['miou'])}  mAcc {_pct(metrics['macc'])}  aAcc {_pct(metrics['aacc'])}")
    return "\n".join(lines)


def _pct(v: float) -> str:
    return "  n/a" if v != v else f"{100 * v:.2f}"
