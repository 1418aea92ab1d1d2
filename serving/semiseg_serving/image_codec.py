"""The SDK's one image codec: header sizes without decoding, PNG/JPEG decoding, indexed (palette) PNG masks.

Used by data loading (``semiseg_sdk.data.image_io``), the continual store's ingest, the runtime's outputs and the
HTTP service. OpenCV decodes pixels; Pillow reads and writes indexed PNGs (which OpenCV cannot write, and reads only
as colours). The width and height come from the PNG ``IHDR`` chunk or the JPEG ``SOFn`` segment before anything is
decoded, so a small file that claims a huge image (a decompression bomb) is refused without being allocated.
"""
from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError

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


def png_header(data: bytes) -> Optional[Tuple[int, int, int, int, int]]:
    """(width, height, bit depth, colour type, interlace) from the IHDR chunk, which must come first; else None."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace


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


def decode_bgr(data: bytes) -> Optional[np.ndarray]:
    """PNG/JPEG/... bytes -> (H, W, 3) uint8 BGR, or None when OpenCV cannot decode them."""
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)


def decode_unchanged(data: bytes) -> Optional[np.ndarray]:
    """Image bytes -> the stored array as is (gray or BGR(A), 8 or 16 bit), or None when OpenCV cannot decode them."""
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)


def encode_palette_png(mask: np.ndarray, palette: Sequence[Sequence[int]], level: int = 6) -> bytes:
    """PNG bytes of an (H, W) uint8 class-id mask with ``palette`` colours (RGB 0..255): one byte per pixel holds the
    class id itself, and any viewer shows the colours. The palette is padded with black up to the largest id present
    (e.g. 255 = ignore)."""
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ImageError(f"palette PNG: need an (H, W) uint8 mask, got shape {mask.shape} dtype {mask.dtype}")
    if not 1 <= len(palette) <= 256:
        raise ImageError(f"palette PNG: palette needs 1..256 colours, got {len(palette)}")
    entries = max(len(palette), int(mask.max(initial=0)) + 1)
    colours = np.zeros((entries, 3), dtype=np.uint8)
    colours[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    image = Image.fromarray(np.ascontiguousarray(mask), mode="P")
    image.putpalette(colours.tobytes())
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=level)
    return out.getvalue()


def write_palette_png(path: Union[str, Path], mask: np.ndarray, palette: Sequence[Sequence[int]]) -> None:
    """Write an indexed PNG atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encode_palette_png(mask, palette))
    os.replace(tmp, path)


def decode_palette_png(data: bytes, name: str = "image") -> Tuple[np.ndarray, List[Tuple[int, int, int]]]:
    """An indexed PNG's ``(indices (H, W) uint8, palette [(r, g, b), ...])`` (1-, 2-, 4- or 8-bit indices).

    Raises ImageError naming ``name`` for anything else (another colour type, a truncated or corrupt file).
    """
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            if image.mode != "P":
                raise ImageError(f"{name}: a {image.mode} PNG, not an indexed (palette) PNG")
            indices = np.array(image, dtype=np.uint8)
            flat = image.getpalette() or []
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: cannot decode the indexed PNG ({exc})") from None
    return indices, [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]  # type: ignore[misc]


def read_palette_png(path: Union[str, Path]) -> Tuple[np.ndarray, List[Tuple[int, int, int]]]:
    """Read an indexed PNG file: ``(indices (H, W) uint8, palette [(r, g, b), ...])``."""
    data = Path(path).read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ImageError(f"{path}: not a PNG file")
    return decode_palette_png(data, str(path))
