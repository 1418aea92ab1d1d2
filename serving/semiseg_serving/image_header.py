"""Image size from a PNG or JPEG header, without decoding the pixels: the one header reader of the SDK (the service's
pixel limit, the training data checks).

The width and height are read from the PNG ``IHDR`` chunk or the JPEG ``SOFn`` segment, so a small file that claims a
huge image (a decompression bomb) can be refused without allocating it.
"""
from __future__ import annotations

import struct
from typing import Optional, Tuple

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
