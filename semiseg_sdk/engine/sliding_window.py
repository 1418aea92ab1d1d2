"""Whole-image and sliding-window inference of a segmentation network (PyTorch side)."""
from __future__ import annotations

from typing import Iterator, Tuple

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


@torch.no_grad()
def sliding_label_bands(
    model: nn.Module, image_u8: torch.Tensor, num_classes: int, window: Tuple[int, int], stride: Tuple[int, int],
    divisor: int = 32,
) -> Iterator[Tuple[int, torch.Tensor]]:
    """The labels of :func:`predict_sliding` for a uint8 (B,3,H,W) batch, yielded as ``(first row, labels (B,rows,W))``
    bands from the top: windows are taken one row of windows at a time and rows no later window covers are finished,
    so memory holds one band of probabilities (B x C x window height x W floats) and converts only crops to float,
    never the whole image (a 12000 x 12000 tile needs about 0.1 GB per class instead of 0.6 GB)."""
    b, _, h, w = image_u8.shape
    wh, ww = min(window[0], h), min(window[1], w)
    ys, xs = grid_starts(h, wh, stride[0]), grid_starts(w, ww, stride[1])
    probs = torch.zeros(b, num_classes, wh, w, device=image_u8.device)
    count = torch.zeros(1, 1, wh, w, device=image_u8.device)
    top = 0  # image row of probs[..., 0, :]
    for y in ys:
        shift = y - top
        if shift:
            yield top, (probs[:, :, :shift] / count[:, :, :shift]).argmax(1)
            probs = torch.cat([probs[:, :, shift:], torch.zeros_like(probs[:, :, :shift])], 2)
            count = torch.cat([count[:, :, shift:], torch.zeros_like(count[:, :, :shift])], 2)
            top = y
        for x in xs:
            crop = image_u8[..., y: y + wh, x: x + ww].float().div_(255.0)
            probs[..., :, x: x + ww] += predict_whole(model, crop, divisor).float().softmax(1)
            count[..., :, x: x + ww] += 1
    yield top, (probs / count).argmax(1)
