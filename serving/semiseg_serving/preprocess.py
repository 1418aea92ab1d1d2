"""Image -> network input in numpy/OpenCV: channel order, padding to the size divisor, float [0, 1] NCHW."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import ImageError, ServingError

PAD_MODES = {"reflect": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def to_rgb_uint8(image: np.ndarray, channel_order: str = "rgb") -> np.ndarray:
    """Any supported image -> (H, W, 3) uint8 RGB.

    Accepts (H, W) or (H, W, 1) grayscale, (H, W, 3) colour and (H, W, 4) with alpha (dropped), in ``"rgb"`` or
    ``"bgr"`` order; dtype uint8, or float in [0, 1] (scaled to uint8 with rounding).
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"image: expected a numpy array, got {type(image).__name__}")
    if channel_order not in ("rgb", "bgr"):
        raise ServingError(f"channel_order: {channel_order!r} is not 'rgb' or 'bgr'")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise ImageError(f"image: dtype {image.dtype} not supported (uint8, or float in [0, 1])")
        image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    if image.ndim in (2, 3) and (image.shape[0] == 0 or image.shape[1] == 0):
        raise ImageError(f"image: empty shape {image.shape}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f"image: shape {image.shape} not supported (H x W, H x W x 1, 3 or 4)")
    image = image[:, :, :3]
    if channel_order == "bgr":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def padded_size(height: int, width: int, divisor: int) -> Tuple[int, int]:
    """The smallest (H', W') >= (height, width) that are multiples of ``divisor``."""
    return -(-height // divisor) * divisor, -(-width // divisor) * divisor


def pad_to(image: np.ndarray, size: Tuple[int, int], mode: str = "reflect") -> np.ndarray:
    """Pad an (H, W, C) image at the bottom and right to ``size``; ``reflect`` mirrors without repeating the edge."""
    if mode not in PAD_MODES:
        raise ServingError(f"pad_mode: {mode!r} is not one of {', '.join(PAD_MODES)}")
    dh, dw = size[0] - image.shape[0], size[1] - image.shape[1]
    if dh < 0 or dw < 0:
        raise ServingError(f"cannot pad an image of {image.shape[:2]} to the smaller size {size}")
    if dh == 0 and dw == 0:
        return image
    return cv2.copyMakeBorder(image, 0, dh, 0, dw, PAD_MODES[mode], value=0)


def to_nchw(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack (H, W, 3) uint8 RGB images of one size into float32 (N, 3, H, W) in [0, 1]."""
    batch = np.stack(images).astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


class Prepared(NamedTuple):
    """An image ready to batch: ``pixels`` (H', W', 3) uint8 RGB; the model output's top-left ``content`` (h, w)
    region holds the image, which must then be brought back to ``original`` (H, W)."""

    pixels: np.ndarray
    content: Tuple[int, int]
    original: Tuple[int, int]


def prepare(image: np.ndarray, divisor: int, channel_order: str = "rgb", pad_mode: str = "reflect",
            resize_to: Optional[Tuple[int, int]] = None) -> Prepared:
    """One image -> :class:`Prepared`: padded to a multiple of ``divisor`` at the bottom/right.

    With ``resize_to`` = (h, w) the image is first resized (bilinear) to it, then padded if (h, w) are not
    multiples of ``divisor``; the post-processing resizes the logits back to the original size.
    """
    rgb = to_rgb_uint8(image, channel_order)
    original = (rgb.shape[0], rgb.shape[1])
    if resize_to is not None:
        h, w = int(resize_to[0]), int(resize_to[1])
        if h <= 0 or w <= 0:
            raise ServingError(f"resize_to: {resize_to} must be two positive sizes (h, w)")
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    content = (rgb.shape[0], rgb.shape[1])
    return Prepared(pad_to(rgb, padded_size(content[0], content[1], divisor), pad_mode), content, original)
