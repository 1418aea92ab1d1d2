"""Indexed ("P" mode) PNG files: a tiny zlib-based writer and reader (OpenCV cannot write palette PNGs).

A mask saved this way stores the class ids themselves (one byte per pixel) and shows in colour in any viewer:
colour type 3, bit depth 8, with a PLTE chunk of the class colours. Spec: https://www.w3.org/TR/png/
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np

from .errors import ImageError

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_palette_png(mask: np.ndarray, palette: Sequence[Sequence[int]], level: int = 6) -> bytes:
    """PNG bytes of an (H, W) uint8 index mask with ``palette`` colours (RGB 0..255).

    The palette is padded with black up to the largest index present (e.g. 255 = ignore), as PNG requires.
    """
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ImageError(f"palette PNG: need an (H, W) uint8 mask, got shape {mask.shape} dtype {mask.dtype}")
    if not 1 <= len(palette) <= 256:
        raise ImageError(f"palette PNG: palette needs 1..256 colours, got {len(palette)}")
    entries = max(len(palette), int(mask.max(initial=0)) + 1)
    plte = np.zeros((entries, 3), dtype=np.uint8)
    plte[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    height, width = mask.shape
    rows = np.empty((height, width + 1), dtype=np.uint8)
    rows[:, 0] = 0  # filter type 0 (None) on every scanline
    rows[:, 1:] = mask
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"PLTE", plte.tobytes())
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b""))


def write_palette_png(path: Union[str, Path], mask: np.ndarray, palette: Sequence[Sequence[int]]) -> None:
    """Write an indexed PNG atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encode_palette_png(mask, palette))
    os.replace(tmp, path)


def _unfilter(raw: bytes, height: int, width: int) -> np.ndarray:
    """Undo the PNG scanline filters (types 0-4) of a 1-byte-per-pixel image."""
    data = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)
    out = np.zeros((height, width), dtype=np.uint8)
    prev = np.zeros(width, dtype=np.int32)
    for y in range(height):
        kind, line = data[y, 0], data[y, 1:].astype(np.int32)
        if kind in (0, 2):
            cur = line if kind == 0 else line + prev
        elif kind == 1:
            cur = np.cumsum(line)
        elif kind in (3, 4):  # these depend on the reconstructed pixel to the left: sequential
            cur = np.zeros(width, dtype=np.int32)
            for x in range(width):
                a = cur[x - 1] if x else 0
                b, c = prev[x], (prev[x - 1] if x else 0)
                if kind == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + pred) & 0xFF
        else:
            raise ImageError(f"palette PNG: unknown filter type {kind} on row {y}")
        cur = cur & 0xFF
        out[y] = cur
        prev = cur
    return out


def read_palette_png(path: Union[str, Path]) -> Tuple[np.ndarray, List[Tuple[int, int, int]]]:
    """Read an 8-bit indexed PNG: ``(indices (H, W) uint8, palette [(r, g, b), ...])``."""
    data = Path(path).read_bytes()
    if not data.startswith(SIGNATURE):
        raise ImageError(f"{path}: not a PNG file")
    pos, idat, header, plte = len(SIGNATURE), [], None, b""
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            plte = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None or header[2:5] != (8, 3, 0) or header[6] != 0:
        raise ImageError(f"{path}: not an 8-bit non-interlaced indexed PNG (IHDR {header})")
    width, height = header[0], header[1]
    indices = _unfilter(zlib.decompress(b"".join(idat)), height, width)
    colours = [tuple(plte[i:i + 3]) for i in range(0, len(plte), 3)]
    return indices, colours  # type: ignore[return-value]
