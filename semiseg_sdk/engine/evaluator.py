"""Evaluate a network on a labelled dataset: whole-image or sliding-window, confusion matrix and metrics."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.loader import leave_stop_signals_to_the_main_process, pad_collate
from .metrics import ConfusionMatrix
from .sliding_window import predict_sliding, predict_whole


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    class_names=None,
    device: torch.device | str = "cpu",
    mode: str = "whole",
    window: Optional[Tuple[int, int]] = None,
    stride: Optional[Tuple[int, int]] = None,
    batch_size: int = 4,
    num_workers: int = 0,
    progress: bool = False,
    amp_dtype: Optional[torch.dtype] = None,
) -> Dict[str, object]:
    """mIoU & co. of ``model`` on ``dataset``; returns the metric dict plus ``confusion`` (a numpy array).

    ``mode="slide"`` runs :func:`predict_sliding` with ``window`` (default 512x512) and ``stride`` (default 2/3 of it),
    one image at a time, for large tiles; ``"whole"`` pads each batch to the model's stride.
    """
    if mode not in ("whole", "slide"):
        raise ValueError(f"evaluation mode must be 'whole' or 'slide', got {mode!r}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    divisor = int(getattr(model, "size_divisor", 32))
    cm = ConfusionMatrix(num_classes, device)
    bs = 1 if mode == "slide" else batch_size
    loader = DataLoader(dataset, batch_size=bs, shuffle=False, collate_fn=pad_collate, num_workers=num_workers,
                        worker_init_fn=leave_stop_signals_to_the_main_process)
    win = tuple(window or (512, 512))
    st = tuple(stride or (max(1, win[0] * 2 // 3), max(1, win[1] * 2 // 3)))
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
        image = batch["image"].to(device).float().div_(255.0)
        mask = batch["mask"].to(device).long()
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            if mode == "slide":
                scores = predict_sliding(model, image, num_classes, win, st, divisor)
            else:
                scores = predict_whole(model, image, divisor)
        pred = scores.argmax(1)
        pred = torch.where(batch["valid"].to(device), pred, torch.zeros_like(pred))
        cm.update(pred, mask)
    model.train(was_training)
    out = cm.compute(class_names)
    out["confusion"] = cm.mat.cpu().numpy()
    return out
