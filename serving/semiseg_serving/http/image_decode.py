"""Bytes -> BGR image, refusing what is not a PNG/JPEG and anything over the pixel limit before decoding it (the
size comes from the header, :mod:`semiseg_serving.image_codec`, so a decompression bomb is never allocated)."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..image_codec import decode_bgr, jpeg_size, png_size, sniff
from .api_error import ApiError

def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes -> (H, W, 3) uint8 BGR; 400 ``bad_image`` / 413 ``too_many_pixels`` when refused."""
    kind = sniff(data)
    checked_size(data, max_pixels)
    image = decode_bgr(data)
    if image is None:
        raise ApiError(400, "bad_image", f"the {kind.upper()} data could not be decoded (truncated or corrupt)")
    return image


def checked_size(data: bytes, max_pixels: int) -> Tuple[int, int]:
    """(width, height) from the PNG/JPEG header, nothing decoded; 400 ``bad_image`` / 413 ``too_many_pixels``."""
    kind = sniff(data)
    if kind is None:
        raise ApiError(400, "bad_image", f"the body is not a PNG or JPEG image (starts with {data[:8]!r})")
    size = png_size(data) if kind == "png" else jpeg_size(data)
    if size is None or size[0] == 0 or size[1] == 0:
        raise ApiError(400, "bad_image", f"the {kind.upper()} header is truncated or malformed (no image size)")
    width, height = size
    if width * height > max_pixels:
        raise ApiError(413, "too_many_pixels", f"the image is {width}x{height} = {width * height} pixels, over "
                       f"the limit of {max_pixels}")
    return width, height
