"""Whole-image and sliding-window inference of a segmentation network (PyTorch side)."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.patches import grid_starts


def pad_to_multiple(x: torch.Tensor, divisor: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Zero-pad (B,C,H,W) at the bottom/right so H and W are multiples of ``divisor``; returns the original size."""
    h, w = x.shape[-2:]
    ph = (divisor - h % divisor) % divisor
    pw = (divisor - w % divisor) % divisor
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


@torch.no_grad()
def predict_whole(model: nn.Module, image: torch.Tensor, divisor: int = 32) -> torch.Tensor:
    """Logits (B,C,H,W) of a [0,1] image batch, padded to the model's stride and cropped back."""
    x, (h, w) = pad_to_multiple(image, divisor)
    return model(x)[..., :h, :w]


@torch.no_grad()
def predict_sliding(
    model: nn.Module, image: torch.Tensor, num_classes: int, window: Tuple[int, int], stride: Tuple[int, int], divisor: int = 32
) -> torch.Tensor:
    """Average the softmax of overlapping ``window`` crops taken every ``stride`` pixels; covers every pixel.

    Returns probabilities (B,C,H,W). Windows smaller than the image on an axis are clipped to the image.
    """
    b, _, h, w = image.shape
    wh, ww = min(window[0], h), min(window[1], w)
    probs = torch.zeros(b, num_classes, h, w, device=image.device)
    count = torch.zeros(1, 1, h, w, device=image.device)
    for y in grid_starts(h, wh, stride[0]):
        for x in grid_starts(w, ww, stride[1]):
            crop = image[..., y : y + wh, x : x + ww]
            probs[..., y : y + wh, x : x + ww] += predict_whole(model, crop, divisor).float().softmax(1)
            count[..., y : y + wh, x : x + ww] += 1
    return probs / count
