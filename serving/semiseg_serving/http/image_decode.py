"""Bytes -> BGR image, refusing what is not a PNG/JPEG and anything over the pixel limit before decoding it.

The width and height are read from the PNG ``IHDR`` chunk or the JPEG ``SOFn`` segment first, so a small file
that claims a huge image (a decompression bomb) is refused without allocating it.
"""
from __future__ import annotations

import struct
from typing import Optional, Tuple

import cv2
import numpy as np

from .api_error import ApiError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"
# Start-of-frame markers (baseline, progressive, lossless, ...): C0-CF except DHT (C4), JPG (C8), DAC (CC).
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def sniff(data: bytes) -> Optional[str]:
    """``"png"``, ``"jpeg"`` or None, from the magic bytes."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SOI):
        return "jpeg"
    return None


def png_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from the IHDR chunk, which must come first; None when it is missing."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from the first SOFn segment; None when the marker chain is broken before one."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # stand-alone markers carry no length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in SOF_MARKERS:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        pos += 2 + length
    return None


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes -> (H, W, 3) uint8 BGR; 400 ``bad_image`` / 413 ``too_many_pixels`` when refused."""
    kind = sniff(data)
    checked_size(data, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
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
